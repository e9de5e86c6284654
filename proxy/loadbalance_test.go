package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	zdns "github.com/ztunnel-go/ztunnel/dns"
	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"github.com/ztunnel-go/ztunnel/workload"
)

// lbWorkload is an endpoint workload at ip with the given locality, network and capacity.
func lbWorkload(uid, ip, region, zone, subzone, network string, capacity uint32) *workload.Workload {
	return &workload.Workload{UID: uid, Name: uid, Namespace: "default", ServiceAccount: uid,
		WorkloadIPs: []netip.Addr{netip.MustParseAddr(ip)}, Protocol: workload.ProtocolHBONE, Capacity: capacity,
		Network: network, Locality: workload.Locality{Region: region, Zone: zone, Subzone: subzone}}
}

func TestLocalityRank(t *testing.T) {
	src := lbWorkload("client", "10.0.0.1", "r1", "z1", "s1", "n1", 1)
	src.Node, src.ClusterID = "node1", "c1"
	at := func(region, zone, subzone, network string) *workload.Workload {
		return lbWorkload("ep", "10.0.0.9", region, zone, subzone, network, 1)
	}
	regionZoneSubzone := []workload.RoutingScope{workload.ScopeRegion, workload.ScopeZone, workload.ScopeSubzone}
	networkFirst := []workload.RoutingScope{workload.ScopeNetwork, workload.ScopeRegion, workload.ScopeZone}
	onNode := func(node, cluster string) *workload.Workload {
		w := at("r1", "z1", "s1", "n1")
		w.Node, w.ClusterID = node, cluster
		return w
	}
	tests := []struct {
		name     string
		mode     workload.LoadBalancerMode
		prefs    []workload.RoutingScope
		w        *workload.Workload
		wantRank int
		wantOK   bool
	}{
		{"failover, all three match", workload.LBFailover, regionZoneSubzone, at("r1", "z1", "s1", "n1"), 3, true},
		{"failover, region and zone", workload.LBFailover, regionZoneSubzone, at("r1", "z1", "s2", "n1"), 2, true},
		{"failover, region only", workload.LBFailover, regionZoneSubzone, at("r1", "z2", "s1", "n1"), 1, true},
		{"failover, the count stops at the first mismatch", workload.LBFailover, regionZoneSubzone, at("r2", "z1", "s1", "n1"), 0, true},
		{"strict, all match", workload.LBStrict, regionZoneSubzone, at("r1", "z1", "s1", "n1"), 3, true},
		{"strict, one short", workload.LBStrict, regionZoneSubzone, at("r1", "z1", "s2", "n1"), 0, false},
		// Network first: the client's network ranks above any other whatever else matches.
		{"network first, same network and region", workload.LBFailover, networkFirst, at("r1", "z2", "", "n1"), 2 + 2, true},
		{"network first, same network only", workload.LBFailover, networkFirst, at("r9", "z9", "", "n1"), 1 + 2, true},
		{"network first, other network, region and zone", workload.LBFailover, networkFirst, at("r1", "z1", "", "n2"), 2, true},
		{"network first, other network, nothing", workload.LBFailover, networkFirst, at("r9", "z9", "", "n2"), 0, true},
		{"network first, strict, other network", workload.LBStrict, networkFirst, at("r1", "z1", "", "n2"), 0, false},
		{"node and cluster", workload.LBFailover, []workload.RoutingScope{workload.ScopeCluster, workload.ScopeNode}, onNode("node1", "c1"), 2, true},
		{"cluster without node", workload.LBFailover, []workload.RoutingScope{workload.ScopeCluster, workload.ScopeNode}, onNode("node2", "c1"), 1, true},
		{"no preferences", workload.LBStrict, nil, at("r9", "z9", "s9", "n9"), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lb := &workload.LoadBalancer{Mode: tt.mode, RoutingPreferences: tt.prefs}
			rank, ok := localityRank(lb, src, tt.w)
			if rank != tt.wantRank || ok != tt.wantOK {
				t.Errorf("localityRank = %d, %v; want %d, %v", rank, ok, tt.wantRank, tt.wantOK)
			}
		})
	}
}

