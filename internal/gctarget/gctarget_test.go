package gctarget

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/testwait"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		budget, scanned uint64
		want            int
	}{
		{0, 100 * mib, 50},      // no budget: the upper bound
		{mib, 0, 50},            // no collection yet
		{mib, mib, 50},          // 100%, bounded
		{mib, 2 * mib, 50},      // exactly the upper bound
		{mib, 4 * mib, 25},      // within the bounds
		{mib, 3 * mib, 33},      // rounded down: the headroom stays within the budget
		{mib, 10 * mib, 10},     // exactly the lower bound
		{mib, 12 * mib, 10},     // 8%, bounded
		{mib, 1 << 40, 10},      // a huge heap
		{1 << 62, 1, 50},        // a huge budget does not overflow into a small percentage
		{mib, 10*mib - 1, 10},   // just under ten times the budget: 10.000001%
		{mib, 10*mib + 1e6, 10}, // just over
	} {
		if got := percent(c.budget, c.scanned, 10, 50); got != c.want {
			t.Errorf("percent(%d, %d, 10, 50) = %d, want %d", c.budget, c.scanned, got, c.want)
		}
	}
}

// runtimePercent reads the collector's target as the runtime holds it.
func runtimePercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// live keeps the test's heap alive between collections.
var live [][]byte

// TestTunerFollowsHeap: the target follows the live heap after each collection, down to Min
// when the heap is large and back up to Max when it is small again; Stop freezes it.
func TestTunerFollowsHeap(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	runtime.GC()

	const budget = 4 << 20
	tu := &Tuner{Budget: budget, Min: 10, Max: 50}
	tu.Start()
	stopped := false
	defer func() {
		if !stopped {
			tu.Stop()
		}
	}()
	// The test binary's heap is well under twice the budget: the upper bound.
	if got, rt := tu.Percent(), runtimePercent(); got != 50 || rt != 50 {
		t.Fatalf("small heap: the tuner set %d and the runtime holds %d, want 50", got, rt)
	}

	// settle runs collections until the tuner has reacted to the heap as it now is: the tune
	// runs on the runtime's cleanup goroutine some time after a collection.
	settle := func(what string, ok func(int) bool) {
		t.Helper()
		testwait.Until(t, what, 10*time.Second, func() bool {
			runtime.GC()
			time.Sleep(time.Millisecond)
			p := tu.Percent()
			return ok(p) && runtimePercent() == p
		})
	}

	// A live heap of 20 MiB: 4 MiB is about a fifth of it (less, with the binary's own heap,
	// stacks and globals).
	live = nil
	for range 20 {
		live = append(live, make([]byte, 1<<20))
	}
	settle("a target of about 20 at 20 MiB live", func(p int) bool { return p >= 15 && p <= 20 })

	// 80 MiB: 5%, bounded to Min.
	for range 60 {
		live = append(live, make([]byte, 1<<20))
	}
	settle("the lower bound at 80 MiB live", func(p int) bool { return p == 10 })

	// Dropped: back to Max.
	live = nil
	settle("the upper bound once the heap is small again", func(p int) bool { return p == 50 })

	// Stopped: the runtime keeps the last target, whatever the heap does.
	stopped = true
	if got := tu.Stop(); got != 50 {
		t.Errorf("Stop returned %d, want 50", got)
	}
	for range 80 {
		live = append(live, make([]byte, 1<<20))
	}
	for range 3 {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	if got, rt := tu.Percent(), runtimePercent(); got != 50 || rt != 50 {
		t.Errorf("after Stop and an 80 MiB heap: the tuner holds %d and the runtime %d, want 50", got, rt)
	}
	live = nil
}
