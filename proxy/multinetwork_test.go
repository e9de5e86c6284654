package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"github.com/ztunnel-go/ztunnel/netutil"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	"github.com/ztunnel-go/ztunnel/workload"
)

// TestInboundServiceHostname: the inner request of double HBONE names a service by hostname;
// the proxy maps the service port to the receiving workload's target port (the endpoint's own
// mapping first), refuses hostnames and ports it cannot map, and takes a client whose request
// comes from another network (x-forwarded-network) for no workload of its own network, as
// its address is the network gateway's.
func TestInboundServiceHostname(t *testing.T) {
	e := newEnv(t)
	named := &workload.Service{Name: "named", Namespace: "default", Hostname: "named.default.svc.cluster.local",
		VIPs:      []workload.NetworkAddress{{Address: netip.MustParseAddr("127.0.0.25")}},
		Ports:     map[uint16]uint16{8080: 0, 9090: 0},
		Endpoints: map[string]*workload.Endpoint{"server": {WorkloadUID: "server", Port: map[uint16]uint16{8080: e.appPort}}}}
	own := &workload.Service{Name: "own", Namespace: "default", Hostname: "own.default.svc.cluster.local",
		VIPs:      []workload.NetworkAddress{{Address: netip.MustParseAddr("127.0.0.26")}},
		Ports:     map[uint16]uint16{80: e.ports.InboundHBONE},
		Endpoints: map[string]*workload.Endpoint{"server": {WorkloadUID: "server"}}}
	e.apply(t, workload.Update{Services: []*workload.Service{e.echoService(nil), named, own}})
	cc, err := e.hboneClient(t, clientID, serverID)
	if err != nil {
		t.Fatal(err)
	}
	echo := func(authority string, header hbone.Header) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := cc.Connect(ctx, &hbone.Request{Method: http.MethodConnect, Authority: authority, Header: header})
		if err != nil {
			return "", err
		}
		defer s.Close()
		s.Write([]byte("hello"))
		s.CloseWrite()
		got, err := io.ReadAll(s)
		return string(got), err
	}
	fromElsewhere := hbone.Header{{Name: "x-forwarded-network", Value: "west"}}
	for _, c := range []struct {
		authority string
		header    hbone.Header
	}{
		{echoHost + ":80", nil},
		{"named.default.svc.cluster.local:8080", nil},
		{echoHost + ":80", fromElsewhere},
	} {
		if got, err := echo(c.authority, c.header); err != nil || got != "hello" {
			t.Errorf("CONNECT %s: echo %q, %v", c.authority, got, err)
		}
	}
	for _, c := range []struct {
		authority string
		status    int
	}{
		{"nowhere.default.svc.cluster.local:80", http.StatusServiceUnavailable},
		{echoHost + ":81", http.StatusServiceUnavailable},                       // not a port of the service
		{"named.default.svc.cluster.local:9090", http.StatusServiceUnavailable}, // a named port the endpoint does not map
		{"own.default.svc.cluster.local:80", http.StatusServiceUnavailable},     // to the proxy's own port
		{echoHost + ":0", http.StatusBadRequest},
		{echoHost, http.StatusBadRequest},
		{"[fe80::1%eth0]:80", http.StatusBadRequest},
	} {
		if _, err := echo(c.authority, nil); statusOf(err) != c.status {
			t.Errorf("CONNECT %s: %v, want status %d", c.authority, err, c.status)
		}
	}
	if n := e.appConns.Load(); n != 3 {
		t.Errorf("the app saw %d connections, want 3", n)
	}
	waitLog(t, e.access, "connection complete", "dst.service="+echoHost, "src.workload=client", "dst.hbone_addr="+echoHost+":80 ")
	waitLog(t, e.access, "connection complete", "dst.service=named.default.svc.cluster.local", "dst.workload=server")
	waitLog(t, e.access, "no service or workload for hostname: nowhere.default.svc.cluster.local")
	text := e.metricsText(t)
	dst := `destination_service="` + echoHost + `"`
	// From the client's network: the connection on port 80. The one refused on port 81 is not
	// counted: it was refused before it had a destination, as by ztunnel (a "connection failed"
	// line).
	waitLog(t, e.access, "level=WARN", "connection failed", "direction=inbound", "requested service "+echoHost+":81 found, but cannot resolve port")
	if n := promtext.Sum(text, "istio_tcp_connections_opened_total", `reporter="destination"`, dst, `source_workload="client"`); n != 1 {
		t.Errorf("connections opened from the client's own network to %s: %v, want 2:\n%s", echoHost, n, text)
	}
	if n := promtext.Sum(text, "istio_tcp_connections_opened_total", `reporter="destination"`, dst, `source_workload="unknown"`); n != 1 {
		t.Errorf("connections opened from another network to %s: %v, want 1:\n%s", echoHost, n, text)
	}
}

