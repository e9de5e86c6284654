package xds

import (
	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/ztunnel-go/ztunnel/xds/xdstest"
)

// TestClientNoGoroutineLeak runs a client through a sync, an update and a reconnect, stops it
// (Run returns, the connection closes, the server stops) and checks every goroutine ended.
func TestClientNoGoroutineLeak(t *testing.T) {
	base := leakcheck.Baseline()
	t.Run("session", func(t *testing.T) {
		h := newHarness(t, nil)
		h.srv.Address.SetResources(map[string]types.Resource{"w1": xdstest.Workload(pbWorkload("w1", "10.3.0.1"))})
		h.srv.Authorization.SetResources(map[string]types.Resource{"default/p": pbPolicy("p", 1)})
		h.waitReady(t)
		_, from := h.srv.WaitRequest(0, waitTimeout, isAck(AddressType))
		h.srv.Restart()
		h.srv.WaitRequest(from+1, waitTimeout, func(r *xdstest.Request) bool { return r.TypeUrl == AddressType && r.GetNode() != nil })
	}) // its cleanups stop Run, close the gRPC connection and stop the server
	leakcheck.Wait(t, base)
}
