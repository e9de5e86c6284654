package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"github.com/ztunnel-go/ztunnel/tls/certs"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	"github.com/ztunnel-go/ztunnel/workload"
)

// Waypoint tests: a test waypoint is an hbone.Server on its own loopback address with a mesh
// certificate for the waypoint identity. It records what arrived and echoes the stream, so a
// test can tell that the bytes reached the waypoint and not the app behind it.

var (
	waypointIP = netip.MustParseAddr("127.0.0.10")
	waypointID = identity.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "waypoint"}
	echoVIP    = netip.MustParseAddr("127.0.0.20")
	targetIP   = netip.MustParseAddr("127.0.0.5")
)

const (
	echoHost     = "echo.default.svc.cluster.local"
	waypointHost = "waypoint.default.svc.cluster.local"
)

// waypointRequest is what a test waypoint saw of one CONNECT.
type waypointRequest struct {
	authority   string
	forwarded   string
	peer        identity.ID // the client certificate's identity
	baggage     string
	traceparent string
}

type testWaypoint struct {
	addr netip.AddrPort

	mu   sync.Mutex
	reqs []waypointRequest // guarded by mu
	// peek, when set, makes the server read for up to peek before it answers, and record in
	// early how many bytes it got: data sent with the request. Guarded by mu.
	peek  time.Duration
	early []int
}

// earlyBytes returns what the server read before it answered, per request since peek was set.
func (w *testWaypoint) earlyBytes() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.early)
}

func (w *testWaypoint) requests() []waypointRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.reqs)
}

// startWaypoint serves HBONE on addr with a certificate for id (see serveHBONETLS).
func (e *testEnv) startWaypoint(t *testing.T, addr netip.AddrPort, id identity.ID) *testWaypoint {
	t.Helper()
	l, err := net.Listen("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	wp := &testWaypoint{addr: addr}
	serveHBONETLS(t, l, e.certs.ServerConfig(id), func(peer identity.ID) hbone.Handler {
		return hbone.HandlerFunc(func(s *hbone.Stream, req *hbone.Request) {
			wp.mu.Lock()
			wp.reqs = append(wp.reqs, waypointRequest{req.Authority, req.Header.Get("Forwarded"), peer, req.Header.Get("Baggage"), req.Header.Get("Traceparent")})
			peek := wp.peek
			wp.mu.Unlock()
			var first [64]byte
			n := 0
			if peek > 0 {
				s.SetReadDeadline(time.Now().Add(peek))
				n, _ = s.Read(first[:])
				s.SetReadDeadline(time.Time{})
				wp.mu.Lock()
				wp.early = append(wp.early, n)
				wp.mu.Unlock()
			}
			if err := s.Respond(http.StatusOK); err != nil {
				return
			}
			s.Write(first[:n])
			io.Copy(s, s)
			s.CloseWrite()
		})
	})
	return wp
}

// serveHBONETLS accepts on l, completes mTLS with cfg and serves HBONE on each connection with
// the handler handler returns for its client's verified identity. The accept loop and
// connection goroutines are owned by the test: cleanup closes the listener, cancels the
// connections and waits for all of them.
func serveHBONETLS(t *testing.T, l net.Listener, cfg *tls.Config, handler func(peer identity.ID) hbone.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				tc := tls.Server(c, cfg)
				if err := tc.HandshakeContext(ctx); err != nil {
					c.Close()
					return
				}
				peer, _ := certs.PeerID(tc.ConnectionState())
				(&hbone.Server{Handler: handler(peer)}).ServeConn(ctx, tc)
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		cancel()
		wg.Wait()
	})
}

// waypointAt is a GatewayAddress naming a waypoint by address.
func waypointAt(addr netip.AddrPort) *workload.GatewayAddress {
	return &workload.GatewayAddress{
		Destination:   workload.GatewayDestination{Address: &workload.NetworkAddress{Address: addr.Addr()}},
		HBONEMTLSPort: addr.Port(),
	}
}