func TestParseAuthority(t *testing.T) {
	for _, c := range []struct {
		in, target, host string
		ok               bool
	}{
		{"10.0.0.1:80", "10.0.0.1:80", "", true},
		{"[::ffff:10.0.0.1]:80", "10.0.0.1:80", "", true},
		{"[2001:db8::1]:8080", "[2001:db8::1]:8080", "", true},
		{"echo.default.svc.cluster.local:80", "invalid AddrPort", "echo.default.svc.cluster.local", true},
		{"echo:65535", "invalid AddrPort", "echo", true},
		{"echo:0", "", "", false},
		{"echo:65536", "", "", false},
		{"echo", "", "", false},
		{":80", "", "", false},
		{"[fe80::1%eth0]:80", "", "", false},
		{"[echo]:80", "", "", false},
		{"10.0.0.1", "", "", false},
	} {
		target, host, ok := parseAuthority(c.in)
		if ok != c.ok || ok && (target.String() != c.target || host != c.host) {
			t.Errorf("parseAuthority(%q) = %v, %q, %v; want %s, %q, %v", c.in, target, host, ok, c.target, c.host, c.ok)
		}
	}
}

// FuzzParseAuthority: an authority is an unmapped ip:port with no host, or a hostname that is
// no address with a port alone, or refused.
func FuzzParseAuthority(f *testing.F) {
	for _, s := range []string{"10.0.0.1:80", "[::ffff:10.0.0.1]:80", "echo.default.svc.cluster.local:80", "[fe80::1%eth0]:80", "echo:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		target, host, ok := parseAuthority(s)
		switch {
		case !ok:
		case host == "":
			if !target.IsValid() || target.Addr().Is4In6() || target.Addr().Zone() != "" {
				t.Fatalf("%q: target %v", s, target)
			}
		default:
			if target.Addr().IsValid() || target.Port() == 0 {
				t.Fatalf("%q: host %q with target %v", s, host, target)
			}
			if _, err := netip.ParseAddr(host); err == nil {
				t.Fatalf("%q: host %q is an address", s, host)
			}
		}
	})
}

// Double HBONE tests: the client side is a proxy on network "east" (eastEnv); the destination
// is the env's proxy, on network "west", whose server workload backs the echo service. Between
// them a test network gateway (an hbone.Server with the gateway's certificate) takes the outer
// tunnel and forwards its bytes, untouched, to where the test says: the west proxy's 15008 or a
// test waypoint.

var (
	gatewayIP = netip.MustParseAddr("127.0.0.30")
	gatewayID = identity.ID{TrustDomain: "cluster.local", Namespace: "istio-system", ServiceAccount: "istio-eastwestgateway"}
)

// testGateway is what a test network gateway saw, and where it forwards.
type testGateway struct {
	addr netip.AddrPort

	mu   sync.Mutex
	fwd  netip.AddrPort // where tunnels go; invalid: refused with 503. Guarded by mu.
	reqs []*hbone.Request
}

func (g *testGateway) forwardTo(a netip.AddrPort) {
	g.mu.Lock()
	g.fwd = a
	g.mu.Unlock()
}

func (g *testGateway) requests() []*hbone.Request {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.reqs)
}

// startGateway serves HBONE on gatewayIP with the gateway's certificate (see serveHBONETLS). It
// forwards from clientIP, which the west proxy knows as a workload of its own network (see
// multiNetwork): only the inner request's x-forwarded-network keeps it from taking the
// client for that workload.
func (e *testEnv) startGateway(t *testing.T) *testGateway {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(gatewayIP, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	g := &testGateway{addr: addrPort(l.Addr())}
	handler := hbone.HandlerFunc(func(s *hbone.Stream, req *hbone.Request) {
		g.mu.Lock()
		g.reqs = append(g.reqs, req)
		fwd := g.fwd
		g.mu.Unlock()
		if !fwd.IsValid() {
			s.Reject(http.StatusServiceUnavailable)
			return
		}
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP.AsSlice()}}
		up, err := d.Dial("tcp", fwd.String())
		if err != nil {
			s.Reject(http.StatusServiceUnavailable)
			return
		}
		defer up.Close()
		if s.Respond(http.StatusOK) != nil {
			return
		}
		done := make(chan struct{})
		go func() {
			io.Copy(up, s)
			up.(*net.TCPConn).CloseWrite()
			close(done)
		}()
		io.Copy(s, up)
		s.CloseWrite()
		<-done
	})
	serveHBONETLS(t, l, e.certs.ServerConfig(gatewayID), func(identity.ID) hbone.Handler { return handler })
	return g
}

