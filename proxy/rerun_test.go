package proxy

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
)

// TestRerun: a kick starts a run on a goroutine that ends with it; kicks during a run merge into
// one more run after it, never beside it; stop waits for the run in progress and refuses later
// kicks.
func TestRerun(t *testing.T) {
	base := leakcheck.Count()
	var runs, inside, overlaps atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	r := &rerun{fn: func() {
		if inside.Add(1) > 1 {
			overlaps.Add(1)
		}
		runs.Add(1)
		started <- struct{}{}
		<-release
		inside.Add(-1)
	}}

	r.kick()
	<-started // the first run waits on release
	for range 5 {
		r.kick() // merged into one more run
	}
	release <- struct{}{}
	<-started // the merged run
	release <- struct{}{}
	testwait.Until(t, "the runner's goroutine to end", 5*time.Second, func() bool { return leakcheck.Count() <= base })
	if n := runs.Load(); n != 2 {
		t.Errorf("%d runs for a kick and five during it, want 2", n)
	}

	r.kick()
	<-started
	stopped := make(chan struct{})
	go func() { r.stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("stop returned while a run was in progress")
	case <-time.After(50 * time.Millisecond):
	}
	testwait.Until(t, "stop to refuse kicks", 5*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.stopped
	})
	r.kick() // during the run, after stop: refused, not merged
	release <- struct{}{}
	<-stopped
	r.kick() // refused
	time.Sleep(10 * time.Millisecond)
	if n := runs.Load(); n != 3 {
		t.Errorf("%d runs, want 3: a kick during or after stop must not run", n)
	}
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d runs overlapped another", n)
	}
	if n := leakcheck.Count(); n > base {
		t.Errorf("%d goroutines after stop, %d before", n, base)
	}
}