// waypointNamed is a GatewayAddress naming a waypoint by its service's hostname.
func waypointNamed(ns, host string, port uint16) *workload.GatewayAddress {
	return &workload.GatewayAddress{
		Destination:   workload.GatewayDestination{Hostname: &workload.NamespacedHostname{Namespace: ns, Hostname: host}},
		HBONEMTLSPort: port,
	}
}

func waypointWorkload(ip netip.Addr) *workload.Workload {
	return &workload.Workload{UID: "waypoint", Name: "waypoint", Namespace: "default", ServiceAccount: "waypoint",
		TrustDomain: "cluster.local", WorkloadIPs: []netip.Addr{ip}, Protocol: workload.ProtocolHBONE, Capacity: 1}
}

// echoService is a service at echoVIP:80 backed by the server workload (the env's app).
func (e *testEnv) echoService(gw *workload.GatewayAddress) *workload.Service {
	return &workload.Service{Name: "echo", Namespace: "default", Hostname: echoHost,
		VIPs:      []workload.NetworkAddress{{Address: echoVIP}},
		Ports:     map[uint16]uint16{80: e.appPort},
		Endpoints: map[string]*workload.Endpoint{"server": {WorkloadUID: "server"}},
		Waypoint:  gw}
}

// socksDialFrom is socksDial from another source address.
func (e *testEnv) socksDialFrom(t *testing.T, src netip.Addr, dst netip.AddrPort) net.Conn {
	t.Helper()
	return e.socksPipelined(t, src, dst, "")
}

// roundTrip writes msg, half-closes and returns everything read back. Write errors are not
// fatal: a refused connection may already be reset.
func roundTrip(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err == nil {
		c.(*net.TCPConn).CloseWrite()
	}
	got, _ := io.ReadAll(c)
	return string(got)
}

func (e *testEnv) apply(t *testing.T, u workload.Update) {
	t.Helper()
	if err := e.store.Apply(u); err != nil {
		t.Fatal(err)
	}
}

// TestOutboundToWaypoint: service- and workload-addressed connections whose destination has a
// waypoint reach the waypoint over HBONE with the original destination as authority; the
// waypoint's own connections to a workload behind it go straight to the workload.
func TestOutboundToWaypoint(t *testing.T) {
	e := newEnv(t)
	wp := e.startWaypoint(t, netip.AddrPortFrom(waypointIP, e.ports.RemoteHBONE), waypointID)
	gw := waypointAt(wp.addr)
	server := &workload.Workload{UID: "server", Name: "server", Namespace: "default", ServiceAccount: "server",
		TrustDomain: "cluster.local", WorkloadIPs: []netip.Addr{serverIP}, Protocol: workload.ProtocolHBONE, Capacity: 1,
		Waypoint: gw}
	e.apply(t, workload.Update{
		Workloads: []*workload.Workload{waypointWorkload(waypointIP), server},
		Services:  []*workload.Service{e.echoService(gw)},
	})
	appDst := netip.AddrPortFrom(serverIP, e.appPort)
	svcDst := netip.AddrPortFrom(echoVIP, 80)
	cases := []struct {
		name         string
		src          netip.Addr
		dst          netip.AddrPort
		wantWaypoint bool
		wantFwd      string // Forwarded header the waypoint sees, after for="src:port"
		wantLog      []string
	}{
		{"service with a waypoint", clientIP, svcDst, true, ";host=" + echoHost,
			[]string{"dst.addr=" + wp.addr.String(), "dst.hbone_addr=" + svcDst.String(), "dst.service=" + echoHost,
				"dst.workload=waypoint", "dst.identity=" + waypointID.String(), "src.identity=" + clientID.String()}},
		{"workload with a waypoint", clientIP, appDst, true, "",
			[]string{"dst.addr=" + wp.addr.String(), "dst.hbone_addr=" + appDst.String(), "dst.workload=waypoint",
				"dst.identity=" + waypointID.String()}},
		// ztunnel exempts the waypoint's own traffic only when it addresses the workload.
		{"workload from its waypoint", waypointIP, appDst, false, "",
			[]string{"src.identity=" + waypointID.String(), "dst.hbone_addr=" + appDst.String(), "dst.workload=server",
				"dst.identity=" + serverID.String()}},
		{"service from its waypoint", waypointIP, svcDst, true, ";host=" + echoHost,
			[]string{"src.identity=" + waypointID.String(), "dst.hbone_addr=" + svcDst.String(), "dst.workload=waypoint"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, apps := len(wp.requests()), e.appConns.Load()
			conn := e.socksDialFrom(t, c.src, c.dst)
			local := conn.LocalAddr().String()
			if got := roundTrip(t, conn, "hello"); got != "hello" {
				t.Fatalf("echo = %q, want hello", got)
			}
			reqs := wp.requests()[before:]
			gotApps := e.appConns.Load() - apps
			if !c.wantWaypoint {
				if len(reqs) != 0 || gotApps != 1 {
					t.Fatalf("waypoint saw %d requests and the app %d connections, want 0 and 1", len(reqs), gotApps)
				}
			} else {
				if len(reqs) != 1 || gotApps != 0 {
					t.Fatalf("waypoint saw %d requests and the app %d connections, want 1 and 0", len(reqs), gotApps)
				}
				// Both clients are workloads of namespace default and nothing else known.
				want := waypointRequest{c.dst.String(), `for="` + local + `"` + c.wantFwd, identity.ID{}, "k8s.namespace.name=default", reqs[0].traceparent}
				want.peer, _ = identity.Parse(map[netip.Addr]string{clientIP: clientID.String(), waypointIP: waypointID.String()}[c.src])
				if reqs[0] != want {
					t.Errorf("waypoint got %+v, want %+v", reqs[0], want)
				}
			}
			waitLog(t, e.access, append([]string{"connection complete", "direction=outbound", "src.addr=" + local}, c.wantLog...)...)
		})
	}
}

