package proxy

import (
	"sync"

	"github.com/ztunnel-go/ztunnel/internal/workers"
)

// rerun runs fn on a goroutine (internal/workers) when kicked, and only then: an owner that reacts to
// rare events (a configuration change, a reload of the revocation lists) holds no goroutine
// between them. Runs never overlap; kicks that arrive while fn runs are merged into one more
// run, which starts after the current one ends, so every kick is followed by a run that began
// after it. The zero value is not usable: set fn.
type rerun struct {
	fn func()

	mu      sync.Mutex
	running bool // a goroutine runs fn, or is about to; guarded by mu
	again   bool // a kick came while running; guarded by mu
	stopped bool // stop was called; guarded by mu
	done    sync.WaitGroup
}

// kick asks for a run. It never blocks, so it may be called under its caller's locks (the
// store's and the revocation lists' OnChange callbacks are).
func (r *rerun) kick() {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.stopped:
	case r.running:
		r.again = true
	default:
		r.running = true
		r.done.Add(1)
		workers.Go(func() { // owned by r.done
			defer r.done.Done()
			r.loop()
		})
	}
}

func (r *rerun) loop() {
	for {
		r.fn()
		r.mu.Lock()
		if !r.again || r.stopped {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.again = false
		r.mu.Unlock()
	}
}

// stop refuses later kicks and waits for a run in progress to end.
func (r *rerun) stop() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.done.Wait()
}
