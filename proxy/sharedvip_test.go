package proxy

import (
	"net/netip"
	"testing"

	"github.com/ztunnel-go/ztunnel/tls/identity"
	"github.com/ztunnel-go/ztunnel/workload"
)

// TestSharedVIPFollowsClientNamespace: services of several namespaces may share a VIP. A
// connection from a client in namespace default goes to default's service even when another
// namespace's service is canonical, and a service scoped to another namespace is not there for
// it: both wrong choices lead to a decoy workload where nothing listens.
func TestSharedVIPFollowsClientNamespace(t *testing.T) {
	e := newEnv(t)
	decoyIP := netip.MustParseAddr("127.0.0.7")
	scopedVIP := netip.MustParseAddr("127.0.0.21")
	decoy := func(name string, vip netip.Addr, scoped bool) *workload.Service {
		s := &workload.Service{Name: name, Namespace: "other", Hostname: name + ".other.svc.cluster.local",
			VIPs:      []workload.NetworkAddress{{Address: vip}},
			Ports:     map[uint16]uint16{80: e.appPort},
			Endpoints: map[string]*workload.Endpoint{"decoy": {WorkloadUID: "decoy"}},
			Canonical: true}
		if scoped {
			s.Visibility = workload.NamespaceVisible
		}
		return s
	}
	public := e.echoService(nil)
	public.Name, public.Namespace, public.Hostname = "open", "pub", "open.pub.svc.cluster.local"
	public.VIPs = []workload.NetworkAddress{{Address: scopedVIP}}
	e.apply(t, workload.Update{
		Workloads: []*workload.Workload{{UID: "decoy", Name: "decoy", Namespace: "other", ServiceAccount: "decoy",
			TrustDomain: "cluster.local", WorkloadIPs: []netip.Addr{decoyIP}, Protocol: workload.ProtocolTCP, Capacity: 1}},
		Services: []*workload.Service{
			e.echoService(nil), decoy("echo-other", echoVIP, false),
			decoy("hidden", scopedVIP, true), public,
		},
	})
	for _, c := range []struct {
		name string
		vip  netip.Addr
		host string
	}{
		{"own namespace beats canonical", echoVIP, echoHost},
		{"a service scoped to another namespace is skipped", scopedVIP, public.Hostname},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := roundTrip(t, e.socksDial(t, netip.AddrPortFrom(c.vip, 80)), "hi"); got != "hi" {
				t.Fatalf("echo = %q, want hi", got)
			}
			waitLog(t, e.access, "connection complete", "direction=outbound", "dst.service="+c.host)
		})
	}
}

// TestResolveWaypointAtSharedVIP: a waypoint named by a VIP that another namespace's canonical
// service shares is found in the client's namespace, as any destination VIP is (no sockets).
func TestResolveWaypointAtSharedVIP(t *testing.T) {
	wpVIP := netip.MustParseAddr("10.96.0.10")
	mk := func(uid, ns string, ip string, gw *workload.GatewayAddress) *workload.Workload {
		return &workload.Workload{UID: uid, Name: uid, Namespace: ns, ServiceAccount: uid,
			WorkloadIPs: []netip.Addr{netip.MustParseAddr(ip)}, Protocol: workload.ProtocolHBONE, Waypoint: gw, Capacity: 1}
	}
	svc := func(ns, endpoint string, canonical bool) *workload.Service {
		return &workload.Service{Name: "wp", Namespace: ns, Hostname: "wp." + ns, VIPs: []workload.NetworkAddress{{Address: wpVIP}},
			Ports: map[uint16]uint16{15008: 15008}, Canonical: canonical,
			Endpoints: map[string]*workload.Endpoint{endpoint: {WorkloadUID: endpoint}}}
	}
	store := workload.NewStore()
	if err := store.Apply(workload.Update{
		Workloads: []*workload.Workload{
			mk("wp", "ns", "10.0.0.10", nil),
			mk("elsewhere", "zz", "10.0.0.11", nil),
			mk("app", "ns", "10.0.0.20", waypointAt(netip.AddrPortFrom(wpVIP, 15008))),
		},
		Services: []*workload.Service{svc("ns", "wp", false), svc("zz", "elsewhere", true)},
	}); err != nil {
		t.Fatal(err)
	}
	p := &Proxy{cfg: Config{Ports: Ports{RemoteHBONE: 15008}}}
	for _, c := range []struct{ ns, want string }{{"ns", "wp"}, {"zz", "elsewhere"}} {
		srcID := identity.ID{TrustDomain: "cluster.local", Namespace: c.ns, ServiceAccount: "client"}
		rt, err := p.resolve(store.Snapshot(), netip.MustParseAddr("10.0.0.3"), srcID, nil, netip.MustParseAddrPort("10.0.0.20:80"))
		if err != nil {
			t.Fatal(err)
		}
		if !rt.waypoint || rt.dstW.Name != c.want {
			t.Errorf("client in %s: waypoint %v via %s, want the waypoint %s", c.ns, rt.waypoint, rt.dstW.Name, c.want)
		}
	}
}