// eastEnv is a second proxy, on network "east", sharing west's CA, with its own store and
// access log; its app is west's (it has none of its own).
func eastEnv(t *testing.T, west *testEnv) *testEnv {
	t.Helper()
	e := &testEnv{store: workload.NewStore(), ca: west.ca, certs: west.certs, access: &logBuffer{}, appPort: west.appPort}
	e.proxy = listenOnFreePorts(t, Config{
		Store: e.store, Certs: e.certs, Self: clientID, Network: "east",
		ListenIP: netip.MustParseAddr("127.0.0.1"), SOCKS5: true,
		Socket:    netutil.SocketOptions{NoDelay: true},
		EarlyData: true, Baggage: true, TerminationGrace: 2 * time.Second,
		AccessLog: slog.New(slog.NewTextHandler(e.access, nil)),
	})
	e.ports = e.proxy.cfg.Ports
	t.Cleanup(func() { e.proxy.Drain(context.Background()) })
	return e
}

// multiNetwork sets up west (the env's proxy, now on network "west", its server workload
// labelled) and east (a client proxy) with a gateway in front of west. In east's view, the
// echo service's endpoint is west's server workload, without an address and behind the
// gateway, and the service's subjectAltNames name the server's identity.
func multiNetwork(t *testing.T) (west, east *testEnv, gw *testGateway) {
	t.Helper()
	return multiNetworkOn(t, newEnvConfig(t, func(c *Config) { c.Network = "west" }))
}

// multiNetworkOn is multiNetwork with west made by the caller, on network "west".
func multiNetworkOn(t *testing.T, west *testEnv) (_, east *testEnv, gw *testGateway) {
	t.Helper()
	gw = west.startGateway(t)
	gw.forwardTo(netip.AddrPortFrom(serverIP, west.ports.InboundHBONE))
	server := &workload.Workload{UID: "server", Name: "server", Namespace: "default", ServiceAccount: "server",
		TrustDomain: "cluster.local", WorkloadIPs: []netip.Addr{serverIP}, Protocol: workload.ProtocolHBONE, Capacity: 1,
		Network: "west", ClusterID: "cluster-west", WorkloadName: "echo-v1", CanonicalName: "echo", CanonicalRevision: "v1"}
	svc := onNetwork(west.echoService(nil), "west")
	svc.SubjectAltNames = []string{serverID.String()}
	local := &workload.Workload{UID: "client", Name: "local-client", Namespace: "default", ServiceAccount: "client",
		TrustDomain: "cluster.local", WorkloadIPs: []netip.Addr{clientIP}, Protocol: workload.ProtocolHBONE, Capacity: 1,
		Network: "west"}
	west.apply(t, workload.Update{Workloads: []*workload.Workload{server, local}, Services: []*workload.Service{svc}})

	east = eastEnv(t, west)
	remote := *server
	remote.WorkloadIPs = nil
	remote.NetworkGateway = &workload.GatewayAddress{
		Destination:   workload.GatewayDestination{Address: &workload.NetworkAddress{Network: "west", Address: gw.addr.Addr()}},
		HBONEMTLSPort: gw.addr.Port(),
	}
	gwW := &workload.Workload{UID: "gateway", Name: "istio-eastwestgateway-0", Namespace: "istio-system",
		ServiceAccount: "istio-eastwestgateway", TrustDomain: "cluster.local", Network: "west",
		WorkloadIPs: []netip.Addr{gw.addr.Addr()}, Capacity: 1}
	client := &workload.Workload{UID: "client", Name: "client", Namespace: "default", ServiceAccount: "client",
		TrustDomain: "cluster.local", WorkloadIPs: []netip.Addr{clientIP}, Protocol: workload.ProtocolHBONE, Capacity: 1,
		Network: "east", ClusterID: "cluster-east", WorkloadName: "sleep", CanonicalName: "sleep", CanonicalRevision: "v7"}
	eastSvc := onNetwork(east.echoService(nil), "east")
	eastSvc.SubjectAltNames = []string{serverID.String()}
	east.apply(t, workload.Update{Workloads: []*workload.Workload{&remote, gwW, client}, Services: []*workload.Service{eastSvc}})
	return west, east, gw
}

