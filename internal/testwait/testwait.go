// Package testwait polls a condition in tests until it holds, failing the test when it does not
// within a timeout: for effects that happen asynchronously after the call that causes them (a
// log line, a listener closing, a goroutine ending).
package testwait

import (
	"testing"
	"time"
)

// interval is how often Until evaluates the condition.
const interval = 10 * time.Millisecond

// Until evaluates cond every 10 ms until it returns true, and fails the test with "timed out
// after <timeout> waiting for <what>" when it has not within timeout.
func Until(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(interval)
	}
}

// Returns runs fn on a goroutine of its own and returns fn's error once fn returns; it fails
// the test with "<what> did not return within <timeout>" when fn has not by then (fn's
// goroutine is then left behind).
func Returns(t testing.TB, what string, timeout time.Duration, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		t.Fatalf("%s did not return within %v", what, timeout)
		return nil
	}
}