// lbService is a service on 10.96.0.1:80 -> 8080 over the given endpoints' workloads.
func lbService(lb *workload.LoadBalancer, ws ...*workload.Workload) *workload.Service {
	svc := &workload.Service{Name: "svc", Namespace: "default", Hostname: "svc.default.svc.cluster.local",
		VIPs:         []workload.NetworkAddress{{Address: netip.MustParseAddr("10.96.0.1")}},
		Ports:        map[uint16]uint16{80: 8080},
		Endpoints:    map[string]*workload.Endpoint{},
		LoadBalancer: lb,
	}
	for _, w := range ws {
		svc.Endpoints[w.UID] = &workload.Endpoint{WorkloadUID: w.UID}
	}
	return svc
}

func lbSnapshot(t *testing.T, svc *workload.Service, ws ...*workload.Workload) *workload.Snapshot {
	t.Helper()
	store := workload.NewStore()
	if err := store.Apply(workload.Update{Workloads: ws, Services: []*workload.Service{svc}}); err != nil {
		t.Fatal(err)
	}
	return store.Snapshot()
}

// picks draws n endpoints and counts them by workload UID.
func picks(t *testing.T, snap *workload.Snapshot, svc *workload.Service, src *workload.Workload, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		w, port, err := pickEndpoint(snap, svc, 80, false, src)
		if err != nil {
			t.Fatal(err)
		}
		if port != 8080 {
			t.Fatalf("target port %d, want 8080", port)
		}
		got[w.UID]++
	}
	return got
}

// TestPickEndpointPrefersClose: under Failover (what PreferClose traffic distribution asks
// for) only the closest endpoints are drawn, and when none share the zone the draw falls back
// to the region; under Strict an endpoint elsewhere is never drawn, and with none close the
// service has no healthy upstream.
func TestPickEndpointPrefersClose(t *testing.T) {
	src := lbWorkload("client", "10.0.0.1", "r1", "z1", "", "", 1)
	sameZone1 := lbWorkload("same-zone-1", "10.0.1.1", "r1", "z1", "", "", 1)
	sameZone2 := lbWorkload("same-zone-2", "10.0.1.2", "r1", "z1", "", "", 1)
	sameRegion := lbWorkload("same-region", "10.0.2.1", "r1", "z2", "", "", 1)
	elsewhere := lbWorkload("elsewhere", "10.0.3.1", "r2", "z3", "", "", 1)
	prefs := []workload.RoutingScope{workload.ScopeRegion, workload.ScopeZone}
	failover := &workload.LoadBalancer{Mode: workload.LBFailover, RoutingPreferences: prefs}
	strict := &workload.LoadBalancer{Mode: workload.LBStrict, RoutingPreferences: prefs}

	all := []*workload.Workload{sameZone1, sameZone2, sameRegion, elsewhere}
	svc := lbService(failover, all...)
	got := picks(t, lbSnapshot(t, svc, all...), svc, src, 400)
	if got["same-region"]+got["elsewhere"] != 0 || got["same-zone-1"] == 0 || got["same-zone-2"] == 0 {
		t.Errorf("failover drew %v, want both same-zone endpoints and nothing else", got)
	}

	noZone := []*workload.Workload{sameRegion, elsewhere}
	svc = lbService(failover, noZone...)
	if got := picks(t, lbSnapshot(t, svc, noZone...), svc, src, 100); got["same-region"] != 100 {
		t.Errorf("failover without a same-zone endpoint drew %v, want only the same-region one", got)
	}

	// Standard (no load balancer, or its mode Standard) ignores the preferences.
	for _, lb := range []*workload.LoadBalancer{nil, {Mode: workload.LBStandard, RoutingPreferences: prefs}} {
		svc = lbService(lb, all...)
		if got := picks(t, lbSnapshot(t, svc, all...), svc, src, 400); len(got) != 4 {
			t.Errorf("standard (%v) drew %v, want all four endpoints", lb, got)
		}
	}

	svc = lbService(strict, all...)
	if got := picks(t, lbSnapshot(t, svc, all...), svc, src, 200); got["same-zone-1"]+got["same-zone-2"] != 200 {
		t.Errorf("strict drew %v, want only same-zone endpoints", got)
	}
	svc = lbService(strict, noZone...)
	if _, _, err := pickEndpoint(lbSnapshot(t, svc, noZone...), svc, 80, false, src); !errors.Is(err, errNoHealthyEndpoint) {
		t.Errorf("strict with nothing close: %v, want %v", err, errNoHealthyEndpoint)
	}

	// A client of unknown locality matches only endpoints whose locality is unknown too.
	unknown := lbWorkload("unknown-locality", "10.0.4.1", "", "", "", "", 1)
	withUnknown := append([]*workload.Workload{unknown}, all...)
	svc = lbService(failover, withUnknown...)
	if got := picks(t, lbSnapshot(t, svc, withUnknown...), svc, nil, 100); got["unknown-locality"] != 100 {
		t.Errorf("failover for an unknown client drew %v, want the endpoint without locality", got)
	}
}

