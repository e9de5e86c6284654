package xds

import (
	"runtime"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/ztunnel-go/ztunnel/xds/xdstest"
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

// TestClientNoGoroutineLeak runs a client through a sync, an update and a reconnect, stops it
// (Run returns, the connection closes, the server stops) and checks every goroutine ended.
func TestClientNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Run("session", func(t *testing.T) {
		h := newHarness(t, nil)
		h.srv.Address.SetResources(map[string]types.Resource{"w1": xdstest.Workload(pbWorkload("w1", "10.3.0.1"))})
		h.srv.Authorization.SetResources(map[string]types.Resource{"default/p": pbPolicy("p", 1)})
		h.waitReady(t)
		_, from := h.srv.WaitRequest(0, waitTimeout, isAck(AddressType))
		h.srv.Restart()
		h.srv.WaitRequest(from+1, waitTimeout, func(r *xdstest.Request) bool { return r.TypeUrl == AddressType && r.GetNode() != nil })
	}) // its cleanups stop Run, close the gRPC connection and stop the server
	waitGoroutines(t, base)
}
