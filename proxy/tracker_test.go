package proxy

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// checkTracker fails unless tr holds exactly want, each at the index it records.
func checkTracker(tb testing.TB, tr *tracker, want map[*connState]bool) {
	tb.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.conns) != len(want) {
		tb.Fatalf("tracker holds %d connections, want %d", len(tr.conns), len(want))
	}
	for i, c := range tr.conns {
		if !want[c] {
			tb.Fatalf("entry %d is a connection that is not tracked", i)
		}
		if int(c.slot) != i {
			tb.Fatalf("entry %d records slot %d", i, c.slot)
		}
	}
}

// TestTrackerAddRemove: connections removed in any order leave exactly the others tracked, a
// second remove (or one of a connection never added) changes nothing, waitEmpty returns once
// the last one leaves, and the slice a burst grew is handed back once it is mostly empty.
func TestTrackerAddRemove(t *testing.T) {
	tr := newTracker()
	const n = 5000
	states := make([]*connState, n)
	want := make(map[*connState]bool, n)
	for i := range states {
		states[i] = &connState{}
		tr.add(states[i])
		want[states[i]] = true
	}
	checkTracker(t, tr, want)
	grown := cap(tr.conns)

	stranger := &connState{} // never added: slot 0 names another connection
	tr.remove(stranger)
	checkTracker(t, tr, want)

	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(n, func(i, j int) { states[i], states[j] = states[j], states[i] })
	for i, c := range states[:n-10] {
		tr.remove(c)
		delete(want, c)
		if i%97 == 0 {
			tr.remove(c) // twice
			checkTracker(t, tr, want)
		}
	}
	checkTracker(t, tr, want)
	if c := cap(tr.conns); c >= grown/4 || c < len(tr.conns) {
		t.Errorf("after %d of %d connections left, the slice keeps capacity %d (grown to %d)", n-10, n, c, grown)
	}

	done := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tr.waitEmpty(ctx)
		close(done)
	}()
	for _, c := range states[n-10:] {
		select {
		case <-done:
			t.Fatal("waitEmpty returned while connections were tracked")
		default:
		}
		tr.remove(c)
		delete(want, c)
	}
	checkTracker(t, tr, want)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("waitEmpty did not return after the last connection left")
	}
	if got := tr.closeAll(); got != 0 {
		t.Errorf("closeAll on an empty tracker closed %d", got)
	}
}

// BenchmarkTrackerChurn: add and remove with many connections tracked (the accept path's cost).
func BenchmarkTrackerChurn(b *testing.B) {
	tr := newTracker()
	for range 10000 {
		tr.add(&connState{})
	}
	c := &connState{}
	b.ReportAllocs()
	for b.Loop() {
		tr.add(c)
		tr.remove(c)
	}
}