// TestPickEndpointByCapacity: an endpoint is drawn in proportion to its workload's capacity,
// and one of capacity 0 never.
func TestPickEndpointByCapacity(t *testing.T) {
	one := lbWorkload("one", "10.0.1.1", "", "", "", "", 1)
	three := lbWorkload("three", "10.0.1.2", "", "", "", "", 3)
	zero := lbWorkload("zero", "10.0.1.3", "", "", "", "", 0)
	ws := []*workload.Workload{one, three, zero}
	svc := lbService(nil, ws...)
	const n = 8000
	got := picks(t, lbSnapshot(t, svc, ws...), svc, nil, n)
	// Expected 2,000 and 6,000; the standard deviation is about 39, so 400 is over ten of them.
	if got["zero"] != 0 || got["one"] < n/4-400 || got["one"] > n/4+400 {
		t.Errorf("drew %v of %d, want about %d of one, %d of three and none of zero", got, n, n/4, 3*n/4)
	}

	onlyZero := lbService(nil, zero)
	if _, _, err := pickEndpoint(lbSnapshot(t, onlyZero, zero), onlyZero, 80, false, nil); !errors.Is(err, errNoHealthyEndpoint) {
		t.Errorf("only capacity 0: %v, want %v", err, errNoHealthyEndpoint)
	}
}

// TestPickEndpointServicePorts: a port is mapped by the endpoint first, then by the service; a
// port the service does not list is refused even when an endpoint maps it, as ztunnel does, but
// for a waypoint's endpoint with an application tunnel; a listed port with no target (a named
// port) takes only the endpoints that map it.
func TestPickEndpointServicePorts(t *testing.T) {
	a := lbWorkload("a", "10.0.1.1", "", "", "", "", 1)
	b := lbWorkload("b", "10.0.1.2", "", "", "", "", 1)
	tunnel := lbWorkload("tunnel", "10.0.1.3", "", "", "", "", 1)
	tunnel.ApplicationTunnel = &workload.ApplicationTunnel{Protocol: workload.TunnelProxy, Port: 15088}
	svc := lbService(nil, a, b)
	svc.Ports = map[uint16]uint16{80: 8080, 90: 0}
	svc.Endpoints["a"].Port = map[uint16]uint16{80: 8000, 90: 9000, 81: 8100}
	snap := lbSnapshot(t, svc, a, b)
	svc = snap.ServiceByVIP("", netip.MustParseAddr("10.96.0.1"))
	want := map[string]uint16{"a": 8000, "b": 8080}
	for range 50 {
		w, port, err := pickEndpoint(snap, svc, 80, false, nil)
		if err != nil || port != want[w.UID] {
			t.Fatalf("port 80: %v on %d (%v), want a on 8000 or b on 8080", w, port, err)
		}
		if w, port, err = pickEndpoint(snap, svc, 90, false, nil); err != nil || w.UID != "a" || port != 9000 {
			t.Fatalf("named port 90: %v on %d (%v), want a on 9000", w, port, err)
		}
	}
	for _, waypoint := range []bool{false, true} {
		if w, _, err := pickEndpoint(snap, svc, 81, waypoint, nil); !errors.Is(err, errNoHealthyEndpoint) {
			t.Errorf("port 81, which only an endpoint maps (waypoint %v): %v (%v), want %v", waypoint, w, err, errNoHealthyEndpoint)
		}
	}

	wp := lbService(nil, tunnel, b)
	snap = lbSnapshot(t, wp, tunnel, b)
	wp = snap.ServiceByVIP("", netip.MustParseAddr("10.96.0.1"))
	for range 20 {
		if w, port, err := pickEndpoint(snap, wp, 15008, true, nil); err != nil || w.UID != "tunnel" || port != 15008 {
			t.Fatalf("waypoint on an unlisted 15008: %v on %d (%v), want tunnel on 15008", w, port, err)
		}
	}
}