// onNetwork puts svc's VIPs on network and returns it.
func onNetwork(svc *workload.Service, network string) *workload.Service {
	for i := range svc.VIPs {
		svc.VIPs[i].Network = network
	}
	return svc
}

// TestOutboundDoubleHBONE: a service endpoint on another network is reached through that
// network's gateway, as ztunnel does: the outer CONNECT (to the gateway, as the client's
// identity, checking the gateway's) names the service's hostname and port; inside it, an mTLS
// session with the destination itself and a second CONNECT with the same authority and the
// client's network. The destination's proxy sees the client's own identity and baggage, and
// the client's proxy names the destination by the baggage of its answer.
func TestOutboundDoubleHBONE(t *testing.T) {
	west, east, gw := multiNetwork(t)
	c := east.socksDialFrom(t, clientIP, netip.AddrPortFrom(echoVIP, 80))
	local := c.LocalAddr().String()
	if got := roundTrip(t, c, "hello across networks"); got != "hello across networks" {
		t.Fatalf("echo = %q", got)
	}
	if n := west.appConns.Load(); n != 1 {
		t.Errorf("the app saw %d connections, want 1", n)
	}
	reqs := gw.requests()
	if len(reqs) != 1 {
		t.Fatalf("the gateway saw %d requests, want 1", len(reqs))
	}
	outer := reqs[0]
	wantBaggage := "k8s.cluster.name=cluster-east,k8s.namespace.name=default,k8s.deployment.name=sleep,service.name=sleep,service.version=v7"
	if outer.Authority != echoHost+":80" || outer.Header.Get("x-forwarded-network") != "" ||
		outer.Header.Get("forwarded") != `for="`+local+`";host=`+echoHost || outer.Header.Get("baggage") != wantBaggage {
		t.Errorf("outer request %+v", outer)
	}

	// The destination's side: the client by its certificate and baggage, from network east.
	waitLog(t, west.access, "connection complete", "direction=inbound", "src.identity="+clientID.String(),
		"src.workload=sleep", "src.cluster=cluster-east", "dst.service="+echoHost, "dst.workload=server",
		"dst.hbone_addr="+echoHost+":80 ")
	// The client's side: bytes to the gateway, the destination named by the inner answer.
	waitLog(t, east.access, "connection complete", "direction=outbound", "src.addr="+local, "src.workload=client",
		"src.identity="+clientID.String(), "dst.addr="+gw.addr.String(), "dst.hbone_addr="+echoHost+":80 ", "dst.service="+echoHost,
		"dst.workload=echo-v1", "dst.identity="+serverID.String(), "dst.cluster=cluster-west", "bytes_sent=21", "bytes_recv=21")
	text := east.metricsText(t)
	if n := promtext.Sum(text, "istio_tcp_connections_opened_total", `reporter="source"`, `destination_workload="echo-v1"`,
		`destination_canonical_service="echo"`, `destination_cluster="cluster-west"`, `destination_principal="`+serverID.String()+`"`,
		`destination_service="`+echoHost+`"`, `source_workload="sleep"`); n != 1 {
		t.Errorf("connections opened to the destination behind the gateway: %v, want 1:\n%s", n, text)
	}
	if n := promtext.Sum(text, "istio_tcp_received_bytes_total", `reporter="source"`, `destination_workload="echo-v1"`); n != 21 {
		t.Errorf("bytes counted to the destination behind the gateway: %v, want 21", n)
	}

	// A second connection opens its own inner tunnel over the pooled outer connection.
	if got := roundTrip(t, east.socksDialFrom(t, clientIP, netip.AddrPortFrom(echoVIP, 80)), "again"); got != "again" {
		t.Fatalf("second echo = %q", got)
	}
	if n := len(gw.requests()); n != 2 {
		t.Errorf("the gateway saw %d requests, want 2", n)
	}
	if n := promtext.Sum(east.metricsText(t), "istio_tcp_connections_opened_total", `reporter="source"`, `destination_workload="echo-v1"`); n != 2 {
		t.Errorf("connections opened through the gateway: %v, want 2", n)
	}
}

