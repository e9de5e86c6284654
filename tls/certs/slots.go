package certs

import (
	"context"
	"slices"
	"sync"
)

// fetchSlots bounds the signer calls in flight. A waiter whose entry is urgent
// (a Get is waiting for it) is served before prefetches and renewals; within a
// class, first come first served. Safe for concurrent use.
type fetchSlots struct {
	mu         sync.Mutex
	free       int           // guarded by mu
	urgent     []*slotWaiter // guarded by mu
	background []*slotWaiter // guarded by mu
}

// slotWaiter is one refresh goroutine waiting for a slot.
type slotWaiter struct {
	e       *entry
	ready   chan struct{} // closed when the slot is granted
	granted bool          // guarded by fetchSlots.mu
}

func newFetchSlots(n int) *fetchSlots {
	if n <= 0 {
		n = DefaultMaxConcurrentFetches
	}
	return &fetchSlots{free: n}
}

// acquire waits for a slot for e; the caller must release it. It fails only
// when ctx ends first.
func (s *fetchSlots) acquire(ctx context.Context, e *entry) error {
	s.mu.Lock()
	if s.free > 0 {
		s.free--
		s.mu.Unlock()
		return nil
	}
	w := &slotWaiter{e: e, ready: make(chan struct{})}
	if e.urgent.Load() {
		s.urgent = append(s.urgent, w)
	} else {
		s.background = append(s.background, w)
	}
	s.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	if w.granted {
		s.mu.Unlock()
		s.release()
		return context.Cause(ctx)
	}
	s.urgent = slices.DeleteFunc(s.urgent, func(x *slotWaiter) bool { return x == w })
	s.background = slices.DeleteFunc(s.background, func(x *slotWaiter) bool { return x == w })
	s.mu.Unlock()
	return context.Cause(ctx)
}

// release returns a slot, handing it to the first urgent waiter, else the
// first background one.
func (s *fetchSlots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	var w *slotWaiter
	switch {
	case len(s.urgent) > 0:
		w, s.urgent = s.urgent[0], s.urgent[1:]
	case len(s.background) > 0:
		w, s.background = s.background[0], s.background[1:]
	default:
		s.free++
		return
	}
	w.granted = true
	close(w.ready)
}

// bump moves e's waiter, if it is queued as background, to the urgent queue.
func (s *fetchSlots) bump(e *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.background, func(w *slotWaiter) bool { return w.e == e })
	if i < 0 {
		return
	}
	w := s.background[i]
	s.background = slices.Delete(s.background, i, i+1)
	s.urgent = append(s.urgent, w)
}
