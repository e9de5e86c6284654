package e2e

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/ztunnel-go/ztunnel/internal/lab"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/tls/caclient/catest"
	"github.com/ztunnel-go/ztunnel/tls/certs"
	"github.com/ztunnel-go/ztunnel/xds/pb/workloadpb"
	"github.com/ztunnel-go/ztunnel/xds/xdstest"
)

// meshResources is meshConfig (dedicated_test.go) as istiod would send it.
func meshResources() map[string]types.Resource {
	ip := func(s string) []byte { return netip.MustParseAddr(s).AsSlice() }
	echo := "default/echo.default.svc.cluster.local"
	return map[string]types.Resource{
		"cluster1//v1/Pod/default/a": xdstest.Workload(&workloadpb.Workload{
			Uid: "cluster1//v1/Pod/default/a", Name: "a", Namespace: "default", ServiceAccount: "sleep",
			Addresses: [][]byte{ip("10.244.0.2")}, TunnelProtocol: workloadpb.TunnelProtocol_HBONE, Node: "node1",
		}),
		"cluster1//v1/Pod/default/b": xdstest.Workload(&workloadpb.Workload{
			Uid: "cluster1//v1/Pod/default/b", Name: "b", Namespace: "default", ServiceAccount: "echo",
			Addresses: [][]byte{ip("10.244.0.3")}, TunnelProtocol: workloadpb.TunnelProtocol_HBONE, Node: "node1",
			Services: map[string]*workloadpb.PortList{echo: {Ports: []*workloadpb.Port{{ServicePort: 80, TargetPort: 8080}}}},
		}),
		echo: xdstest.Service(&workloadpb.Service{
			Name: "echo", Namespace: "default", Hostname: "echo.default.svc.cluster.local",
			Addresses: []*workloadpb.NetworkAddress{{Address: ip(echoVIP)}},
			Ports:     []*workloadpb.Port{{ServicePort: 80, TargetPort: 8080}},
		}),
	}
}

// TestDedicatedModeWithControlPlane runs the dedicated-mode checks with the mesh and the
// certificates coming from an xDS server (go-control-plane) and a CA server (istio.io/api's
// service) listening in the node namespace, instead of LOCAL_XDS_PATH and LOCAL_CA_DIR.
func TestDedicatedModeWithControlPlane(t *testing.T) {
	var (
		xdsSrv *xdstest.Server
		caSrv  *catest.Server
	)
	startControlPlane := func(t *testing.T, node *lab.Netns) []string {
		const host = "istiod.istio-system.svc"
		pki := xdstest.NewPKI(t, host)
		ca, err := certs.NewFakeCA("cluster.local")
		if err != nil {
			t.Fatal(err)
		}
		gw := nodeAddr.Addr().String()
		xdsSrv = xdstest.Serve(t, node.Listen(t, "tcp", gw+":15010"), pki.Server)
		xdsSrv.Address.SetResources(meshResources())
		xdsSrv.Authorization.SetResources(map[string]types.Resource{})
		caSrv = catest.Serve(t, node.Listen(t, "tcp", gw+":15012"), pki.Server, ca)

		token := filepath.Join(t.TempDir(), "istio-token")
		if err := os.WriteFile(token, []byte("e2e-token"), 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{
			"XDS_ADDRESS=https://" + gw + ":15010", "CA_ADDRESS=https://" + gw + ":15012",
			"XDS_ROOT_CA=" + string(pki.RootPEM), "CA_ROOT_CA=" + string(pki.RootPEM),
			"ALT_XDS_HOSTNAME=" + host, "ALT_CA_HOSTNAME=" + host,
			"AUTH_TOKEN=" + token, "CLUSTER_ID=cluster1", "NODE_NAME=node1",
		}
	}
	d := newDedicatedLabWith(t, startControlPlane)

	// Both ztunnels are ready, so both applied both types; their ACKs follow on the stream
	// (readiness does not wait for the server to receive them). They said who they are.
	for _, typ := range []string{xdstest.AddressType, xdstest.AuthorizationType} {
		acks := func() int {
			n := 0
			for _, r := range xdsSrv.Requests() {
				if r.TypeUrl == typ && r.ResponseNonce != "" && r.ErrorDetail == nil {
					n++
				}
			}
			return n
		}
		testwait.Until(t, "an ACK of "+typ+" from each ztunnel", 10*time.Second, func() bool { return acks() >= 2 })
	}
	for _, r := range xdsSrv.Requests() {
		if r.ErrorDetail != nil {
			t.Errorf("NACK from ztunnel: %v", r.ErrorDetail)
		}
		if got := r.Metadata.Get("authorization"); !slices.Equal(got, []string{"Bearer e2e-token"}) {
			t.Errorf("xds authorization header = %v", got)
		}
	}

	checkDedicated(t, d)

	// Every workload certificate came from the CA server, with the token.
	calls := caSrv.Calls()
	if len(calls) == 0 {
		t.Fatal("no certificate was requested from the CA")
	}
	ids := map[string]bool{}
	for _, c := range calls {
		ids[c.Identity.String()] = true
		if got := c.Metadata.Get("authorization"); !slices.Equal(got, []string{"Bearer e2e-token"}) {
			t.Errorf("CA authorization header = %v", got)
		}
		if c.Impersonated != "" {
			t.Errorf("dedicated mode impersonated %q", c.Impersonated)
		}
	}
	for _, id := range []string{"spiffe://cluster.local/ns/default/sa/sleep", "spiffe://cluster.local/ns/default/sa/echo"} {
		if !ids[id] {
			t.Errorf("no certificate requested for %s (got %v)", id, ids)
		}
	}
}