// TestPickEndpointAllocatesNothing: choosing an endpoint, with or without routing preferences,
// costs a connection no allocation.
func TestPickEndpointAllocatesNothing(t *testing.T) {
	if recordRace {
		t.Skip("the race detector's instrumentation allocates; budgets hold without it")
	}
	src := lbWorkload("client", "10.0.0.1", "r1", "z1", "", "", 1)
	ws := []*workload.Workload{
		lbWorkload("a", "10.0.1.1", "r1", "z1", "", "", 1), lbWorkload("b", "10.0.1.2", "r1", "z2", "", "", 2),
		lbWorkload("c", "10.0.1.3", "r2", "z3", "", "", 1), lbWorkload("d", "10.0.1.4", "r1", "z1", "", "", 3),
	}
	for _, lb := range []*workload.LoadBalancer{nil, {Mode: workload.LBFailover,
		RoutingPreferences: []workload.RoutingScope{workload.ScopeRegion, workload.ScopeZone}}} {
		svc := lbService(lb, ws...)
		snap := lbSnapshot(t, svc, ws...)
		svc = snap.ServiceByVIP("", netip.MustParseAddr("10.96.0.1"))
		if n := testing.AllocsPerRun(200, func() {
			if _, _, err := pickEndpoint(snap, svc, 80, false, src); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("load balancer %v: %v allocations per pick, want 0", lb, n)
		}
	}
}

// TestResolveEndpointFamily: the endpoint's address of the destination's family is chosen,
// within the service's IP families.
func TestResolveEndpointFamily(t *testing.T) {
	dual := &workload.Workload{UID: "dual", Name: "dual", Namespace: "default", Protocol: workload.ProtocolHBONE, Capacity: 1,
		WorkloadIPs: []netip.Addr{netip.MustParseAddr("10.0.1.1"), netip.MustParseAddr("fd00::1:1")}}
	v6only := &workload.Workload{UID: "v6only", Name: "v6only", Namespace: "default", Protocol: workload.ProtocolHBONE, Capacity: 1,
		WorkloadIPs: []netip.Addr{netip.MustParseAddr("fd00::2:1")}}
	svc := func(name string, vip4, vip6 string, fam workload.IPFamily, w *workload.Workload) *workload.Service {
		return &workload.Service{Name: name, Namespace: "default", Hostname: name + ".default.svc.cluster.local",
			VIPs: []workload.NetworkAddress{
				{Address: netip.MustParseAddr(vip4)}, {Address: netip.MustParseAddr(vip6)}},
			Ports: map[uint16]uint16{80: 8080}, IPFamilies: fam,
			Endpoints: map[string]*workload.Endpoint{w.UID: {WorkloadUID: w.UID}}}
	}
	store := workload.NewStore()
	if err := store.Apply(workload.Update{Workloads: []*workload.Workload{dual, v6only}, Services: []*workload.Service{
		svc("auto", "10.96.0.1", "fd00:96::1", workload.IPFamilyAutomatic, dual),
		svc("v4only", "10.96.0.2", "fd00:96::2", workload.IPFamilyIPv4, dual),
		svc("v4svc-v6pod", "10.96.0.3", "fd00:96::3", workload.IPFamilyIPv4, v6only),
	}}); err != nil {
		t.Fatal(err)
	}
	p := &Proxy{cfg: Config{Ports: Ports{RemoteHBONE: 15008}}}
	snap := store.Snapshot()
	for _, tt := range []struct{ dst, want string }{
		{"10.96.0.1:80", "10.0.1.1:8080"},
		{"[fd00:96::1]:80", "[fd00::1:1]:8080"},
		{"10.96.0.2:80", "10.0.1.1:8080"},
		{"[fd00:96::2]:80", "10.0.1.1:8080"}, // the service is IPv4 only
		{"[fd00:96::3]:80", ""},              // its only endpoint has no IPv4 address
	} {
		rt, err := p.resolve(snap, netip.MustParseAddr("10.0.0.1"), clientIDForLB, nil, netip.MustParseAddrPort(tt.dst))
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("%s: routed to %v, want an error", tt.dst, rt.target)
		case tt.want != "" && (err != nil || rt.target.String() != tt.want):
			t.Errorf("%s: target %v, %v; want %s", tt.dst, rt.target, err, tt.want)
		case tt.want != "" && rt.hboneAddr.Addr() != rt.target.Addr():
			t.Errorf("%s: tunnel to %v for target %v", tt.dst, rt.hboneAddr, rt.target)
		}
	}
}

