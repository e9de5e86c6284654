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
