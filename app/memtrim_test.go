package app

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/internal/workers"
)

// released reads the heap bytes returned to the kernel so far.
func released() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// sink keeps the test's allocations from being optimised away.
var sink []byte

// churn allocates n bytes of garbage in 64 KiB pieces.
func churn(n int) {
	for range n >> 16 {
		sink = make([]byte, 64<<10)
	}
	sink = nil
}

// noGC turns the collector off for the test (see TestMemTrim).
func noGC(t *testing.T) {
	old := debug.SetGCPercent(-1)
	t.Cleanup(func() { debug.SetGCPercent(old) })
}

// discard is a logger that writes nothing.
var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// idleWorkers counts the worker goroutines waiting for a task.
func idleWorkers() int { return leakcheck.Matching("internal/workers.wait(") }

// startWorkers leaves k idle workers behind.
func startWorkers(t *testing.T, k int) {
	t.Helper()
	var wg sync.WaitGroup
	hold := make(chan struct{})
	for range k {
		wg.Add(1)
		workers.Go(func() { wg.Done(); <-hold })
	}
	wg.Wait()
	close(hold)
	testwait.Until(t, "idle workers", 5*time.Second, func() bool { return idleWorkers() >= k })
}

// TestMemTrim: after an interval that allocates little, the idle workers end, what a sync.Pool
// keeps is freed, and the heap's garbage and free pages go back to the kernel, once; another
// trim needs a busy interval first.
//
// The collector is off for the test, so the garbage stays in the heap until memTrim collects
// it (as in a proxy that allocates nothing and so does not collect), and the runtime's
// background scavenger, which only returns pages above the heap goal, cannot be what returns
// it.
func TestMemTrim(t *testing.T) {
	noGC(t)

	var trims atomic.Int32
	var lastExcess atomic.Uint64
	tr := &memTrim{
		interval:   50 * time.Millisecond,
		quietBytes: 1 << 20,
		minExcess:  4 << 20,
		log:        discard,
		onTrim: func(excess uint64) {
			lastExcess.Store(excess)
			trims.Add(1)
		},
	}

	startWorkers(t, 4)
	churn(64 << 20)
	// A buffer left in a sync.Pool, as the record layer leaves its buffers after a burst: the
	// trim must free it (one collection only moves it to the pool's victim cache).
	var pool sync.Pool
	pooledFreed := make(chan struct{})
	buf := new([64 << 10]byte)
	runtime.AddCleanup(buf, func(ch chan struct{}) { close(ch) }, pooledFreed)
	pool.Put(buf)
	buf = nil
	before := released()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tr.run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	testwait.Until(t, "a trim after a quiet interval", 10*time.Second, func() bool { return trims.Load() == 1 })
	if e := lastExcess.Load(); e < 48<<20 {
		t.Errorf("the trim expected %d reclaimable bytes, want at least the 48 MiB of garbage left", e)
	}
	if got := released() - before; got < 32<<20 {
		t.Errorf("%d bytes went back to the kernel, want at least 32 MiB of the 64 MiB of garbage", got)
	}
	select {
	case <-pooledFreed:
	case <-time.After(5 * time.Second):
		t.Error("the buffer left in a sync.Pool was not freed by the trim")
	}

	// Quiet intervals after a trim do not trim again, even with new garbage under the
	// quiet threshold per interval.
	for range 6 {
		churn(512 << 10)
		time.Sleep(tr.interval)
	}
	if n := trims.Load(); n != 1 {
		t.Fatalf("%d trims over quiet intervals after the first, want none", n-1)
	}
	// Counted only now: reading the goroutines allocates a megabyte, a busy interval.
	if n := idleWorkers(); n != 0 {
		t.Errorf("%d idle workers after the trim, want none", n)
	}

	// A busy interval re-arms it.
	churn(16 << 20)
	testwait.Until(t, "a second trim after a busy interval", 10*time.Second, func() bool { return trims.Load() == 2 })
}

// TestMemTrimDefaults: with the default thresholds, a quiet process trims the garbage a burst of
// connections leaves under ztunnel's bounded headroom (less than 1 MiB per ztunnel after 9,400
// idle HBONE connections, benchmarks/README.md): here 512 KiB.
func TestMemTrimDefaults(t *testing.T) {
	noGC(t)

	var trims atomic.Int32
	tr := &memTrim{
		interval:   50 * time.Millisecond,
		quietBytes: defaultTrimQuietBytes,
		minExcess:  defaultTrimMinExcess,
		log:        discard,
		onTrim:     func(uint64) { trims.Add(1) },
	}
	runtime.GC()
	debug.FreeOSMemory()
	churn(512 << 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tr.run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	testwait.Until(t, "a trim of 512 KiB of garbage", 10*time.Second, func() bool { return trims.Load() == 1 })
}

// TestMemTrimSmallExcess: a quiet process with less to reclaim than minExcess is left alone.
func TestMemTrimSmallExcess(t *testing.T) {
	noGC(t)

	var trims atomic.Int32
	tr := &memTrim{
		interval:   20 * time.Millisecond,
		quietBytes: 1 << 20,
		minExcess:  1 << 40,
		log:        discard,
		onTrim:     func(uint64) { trims.Add(1) },
	}
	churn(8 << 20)
	ctx, cancel := context.WithTimeout(context.Background(), 20*tr.interval)
	defer cancel()
	tr.run(ctx)
	if n := trims.Load(); n != 0 {
		t.Fatalf("%d trims with less to reclaim than minExcess, want none", n)
	}
}