var clientIDForLB = (&workload.Workload{Namespace: "default", ServiceAccount: "client"}).Identity()

// startEcho listens on ip (a free port, returned) until the test ends, counting accepted
// connections in conns and echoing each one.
func startEcho(t *testing.T, ip netip.Addr, conns *atomic.Int64) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// TestOutboundPassthroughService: a connection to the VIP of a service whose load balancer is
// in passthrough mode goes to that VIP itself, directly (no HBONE to the endpoint), and the
// access log names no destination service or workload, as ztunnel does.
func TestOutboundPassthroughService(t *testing.T) {
	e := newEnv(t)
	vip := netip.MustParseAddr("127.0.0.30")
	var vipConns atomic.Int64
	port := startEcho(t, vip, &vipConns)
	svc := &workload.Service{Name: "pass", Namespace: "default", Hostname: "pass.default.svc.cluster.local",
		VIPs:         []workload.NetworkAddress{{Address: vip}},
		Ports:        map[uint16]uint16{port: e.appPort},
		Endpoints:    map[string]*workload.Endpoint{"server": {WorkloadUID: "server"}},
		LoadBalancer: &workload.LoadBalancer{Mode: workload.LBPassthrough},
	}
	e.apply(t, workload.Update{Services: []*workload.Service{svc}})

	c := e.socksDial(t, netip.AddrPortFrom(vip, port))
	if got := roundTrip(t, c, "through"); got != "through" {
		t.Fatalf("echo = %q", got)
	}
	if vipConns.Load() != 1 || e.appConns.Load() != 0 {
		t.Errorf("the VIP's listener saw %d connections and the endpoint %d; want 1 and 0", vipConns.Load(), e.appConns.Load())
	}
	dst := netip.AddrPortFrom(vip, port).String()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(e.access.String(), "dst.addr="+dst) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	log := e.access.String()
	if !strings.Contains(log, "dst.addr="+dst) || strings.Contains(log, "pass.default.svc.cluster.local") ||
		strings.Contains(log, "dst.hbone_addr") {
		t.Errorf("access log:\n%s\nwant a plain connection to %s naming no service", log, dst)
	}
}

