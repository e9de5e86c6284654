// Package notify keeps the callbacks that the owner of some changing state (the workload store,
// the revocation lists) calls after each change, for watchers that should not hold a goroutine
// to wait on a channel.
package notify

import "sync"

// Callbacks is a set of functions to call after each change. The owner calls Run with its own
// writer lock held, so that changes are announced in the order they were made; each function
// must therefore return at once and must not call back into the owner's writers, nor Add or a
// cancel of this set (they typically kick work that reads the owner's current state). The zero
// value is empty and ready to use; safe for concurrent use.
type Callbacks struct {
	mu   sync.Mutex
	fns  map[uint64]func() // guarded by mu
	next uint64            // guarded by mu
}

// Add makes fn run at each later Run. cancel removes it; once cancel returns, no call of fn is
// in progress or to come. cancel may be called more than once.
func (c *Callbacks) Add(fn func()) (cancel func()) {
	c.mu.Lock()
	if c.fns == nil {
		c.fns = make(map[uint64]func())
	}
	c.next++
	id := c.next
	c.fns[id] = fn
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		delete(c.fns, id)
		c.mu.Unlock()
	}
}

// Run calls every function added and not cancelled, in no particular order.
func (c *Callbacks) Run() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, fn := range c.fns {
		fn()
	}
}
