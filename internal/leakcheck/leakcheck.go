// Package leakcheck lets a test check that everything it started has ended: take a Baseline
// before, stop what the test started, then Wait.
//
// It does not count goroutines that live as long as the process by design (netutil's epoll loop
// of parked relay directions, which starts with the first relay, and idle internal/workers
// goroutines): a test that happens to start one is not leaking.
package leakcheck

import (
	"bytes"
	"iter"
	"runtime"
	"testing"
	"time"
)

// processGoroutines are functions whose goroutines live as long as the process.
var processGoroutines = [][]byte{
	[]byte("netutil.(*loop).run("),
	[]byte("internal/workers.wait("), // idle workers (internal/workers), reused by anyone
}

// Count is the number of goroutines now, those of processGoroutines left out.
func Count() int {
	count := 0
	for g := range stacks() {
		daemon := false
		for _, fn := range processGoroutines {
			if bytes.Contains(g, fn) {
				daemon = true
				break
			}
		}
		if !daemon {
			count++
		}
	}
	return count
}

// Matching is the number of goroutines now whose stack trace (as runtime.Stack writes it: the
// state in the first line, then the frames) contains every one of subs.
func Matching(subs ...string) int {
	count := 0
next:
	for g := range stacks() {
		for _, s := range subs {
			if !bytes.Contains(g, []byte(s)) {
				continue next
			}
		}
		count++
	}
	return count
}

// stacks yields the stack trace of every goroutine now.
func stacks() iter.Seq[[]byte] {
	n := runtime.NumGoroutine()
	buf := make([]byte, 64<<10*max(n, 16))
	buf = buf[:runtime.Stack(buf, true)]
	return func(yield func([]byte) bool) {
		for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
			if len(bytes.TrimSpace(g)) > 0 && !yield(g) {
				return
			}
		}
	}
}

// Baseline is the number of goroutines now (see Count).
func Baseline() int { return Count() }

// Wait polls the number of goroutines until it is back to base (or below) and fails the test
// with every goroutine's stack when it is not within 10 s. Goroutines end asynchronously after
// the calls that stop them return, hence the polling.
func Wait(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := Count()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines left, want at most %d:\n%s", n, base, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