// startTestDNS serves A records for names on a loopback UDP port (a real DNS server, miekg/dns),
// with an SOA in every answer without records, and returns the resolver ztunnel uses for it
// (ztunnel-go's dns.Resolver, caching) and the count of queries the server saw.
func startTestDNS(t *testing.T, names map[string]netip.Addr) (func(ctx context.Context, host string) ([]netip.Addr, error), *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var queries atomic.Int64
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		ip, ok := names[strings.TrimSuffix(q.Name, ".")]
		switch {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeA && ip.Is4():
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: ip.AsSlice()})
		}
		if len(m.Answer) == 0 {
			m.Ns = append(m.Ns, &dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 30},
				Ns: "ns.example.", Mbox: "admin.example.", Serial: 1, Refresh: 60, Retry: 60, Expire: 600, Minttl: 30})
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	r, err := zdns.NewResolver(zdns.ResolverConfig{Servers: []string{pc.LocalAddr().String()}, Hosts: map[string][]netip.Addr{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r.LookupHost, &queries
}

// TestOutboundOnDemandDNS: a service whose endpoint istiod knows by hostname only (a
// ServiceEntry with DNS resolution) is reached at the address the hostname resolves to, looked
// up over DNS when the connection is made (the answer cached for its TTL) and counted in
// istio_on_demand_dns_total; a hostname that does not resolve fails the connection alone.
func TestOutboundOnDemandDNS(t *testing.T) {
	extIP := netip.MustParseAddr("127.0.0.40")
	lookup, queries := startTestDNS(t, map[string]netip.Addr{"external.example": extIP})
	e := newEnvConfig(t, func(c *Config) { c.LookupHost = lookup })
	var extConns atomic.Int64
	extPort := startEcho(t, extIP, &extConns)
	external := func(uid, host string) *workload.Workload {
		return &workload.Workload{UID: uid, Name: uid, Namespace: "default", Hostname: host, Capacity: 1}
	}
	service := func(name string, vip netip.Addr, uid string) *workload.Service {
		return &workload.Service{Name: name, Namespace: "default", Hostname: name + ".example",
			VIPs:      []workload.NetworkAddress{{Address: vip}},
			Ports:     map[uint16]uint16{80: extPort},
			Endpoints: map[string]*workload.Endpoint{uid: {WorkloadUID: uid}}}
	}
	good, bad := netip.MustParseAddr("127.0.0.41"), netip.MustParseAddr("127.0.0.42")
	e.apply(t, workload.Update{
		Workloads: []*workload.Workload{external("ext", "external.example"), external("gone", "gone.example")},
		Services:  []*workload.Service{service("ext", good, "ext"), service("gone", bad, "gone")},
	})

	for i := range 2 {
		c := e.socksDial(t, netip.AddrPortFrom(good, 80))
		if got := roundTrip(t, c, "out of the mesh"); got != "out of the mesh" {
			t.Fatalf("connection %d: echo = %q", i, got)
		}
	}
	c := e.socksDial(t, netip.AddrPortFrom(bad, 80))
	if got := roundTrip(t, c, "nowhere"); got != "" {
		t.Errorf("a hostname that does not resolve echoed %q", got)
	}
	if n := extConns.Load(); n != 2 {
		t.Errorf("the external address saw %d connections, want 2", n)
	}
	// A and AAAA for each name, once: the second connection's answers came from the cache.
	if n := queries.Load(); n != 4 {
		t.Errorf("the DNS server saw %d queries, want 4", n)
	}

	rec := httptest.NewRecorder()
	e.proxy.cfg.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	src := `source_workload="client"`
	if n := promtext.Sum(body, "istio_on_demand_dns_total", `hostname="external.example"`, src); n != 2 {
		t.Errorf("istio_on_demand_dns_total for external.example = %v, want 2:\n%s", n, body)
	}
	if n := promtext.Sum(body, "istio_on_demand_dns_total", `hostname="gone.example"`, src); n != 1 {
		t.Errorf("istio_on_demand_dns_total for gone.example = %v, want 1", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(e.access.String(), "on-demand DNS lookup of gone.example") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if log := e.access.String(); !strings.Contains(log, "on-demand DNS lookup of gone.example") ||
		!strings.Contains(log, "dst.addr="+netip.AddrPortFrom(extIP, extPort).String()) {
		t.Errorf("access log lacks the connection to %v or the failed lookup:\n%s", extIP, log)
	}
}

// BenchmarkPickEndpoint: one endpoint drawn from a service of 16 across four zones, without and
// with PreferClose's routing preferences.
func BenchmarkPickEndpoint(b *testing.B) {
	src := lbWorkload("client", "10.0.0.1", "r1", "z1", "", "", 1)
	var ws []*workload.Workload
	for i := range 16 {
		ws = append(ws, lbWorkload(fmt.Sprintf("ep%d", i), fmt.Sprintf("10.0.1.%d", i+1), "r1", fmt.Sprintf("z%d", i%4), "", "", 1))
	}
	for _, bc := range []struct {
		name string
		lb   *workload.LoadBalancer
	}{
		{"standard", nil},
		{"failover", &workload.LoadBalancer{Mode: workload.LBFailover,
			RoutingPreferences: []workload.RoutingScope{workload.ScopeNetwork, workload.ScopeRegion, workload.ScopeZone, workload.ScopeSubzone}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			svc := lbService(bc.lb, ws...)
			store := workload.NewStore()
			if err := store.Apply(workload.Update{Workloads: ws, Services: []*workload.Service{svc}}); err != nil {
				b.Fatal(err)
			}
			snap := store.Snapshot()
			svc = snap.ServiceByVIP("", netip.MustParseAddr("10.96.0.1"))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := pickEndpoint(snap, svc, 80, false, src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
