package logging

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/config"
)

// gateWriter is a writer whose Write waits while the gate is closed, as a pipe to a container
// runtime that has fallen behind does. It records every Write.
type gateWriter struct {
	mu     sync.Mutex
	open   bool
	opened *sync.Cond
	buf    bytes.Buffer
	writes int
	inside chan struct{} // receives once per Write that has started, while it has room
}

func newGateWriter() *gateWriter {
	g := &gateWriter{inside: make(chan struct{}, 1024)}
	g.opened = sync.NewCond(&g.mu)
	return g
}

func (g *gateWriter) Write(p []byte) (int, error) {
	select {
	case g.inside <- struct{}{}:
	default: // nobody is counting
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for !g.open {
		g.opened.Wait()
	}
	g.writes++
	return g.buf.Write(p)
}

func (g *gateWriter) setOpen(open bool) {
	g.mu.Lock()
	g.open = open
	g.opened.Broadcast()
	g.mu.Unlock()
}

func (g *gateWriter) result() (string, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.String(), g.writes
}

// queuedOutput returns the "access" logger of an Output on w in queued mode and the function
// that stops the queue (also called at cleanup, with the gate open).
func queuedOutput(t *testing.T, w *gateWriter) (*slog.Logger, func()) {
	o, stop := queuedOut(t, w)
	return o.Logger("access"), stop
}

func queuedOut(t *testing.T, w *gateWriter) (*Output, func()) {
	t.Helper()
	lvl, err := config.ParseLogLevel("info")
	if err != nil {
		t.Fatal(err)
	}
	o := NewOutput(w, Text, lvl)
	stop := o.Queue()
	t.Cleanup(func() { w.setOpen(true); stop() })
	return o, stop
}

// wantLines checks that got holds lines 0..n-1 of logLine, each once and in order.
func wantLines(t *testing.T, got string, n int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("%d lines written, want %d", len(lines), n)
	}
	for i, l := range lines {
		if want := fmt.Sprintf("n=%d", i); !strings.HasSuffix(l, want) {
			t.Fatalf("line %d = %q, want it to end with %s", i, l, want)
		}
	}
}

func logLine(log *slog.Logger, i int) {
	ln := Begin(log, slog.LevelInfo, "connection complete")
	ln.Str("src.workload", "sleep-7f8c9d")
	ln.Int("n", int64(i))
	ln.End()
}

// TestQueueDoesNotWaitForTheWriter: while the writer is stuck in a Write, lines are still
// logged at once; they reach the writer in order, once each, in one Write, when it moves again.
// Written at once (without Queue), the second line would wait for the first.
func TestQueueDoesNotWaitForTheWriter(t *testing.T) {
	w := newGateWriter()
	log, stop := queuedOutput(t, w)
	go logLine(log, 0) // (in a goroutine: without the queue, this call would never return)
	<-w.inside         // line 0 is being written, and the writer is stuck

	const n = 200
	done := make(chan struct{})
	go func() {
		for i := 1; i < n; i++ {
			logLine(log, i)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("logging waited for the stuck writer")
	}
	w.setOpen(true)
	stop()
	got, writes := w.result()
	wantLines(t, got, n)
	if writes != 2 {
		t.Errorf("%d Write calls, want 2 (line 0, then the %d lines queued behind it)", writes, n-1)
	}
}

// TestQueueIsBounded: behind a stuck writer, a logger waits once the bound's bytes are queued,
// and loses nothing: every line arrives once the writer moves. The bound is lowered to 16 KiB
// so that logging four times it without a bound ends well within the test's 200 ms.
func TestQueueIsBounded(t *testing.T) {
	w := newGateWriter()
	o, stop := queuedOut(t, w)
	const bound = 16 << 10
	o.mu.Lock()
	if o.q.max != maxQueued {
		t.Errorf("Queue bounds the queue at %d bytes, want maxQueued (%d)", o.q.max, maxQueued)
	}
	o.q.max = bound
	o.mu.Unlock()
	log := o.Logger("access")
	go logLine(log, 0)
	<-w.inside

	var logged sync.WaitGroup
	logged.Add(1)
	count := make(chan int, 1)
	go func() {
		defer logged.Done()
		i := 1
		for ; i*60 < 4*bound; i++ { // far more than the queue holds
			logLine(log, i)
		}
		count <- i
	}()
	// The writer is stuck for good until the gate opens, so a logger that finishes here was
	// never held back: the queue grew past its bound.
	select {
	case <-count:
		t.Fatal("logging 4x the bound's bytes behind a stuck writer did not wait")
	case <-time.After(200 * time.Millisecond):
	}
	o.mu.Lock()
	if queued := len(o.q.pending); queued > bound {
		t.Errorf("%d bytes queued, above the bound of %d", queued, bound)
	}
	o.mu.Unlock()
	w.setOpen(true)
	logged.Wait()
	n := <-count
	stop()
	got, _ := w.result()
	wantLines(t, got, n)
}

// TestQueueStop: stop returns after every line logged before it was written; lines logged
// after it are written at once by the logger, with the writer's error returned again.
func TestQueueStop(t *testing.T) {
	w := newGateWriter()
	w.setOpen(true)
	log, stop := queuedOutput(t, w)
	for i := range 50 {
		logLine(log, i)
	}
	stop()
	got, _ := w.result()
	wantLines(t, got, 50)

	logLine(log, 50) // written before it returns: no drain goroutine any more
	got, _ = w.result()
	wantLines(t, got, 51)
	stop() // a second call does nothing
}

// TestQueueConcurrent logs from several goroutines while stop runs (run under -race in CI):
// every line logged before stop returned is written exactly once.
func TestQueueConcurrent(t *testing.T) {
	w := newGateWriter()
	w.setOpen(true)
	log, stop := queuedOutput(t, w)
	var wg sync.WaitGroup
	const goroutines, each = 4, 500
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				ln := Begin(log, slog.LevelInfo, "connection complete")
				ln.Int("g", int64(g))
				ln.Int("i", int64(i))
				ln.End()
			}
		})
	}
	time.Sleep(time.Millisecond)
	stop() // while the loggers may still run: lines after it are written at once
	wg.Wait()
	got, _ := w.result()
	seen := map[string]bool{}
	for l := range strings.Lines(got) {
		k := l[strings.Index(l, "g="):]
		if seen[k] {
			t.Fatalf("line %q written twice", k)
		}
		seen[k] = true
	}
	if len(seen) != goroutines*each {
		t.Fatalf("%d lines written, want %d", len(seen), goroutines*each)
	}
}

// TestQueueAllocs: once its buffers have grown, a queued line allocates nothing, in the
// logger or in the drain goroutine.
func TestQueueAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	w := newGateWriter()
	w.setOpen(true)
	log, _ := queuedOutput(t, w)
	for i := range 1000 {
		logLine(log, i)
	}
	w.mu.Lock()
	w.buf = *bytes.NewBuffer(make([]byte, 0, 64<<20)) // the test's own writer must not grow
	w.mu.Unlock()
	time.Sleep(10 * time.Millisecond) // let the drain goroutine finish the warm-up lines
	for len(w.inside) > 0 {
		<-w.inside
	}
	got := testing.AllocsPerRun(1000, func() {
		logLine(log, 1)
		<-w.inside
	})
	if got != 0 {
		t.Errorf("%v allocations per queued line, want 0", got)
	}
}