// TestOutboundWaypointByHostname: a waypoint named by namespace/hostname is reached through its
// service: one of its endpoints, on the target port the service maps hboneMtlsPort to.
func TestOutboundWaypointByHostname(t *testing.T) {
	e := newEnv(t)
	wpIP := netip.MustParseAddr("127.0.0.11")
	wpPort := freePort(t)
	wp := e.startWaypoint(t, netip.AddrPortFrom(wpIP, wpPort), waypointID)
	wpSvc := &workload.Service{Name: "waypoint", Namespace: "default", Hostname: waypointHost,
		VIPs:      []workload.NetworkAddress{{Address: netip.MustParseAddr("127.0.0.21")}},
		Ports:     map[uint16]uint16{15008: wpPort},
		Endpoints: map[string]*workload.Endpoint{"waypoint": {WorkloadUID: "waypoint"}}}
	e.apply(t, workload.Update{
		Workloads: []*workload.Workload{waypointWorkload(wpIP)},
		Services:  []*workload.Service{wpSvc, e.echoService(waypointNamed("default", waypointHost, 15008))},
	})
	dst := netip.AddrPortFrom(echoVIP, 80)
	if got := roundTrip(t, e.socksDial(t, dst), "hi"); got != "hi" {
		t.Fatalf("echo = %q, want hi", got)
	}
	if reqs := wp.requests(); len(reqs) != 1 || reqs[0].authority != dst.String() {
		t.Fatalf("waypoint requests = %+v, want one for %s", reqs, dst)
	}
	if n := e.appConns.Load(); n != 0 {
		t.Errorf("the app saw %d connections, want none", n)
	}
	waitLog(t, e.access, "connection complete", "dst.addr="+wp.addr.String(), "dst.hbone_addr="+dst.String(), "dst.workload=waypoint")
}

