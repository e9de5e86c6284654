// Package leakcheck lets a test check that everything it started has ended: take a Baseline
// before, stop what the test started, then Wait.
package leakcheck

import (
	"runtime"
	"testing"
	"time"
)

// Baseline is the number of goroutines now.
func Baseline() int { return runtime.NumGoroutine() }

// Wait polls the number of goroutines until it is back to base (or below) and fails the test
// with every goroutine's stack when it is not within 10 s. Goroutines end asynchronously after
// the calls that stop them return, hence the polling.
func Wait(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
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