// TestOutboundDoubleHBONEFailures: what cannot cross to another network is refused with a
// reason: counted against the gateway or the service once it has a route, else only logged
// ("connection failed", as by ztunnel).
func TestOutboundDoubleHBONEFailures(t *testing.T) {
	west, east, gw := multiNetwork(t)
	dial := func() string {
		return roundTrip(t, east.socksDialFrom(t, clientIP, netip.AddrPortFrom(echoVIP, 80)), "x")
	}

	// The gateway refuses the tunnel.
	gw.forwardTo(netip.AddrPort{})
	if got := dial(); got != "" {
		t.Errorf("through a refusing gateway: echo %q", got)
	}
	waitLog(t, east.access, "connection complete", "dst.addr="+gw.addr.String(), `error="http status: 503 Service Unavailable"`, "dst.workload=istio-eastwestgateway-0")

	// The destination does not present an identity the service names.
	gw.forwardTo(netip.AddrPortFrom(serverIP, west.ports.InboundHBONE))
	svc := onNetwork(east.echoService(nil), "east")
	svc.SubjectAltNames = []string{"spiffe://cluster.local/ns/default/sa/someone-else"}
	east.apply(t, workload.Update{Services: []*workload.Service{svc}})
	if got := dial(); got != "" {
		t.Errorf("to the wrong identity: echo %q", got)
	}
	waitLog(t, east.access, "connection complete", `error="tls error: inner tunnel to `+echoHost+":80")
	waitFailed(t, east, "source", "TLS_FAILURE")

	// A service without subjectAltNames: what answers cannot be verified.
	svc.SubjectAltNames = nil
	east.apply(t, workload.Update{Services: []*workload.Service{svc}})
	if got := dial(); got != "" {
		t.Errorf("without subjectAltNames: echo %q", got)
	}
	waitLog(t, east.access, "connection failed", "lists no subjectAltNames")

	// An endpoint without an address and without a gateway is nowhere.
	remote := *east.store.Snapshot().WorkloadByUID("server")
	remote.NetworkGateway = nil
	svc.SubjectAltNames = []string{serverID.String()}
	east.apply(t, workload.Update{Workloads: []*workload.Workload{&remote}, Services: []*workload.Service{svc}})
	if got := dial(); got != "" {
		t.Errorf("without a gateway: echo %q", got)
	}
	waitLog(t, east.access, "connection failed", "no healthy upstream")
	if n := west.appConns.Load(); n != 0 {
		t.Errorf("the app saw %d connections, want none", n)
	}
}

// TestOutboundWaypointOnOtherNetwork: a service whose waypoint is on another network is reached
// through that network's gateway; the inner tunnel ends at the waypoint, which must present an
// identity its service names.
func TestOutboundWaypointOnOtherNetwork(t *testing.T) {
	west, east, gw := multiNetwork(t)
	wp := west.startWaypoint(t, netip.AddrPortFrom(waypointIP, freePort(t)), waypointID)
	gw.forwardTo(wp.addr)
	wpW := waypointWorkload(netip.Addr{})
	wpW.WorkloadIPs, wpW.Network = nil, "west"
	wpW.NetworkGateway = east.store.Snapshot().WorkloadByUID("server").NetworkGateway
	wpSvc := &workload.Service{Name: "waypoint", Namespace: "default", Hostname: waypointHost,
		VIPs:            []workload.NetworkAddress{{Network: "west", Address: netip.MustParseAddr("127.0.0.21")}},
		Ports:           map[uint16]uint16{15008: 15008},
		Endpoints:       map[string]*workload.Endpoint{"waypoint": {WorkloadUID: "waypoint"}},
		SubjectAltNames: []string{waypointID.String()}}
	svc := onNetwork(east.echoService(waypointNamed("default", waypointHost, 15008)), "east")
	svc.SubjectAltNames = []string{serverID.String()}
	east.apply(t, workload.Update{Workloads: []*workload.Workload{wpW}, Services: []*workload.Service{wpSvc, svc}})

	if got := roundTrip(t, east.socksDialFrom(t, clientIP, netip.AddrPortFrom(echoVIP, 80)), "via waypoint"); got != "via waypoint" {
		t.Fatalf("echo = %q", got)
	}
	if reqs := gw.requests(); len(reqs) != 1 || reqs[0].Authority != echoHost+":80" {
		t.Errorf("the gateway saw %+v, want one CONNECT to %s:80", reqs, echoHost)
	}
	if reqs := wp.requests(); len(reqs) != 1 || reqs[0].authority != echoHost+":80" || reqs[0].peer != clientID {
		t.Errorf("the waypoint saw %+v, want the client's CONNECT to %s:80", reqs, echoHost)
	}
	if n := west.appConns.Load(); n != 0 {
		t.Errorf("the app saw %d connections, want none (the waypoint echoes)", n)
	}
	waitLog(t, east.access, "connection complete", "direction=outbound", "dst.addr="+gw.addr.String(), "dst.service="+echoHost)
}
