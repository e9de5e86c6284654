package inpod

import (
	"runtime"
	"testing"
	"time"
)

// waitGoroutines polls runtime.NumGoroutine until it is back to base, else fails with every
// goroutine's stack. Call it after everything the test started was stopped.
func waitGoroutines(t *testing.T, base int) {
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

// TestClientNoGoroutineLeak runs a ZDS session (snapshot, a live Add and Del, the node agent
// restarting) and checks that once Run returned every goroutine of the client ended.
func TestClientNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Run("session", func(t *testing.T) {
		h := newHarness(t)
		dir := t.TempDir()
		p := h.accept()
		if e := p.send(add("a"), netnsFile(t, dir, "a")); e != "" {
			t.Fatalf("add a NACKed: %s", e)
		}
		if e := p.send(snapshotSent); e != "" {
			t.Fatalf("snapshot_sent NACKed: %s", e)
		}
		if e := p.send(add("b"), netnsFile(t, dir, "b")); e != "" {
			t.Fatalf("add b NACKed: %s", e)
		}
		if e := p.send(del("a")); e != "" {
			t.Fatalf("del a NACKed: %s", e)
		}
		p.uc.Close() // the node agent restarts
		p = h.accept()
		if e := p.send(keep("b")); e != "" {
			t.Fatalf("keep b NACKed: %s", e)
		}
		if e := p.send(snapshotSent); e != "" {
			t.Fatalf("snapshot_sent NACKed: %s", e)
		}
		waitUntil(t, "ready again", func() bool { r, _ := h.lastReady(); return r })
	}) // its cleanup cancels Run and waits for it
	waitGoroutines(t, base)
}
