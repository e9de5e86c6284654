package inpod

import (
	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/testwait"
)

// TestClientNoGoroutineLeak runs a ZDS session (snapshot, a live Add and Del, the node agent
// restarting) and checks that once Run returned every goroutine of the client ended.
func TestClientNoGoroutineLeak(t *testing.T) {
	base := leakcheck.Baseline()
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
		testwait.Until(t, "ready again", 5*time.Second, func() bool { r, _ := h.lastReady(); return r })
	}) // its cleanup cancels Run and waits for it
	leakcheck.Wait(t, base)
}