// TestOutboundWaypointFailures: a waypoint with the wrong identity is refused during the
// handshake, an unknown waypoint fails the connection before it is counted (ztunnel's
// "connection failed" line); neither reaches the app.
func TestOutboundWaypointFailures(t *testing.T) {
	e := newEnv(t)
	impostor := identity.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "impostor"}
	wp := e.startWaypoint(t, netip.AddrPortFrom(waypointIP, e.ports.RemoteHBONE), impostor)
	e.apply(t, workload.Update{Workloads: []*workload.Workload{waypointWorkload(waypointIP)}})
	cases := []struct {
		name    string
		gw      *workload.GatewayAddress
		wantLog []string
	}{
		{"waypoint with another identity", waypointAt(wp.addr),
			[]string{"connection complete", "dst.service=" + echoHost, "dst.workload=waypoint", "dst.addr=" + wp.addr.String(), `error="tls error: server identity`}},
		{"unknown waypoint address", waypointAt(netip.MustParseAddrPort("127.0.0.99:15008")),
			[]string{"level=WARN", "connection failed", "dst.addr=" + netip.AddrPortFrom(echoVIP, 80).String(), "direction=outbound", `error="unknown waypoint: waypoint /127.0.0.99 not found"`}},
		{"unknown waypoint hostname", waypointNamed("default", "nowhere.default.svc.cluster.local", 15008),
			[]string{"level=WARN", "connection failed", "dst.addr=" + netip.AddrPortFrom(echoVIP, 80).String(), "direction=outbound", `error="unknown waypoint: waypoint nowhere.default.svc.cluster.local not found"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.apply(t, workload.Update{Services: []*workload.Service{e.echoService(c.gw)}})
			conn := e.socksDial(t, netip.AddrPortFrom(echoVIP, 80))
			local := conn.LocalAddr().String()
			if got := roundTrip(t, conn, "x"); got != "" {
				t.Fatalf("relayed %q, want nothing", got)
			}
			waitLog(t, e.access, append([]string{"src.addr=" + local}, c.wantLog...)...)
		})
	}
	if n := e.appConns.Load(); n != 0 {
		t.Errorf("the app saw %d connections, want none", n)
	}
	if n := promtext.Sum(e.metricsText(t), "istio_tcp_connections_opened_total", `reporter="source"`); n != 1 {
		t.Errorf("%v outbound connections counted, want 1 (the one to the impostor)", n)
	}
	if n := len(wp.requests()); n != 0 {
		t.Errorf("the impostor waypoint got %d requests, want none", n)
	}
}

// TestResolveWaypoint checks the routing decisions on a store alone (no sockets).
func TestResolveWaypoint(t *testing.T) {
	wpA := netip.MustParseAddr("10.0.0.10")
	wpB := netip.MustParseAddr("10.0.0.11")
	wpVIP := netip.MustParseAddr("10.96.0.10")
	src := netip.MustParseAddr("10.0.0.3")
	mk := func(uid string, ip netip.Addr, sa string, gw *workload.GatewayAddress) *workload.Workload {
		return &workload.Workload{UID: uid, Name: uid, Namespace: "ns", ServiceAccount: sa, WorkloadIPs: []netip.Addr{ip},
			Protocol: workload.ProtocolHBONE, Waypoint: gw, Capacity: 1}
	}
	tunnelled := mk("tunnelled", wpB, "wp-tunnel", nil)
	tunnelled.Hostname = "wp-host.ns"
	tunnelled.ApplicationTunnel = &workload.ApplicationTunnel{Port: 15088}
	store := workload.NewStore()
	err := store.Apply(workload.Update{
		Workloads: []*workload.Workload{
			mk("wp", wpA, "wp", nil),
			tunnelled,
			mk("client", src, "client", nil),
			mk("byaddr", netip.MustParseAddr("10.0.0.20"), "app", waypointAt(netip.AddrPortFrom(wpA, 15008))),
			mk("byvip", netip.MustParseAddr("10.0.0.21"), "app", waypointAt(netip.AddrPortFrom(wpVIP, 15008))),
			mk("byhost", netip.MustParseAddr("10.0.0.22"), "app", waypointNamed("ns", "wp-host.ns", 15008)),
			mk("unknown", netip.MustParseAddr("10.0.0.23"), "app", waypointNamed("ns", "none.ns", 15008)),
			mk("plain", netip.MustParseAddr("10.0.0.24"), "app", nil),
		},
		Services: []*workload.Service{
			{Name: "wp", Namespace: "ns", Hostname: "wp.ns", VIPs: []workload.NetworkAddress{{Address: wpVIP}},
				Ports:           map[uint16]uint16{15008: 15009},
				Endpoints:       map[string]*workload.Endpoint{"wp": {WorkloadUID: "wp"}},
				SubjectAltNames: []string{"spiffe://cluster.local/ns/ns/sa/wp-alt"}},
			{Name: "tun", Namespace: "ns", Hostname: "tun.ns", VIPs: []workload.NetworkAddress{{Address: netip.MustParseAddr("10.96.0.11")}},
				Ports:     map[uint16]uint16{80: 8080},
				Endpoints: map[string]*workload.Endpoint{"tunnelled": {WorkloadUID: "tunnelled"}}},
			{Name: "svc", Namespace: "ns", Hostname: "svc.ns", VIPs: []workload.NetworkAddress{{Address: netip.MustParseAddr("10.96.0.1")}},
				Ports:     map[uint16]uint16{80: 8080},
				Endpoints: map[string]*workload.Endpoint{"plain": {WorkloadUID: "plain"}},
				Waypoint:  waypointNamed("ns", "wp.ns", 15008)},
			{Name: "tsvc", Namespace: "ns", Hostname: "tsvc.ns", VIPs: []workload.NetworkAddress{{Address: netip.MustParseAddr("10.96.0.2")}},
				Ports:     map[uint16]uint16{80: 8080},
				Endpoints: map[string]*workload.Endpoint{"plain": {WorkloadUID: "plain"}},
				Waypoint:  waypointNamed("ns", "tun.ns", 15008)},
			{Name: "nowp", Namespace: "ns", Hostname: "nowp.ns", VIPs: []workload.NetworkAddress{{Address: netip.MustParseAddr("10.96.0.3")}},
				Ports:     map[uint16]uint16{80: 8080},
				Endpoints: map[string]*workload.Endpoint{"byaddr": {WorkloadUID: "byaddr"}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := func(sa string) identity.ID {
		return identity.ID{TrustDomain: "cluster.local", Namespace: "ns", ServiceAccount: sa}
	}
	p := &Proxy{cfg: Config{Ports: Ports{RemoteHBONE: 15008}}}
	cases := []struct {
		name     string
		src      netip.Addr
		srcID    identity.ID
		dst      string
		wantErr  bool
		wantVia  bool
		wantAddr string // hboneAddr
		wantAuth string // target (authority)
		wantW    string
		wantIDs  []identity.ID
	}{
		{"workload, waypoint by address", src, id("client"), "10.0.0.20:80", false, true, "10.0.0.10:15008", "10.0.0.20:80", "wp", []identity.ID{id("wp")}},
		{"workload, waypoint by service VIP", src, id("client"), "10.0.0.21:80", false, true, "10.0.0.10:15009", "10.0.0.21:80", "wp",
			[]identity.ID{id("wp"), id("wp-alt")}},
		{"workload, waypoint by workload hostname", src, id("client"), "10.0.0.22:80", false, true, "10.0.0.11:15008", "10.0.0.22:80", "tunnelled",
			[]identity.ID{id("wp-tunnel")}},
		{"workload, unknown waypoint", src, id("client"), "10.0.0.23:80", true, false, "", "", "", nil},
		{"workload from its waypoint", wpA, id("wp"), "10.0.0.20:80", false, false, "10.0.0.20:15008", "10.0.0.20:80", "byaddr", []identity.ID{id("app")}},
		{"waypoint address, other identity", wpA, id("client"), "10.0.0.20:80", false, true, "10.0.0.10:15008", "10.0.0.20:80", "wp", []identity.ID{id("wp")}},
		{"waypoint identity, other address", src, id("wp"), "10.0.0.20:80", false, true, "10.0.0.10:15008", "10.0.0.20:80", "wp", []identity.ID{id("wp")}},
		{"workload from an endpoint of its waypoint service", wpA, id("wp"), "10.0.0.21:80", false, false, "10.0.0.21:15008", "10.0.0.21:80", "byvip", []identity.ID{id("app")}},
		{"service, waypoint by hostname", src, id("client"), "10.96.0.1:80", false, true, "10.0.0.10:15009", "10.96.0.1:80", "wp",
			[]identity.ID{id("wp"), id("wp-alt")}},
		{"service from its waypoint still goes to it", wpA, id("wp"), "10.96.0.1:80", false, true, "10.0.0.10:15009", "10.96.0.1:80", "wp",
			[]identity.ID{id("wp"), id("wp-alt")}},
		{"service, waypoint reached by application tunnel", src, id("client"), "10.96.0.2:80", false, true, "10.0.0.11:15008", "10.96.0.2:80", "tunnelled",
			[]identity.ID{id("wp-tunnel")}},
		{"service without waypoint ignores the endpoint's", src, id("client"), "10.96.0.3:80", false, false, "10.0.0.20:15008", "10.0.0.20:8080", "byaddr",
			[]identity.ID{id("app")}},
		{"workload without waypoint", src, id("client"), "10.0.0.24:80", false, false, "10.0.0.24:15008", "10.0.0.24:80", "plain", []identity.ID{id("app")}},
	}
	snap := store.Snapshot()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := netip.MustParseAddrPort(c.dst)
			rt, err := p.resolve(snap, c.src, c.srcID, nil, dst)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if c.wantErr {
				return
			}
			got := []string{strconv.FormatBool(rt.waypoint), strconv.FormatBool(rt.hbone), rt.hboneAddr.String(), rt.target.String(), rt.dstW.Name}
			want := []string{strconv.FormatBool(c.wantVia), "true", c.wantAddr, c.wantAuth, c.wantW}
			if !slices.Equal(got, want) {
				t.Errorf("waypoint, hbone, hboneAddr, target, dstW = %q, want %q", got, want)
			}
			if !slices.Equal(rt.expected, c.wantIDs) {
				t.Errorf("expected = %v, want %v", rt.expected, c.wantIDs)
			}
		})
	}
}

func TestServiceWaypointWeights(t *testing.T) {
	a, b := waypointAt(netip.MustParseAddrPort("10.0.0.1:15008")), waypointAt(netip.MustParseAddrPort("10.0.0.2:15008"))
	single := waypointAt(netip.MustParseAddrPort("10.0.0.3:15008"))
	cases := []struct {
		name     string
		weighted []workload.WeightedWaypoint
		want     *workload.GatewayAddress
	}{
		{"single waypoint", nil, single},
		{"zero weights fall back to the single waypoint", []workload.WeightedWaypoint{{Destination: *a}, {Destination: *b}}, single},
		{"only the weighted one is drawn", []workload.WeightedWaypoint{{Destination: *a}, {Destination: *b, Weight: 3}}, b},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svc := &workload.Service{Waypoint: single, WeightedWaypoints: c.weighted}
			for range 50 {
				if got := serviceWaypoint(svc); got.Destination.String() != c.want.Destination.String() {
					t.Fatalf("waypoint = %s, want %s", got.Destination, c.want.Destination)
				}
			}
		})
	}
	// Both candidates of an even split are drawn.
	svc := &workload.Service{WeightedWaypoints: []workload.WeightedWaypoint{{Destination: *a, Weight: 1}, {Destination: *b, Weight: 1}}}
	seen := map[string]bool{}
	for range 200 {
		seen[serviceWaypoint(svc).Destination.String()] = true
	}
	if len(seen) != 2 {
		t.Errorf("drew %v from an even split, want both", seen)
	}
}

// BenchmarkResolveWaypoint is the routing decision of a service-addressed connection through a
// waypoint named by hostname (the common shape istiod sends).
func BenchmarkResolveWaypoint(b *testing.B) {
	store := workload.NewStore()
	err := store.Apply(workload.Update{
		Workloads: []*workload.Workload{
			{UID: "wp", Name: "wp", Namespace: "ns", WorkloadIPs: []netip.Addr{netip.MustParseAddr("10.0.0.10")}, Protocol: workload.ProtocolHBONE, Capacity: 1},
			{UID: "app", Name: "app", Namespace: "ns", WorkloadIPs: []netip.Addr{netip.MustParseAddr("10.0.0.20")}, Protocol: workload.ProtocolHBONE, Capacity: 1},
		},
		Services: []*workload.Service{
			{Name: "wp", Namespace: "ns", Hostname: "wp.ns", VIPs: []workload.NetworkAddress{{Address: netip.MustParseAddr("10.96.0.10")}},
				Ports: map[uint16]uint16{15008: 15008}, Endpoints: map[string]*workload.Endpoint{"wp": {WorkloadUID: "wp"}}},
			{Name: "svc", Namespace: "ns", Hostname: "svc.ns", VIPs: []workload.NetworkAddress{{Address: netip.MustParseAddr("10.96.0.1")}},
				Ports: map[uint16]uint16{80: 8080}, Endpoints: map[string]*workload.Endpoint{"app": {WorkloadUID: "app"}},
				Waypoint: waypointNamed("ns", "wp.ns", 15008)},
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	p := &Proxy{cfg: Config{Ports: Ports{RemoteHBONE: 15008}}}
	snap := store.Snapshot()
	src, dst := netip.MustParseAddr("10.0.0.3"), netip.MustParseAddrPort("10.96.0.1:80")
	b.ReportAllocs()
	for b.Loop() {
		if rt, err := p.resolve(snap, src, identity.ID{}, nil, dst); err != nil || !rt.waypoint {
			b.Fatal(rt, err)
		}
	}
}

// TestOutboundWaypointOnDemandDNS: a waypoint whose workload istiod knows by hostname only is
// looked up when the connection is made, as any such workload: the tunnel goes to the address
// the name resolves to, its authority stays the destination the app asked for.
func TestOutboundWaypointOnDemandDNS(t *testing.T) {
	wpIP := netip.MustParseAddr("127.0.0.12")
	lookup, queries := startTestDNS(t, map[string]netip.Addr{"waypoint.example": wpIP})
	e := newEnvConfig(t, func(c *Config) { c.LookupHost = lookup })
	wpPort := freePort(t)
	wp := e.startWaypoint(t, netip.AddrPortFrom(wpIP, wpPort), waypointID)
	byName := waypointWorkload(netip.Addr{})
	byName.WorkloadIPs, byName.Hostname = nil, "waypoint.example"
	wpSvc := &workload.Service{Name: "waypoint", Namespace: "default", Hostname: waypointHost,
		VIPs:      []workload.NetworkAddress{{Address: netip.MustParseAddr("127.0.0.22")}},
		Ports:     map[uint16]uint16{15008: wpPort},
		Endpoints: map[string]*workload.Endpoint{"waypoint": {WorkloadUID: "waypoint"}}}
	e.apply(t, workload.Update{
		Workloads: []*workload.Workload{byName},
		Services:  []*workload.Service{wpSvc, e.echoService(waypointNamed("default", waypointHost, 15008))},
	})
	dst := netip.AddrPortFrom(echoVIP, 80)
	for range 2 {
		if got := roundTrip(t, e.socksDial(t, dst), "hi"); got != "hi" {
			t.Fatalf("echo = %q, want hi", got)
		}
	}
	if reqs := wp.requests(); len(reqs) != 2 || reqs[0].authority != dst.String() {
		t.Fatalf("waypoint requests = %+v, want two for %s", reqs, dst)
	}
	if n := e.appConns.Load(); n != 0 {
		t.Errorf("the app saw %d connections, want none", n)
	}
	if n := queries.Load(); n != 2 {
		t.Errorf("the DNS server saw %d queries, want 2 (A and AAAA, once)", n)
	}
	waitLog(t, e.access, "connection complete", "dst.addr="+wp.addr.String(), "dst.hbone_addr="+dst.String(), "dst.workload=waypoint")
}
