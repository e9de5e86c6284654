package workers

import (
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"

	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
)

// deepStack uses about n KiB of stack, as the per-connection paths of a proxy do.
//
//go:noinline
func deepStack(n int) byte {
	var b [1024]byte
	b[n%len(b)] = byte(n)
	if n > 1 {
		return deepStack(n-1) + b[0]
	}
	return b[0]
}

// TestReuse: tasks given to Go while workers wait run on those workers; once none waits, a
// task gets a goroutine of its own.
func TestReuse(t *testing.T) {
	ran := make(chan struct{})
	Go(func() { close(ran) })
	<-ran
	waitIdle(t, 1)

	k := int(parked())
	before := runtime.NumGoroutine()
	hold := make(chan struct{})
	var started sync.WaitGroup
	for range k + 1 {
		started.Add(1)
		Go(func() { started.Done(); <-hold })
	}
	started.Wait()
	if got := runtime.NumGoroutine(); got != before+1 {
		t.Errorf("goroutines %d -> %d for %d tasks with %d idle workers: want exactly one started", before, got, k+1, k)
	}
	close(hold)
}

// TestMaxIdle: past MaxIdle waiting workers, finished ones end.
func TestMaxIdle(t *testing.T) {
	var wg sync.WaitGroup
	hold := make(chan struct{})
	n := int(MaxIdle) + 8
	for range n {
		wg.Add(1)
		Go(func() { wg.Done(); <-hold })
	}
	wg.Wait()
	close(hold)
	waitIdle(t, MaxIdle)
	base := runtime.NumGoroutine()
	for range 50 {
		runtime.Gosched()
	}
	if got := idle.Load(); got != MaxIdle {
		t.Errorf("%d idle workers, want MaxIdle (%d)", got, MaxIdle)
	}
	if got := runtime.NumGoroutine(); got > base {
		t.Errorf("goroutines grew from %d to %d after the tasks ended", base, got)
	}
}

// stackBytes reads the heap memory the runtime holds for goroutine stacks.
func stackBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestRetireIdle: RetireIdle ends every waiting worker and, after a collection, the stacks
// their tasks grew are no longer held; a task given to Go afterwards still runs.
func TestRetireIdle(t *testing.T) {
	const k, depth = 8, 128 // eight workers, each with a stack grown past 128 KiB
	var wg sync.WaitGroup
	hold := make(chan struct{})
	for range k {
		wg.Add(1)
		Go(func() { deepStack(depth); wg.Done(); <-hold })
	}
	wg.Wait()
	close(hold)
	waitIdle(t, k)
	runtime.GC()
	before, workers := stackBytes(), workerGoroutines()

	n := RetireIdle()
	if n < k {
		t.Errorf("RetireIdle ended %d workers, want at least the %d waiting", n, k)
	}
	if p := parked(); p != 0 {
		t.Errorf("%d workers still wait after RetireIdle", p)
	}
	if got := idle.Load(); got != 0 {
		t.Errorf("idle count %d after RetireIdle, want 0", got)
	}
	// Worker goroutines, not all goroutines: the test binary may start one of its own meanwhile.
	for i := 0; workerGoroutines() > workers-n; i++ {
		if i > 10000 {
			t.Fatalf("worker goroutines %d -> %d, want %d ended", workers, workerGoroutines(), n)
		}
		runtime.Gosched()
	}
	runtime.GC()
	if after := stackBytes(); after+k*depth<<10/4 > before {
		t.Errorf("stack memory %d -> %d bytes, want at least %d KiB less", before, after, k*depth/4)
	}

	ran := make(chan struct{})
	Go(func() { close(ran) })
	<-ran
}

// waitIdle waits until at least want workers are parked in wait.
func waitIdle(t *testing.T, want int32) {
	t.Helper()
	for i := 0; parked() < want; i++ {
		if i > 10000 {
			t.Fatalf("%d idle workers parked, want %d", parked(), want)
		}
		runtime.Gosched()
	}
}

// workerGoroutines counts the goroutines that are workers (running a task or waiting for one).
func workerGoroutines() int { return leakcheck.Matching("internal/workers.work(") }

// parked counts the workers blocked in wait (an idle worker counts itself in idle just before
// it gets there).
func parked() int32 { return int32(leakcheck.Matching("[chan receive", "internal/workers.wait(")) }

// BenchmarkGoDeepStack: a task that needs 8 KiB of stack, run by a go statement (the stack grows
// from 2 KiB each time) and by Go (a reused worker's stack has grown already).
func BenchmarkGoDeepStack(b *testing.B) {
	done := make(chan struct{})
	b.Run("go-statement", func(b *testing.B) {
		for b.Loop() {
			go func() { deepStack(8); done <- struct{}{} }()
			<-done
		}
	})
	b.Run("workers.Go", func(b *testing.B) {
		for b.Loop() {
			Go(func() { deepStack(8); done <- struct{}{} })
			<-done
		}
	})
}
