package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"github.com/ztunnel-go/ztunnel/policy"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	"github.com/ztunnel-go/ztunnel/workload"
)

// TestProxyHeader: the PROXY v2 headers written to application tunnels parse, with a published
// parser, into the addresses and the client identity (ztunnel's TLV 0xD0) they were made from.
func TestProxyHeader(t *testing.T) {
	for _, c := range []struct {
		name     string
		src, dst netip.AddrPort
		id       identity.ID
		wantSrc  string // what the parser gives back
		wantDst  string
	}{
		{"IPv4", netip.MustParseAddrPort("10.0.0.1:41000"), netip.MustParseAddrPort("10.0.0.2:80"), clientID, "10.0.0.1:41000", "10.0.0.2:80"},
		{"IPv6", netip.MustParseAddrPort("[fd00::1]:41000"), netip.MustParseAddrPort("[fd00::2]:8080"), clientID, "[fd00::1]:41000", "[fd00::2]:8080"},
		{"mixed, mapped", netip.MustParseAddrPort("10.0.0.1:41000"), netip.MustParseAddrPort("[fd00::2]:80"), clientID, "10.0.0.1:41000", "[fd00::2]:80"}, // net.IP prints a mapped address as IPv4,
		{"no identity", netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), identity.ID{}, "10.0.0.1:1", "10.0.0.2:2"},
	} {
		b := appendProxyHeader(nil, c.src, c.dst, c.id)
		r := bufio.NewReader(io.MultiReader(strings.NewReader(string(b)), strings.NewReader("app bytes")))
		h, err := proxyproto.Read(r)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		src, dst, ok := h.TCPAddrs()
		fam := proxyproto.TCPv6
		if c.src.Addr().Is4() && c.dst.Addr().Is4() {
			fam = proxyproto.TCPv4
		}
		if h.TransportProtocol != fam {
			t.Errorf("%s: transport %v, want %v", c.name, h.TransportProtocol, fam)
		}
		if !ok || h.Version != 2 || h.Command != proxyproto.PROXY || src.String() != c.wantSrc || dst.String() != c.wantDst {
			t.Errorf("%s: version %d command %v, %v -> %v (tcp %v); want %s -> %s", c.name, h.Version, h.Command, src, dst, ok, c.wantSrc, c.wantDst)
		}
		tlvs, err := h.TLVs()
		if err != nil {
			t.Fatalf("%s: TLVs: %v", c.name, err)
		}
		var got string
		for _, tlv := range tlvs {
			if tlv.Type == 0xd0 {
				got = string(tlv.Value)
			}
		}
		want := ""
		if !c.id.IsZero() {
			want = c.id.String()
		}
		if got != want || (want == "" && len(tlvs) != 0) {
			t.Errorf("%s: TLVs %v, identity %q; want %q", c.name, tlvs, got, want)
		}
		if rest, _ := io.ReadAll(r); string(rest) != "app bytes" {
			t.Errorf("%s: after the header: %q", c.name, rest)
		}
	}
}

// TestAppTunnelTarget: where an inbound connection goes for each kind of workload.
func TestAppTunnelTarget(t *testing.T) {
	podIP, pod6 := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2")
	vip := netip.MustParseAddr("10.96.0.9")
	svc := &workload.Service{Hostname: "echo.default.svc.cluster.local", VIPs: []workload.NetworkAddress{
		{Network: "other", Address: netip.MustParseAddr("10.200.0.1")},
		{Address: netip.MustParseAddr("fd00:96::9")},
		{Address: vip},
	}}
	proxyTo := func(port uint16) *workload.ApplicationTunnel {
		return &workload.ApplicationTunnel{Protocol: workload.TunnelProxy, Port: port}
	}
	for _, c := range []struct {
		name      string
		tunnel    *workload.ApplicationTunnel
		localhost bool
		target    netip.AddrPort // the workload's address and port
		authority netip.AddrPort // invalid address: a hostname
		svc       *workload.Service
		want      inboundTunnel
		err       bool
	}{
		{name: "no tunnel", target: netip.AddrPortFrom(podIP, 80), authority: netip.AddrPortFrom(podIP, 80),
			want: inboundTunnel{dial: netip.AddrPortFrom(podIP, 80)}},
		{name: "NONE on its own port", tunnel: &workload.ApplicationTunnel{Port: 15088}, localhost: true,
			target: netip.AddrPortFrom(podIP, 80), authority: netip.AddrPortFrom(vip, 80),
			want: inboundTunnel{dial: netip.AddrPortFrom(podIP, 15088)}},
		{name: "PROXY, localhost", tunnel: proxyTo(15088), localhost: true,
			target: netip.AddrPortFrom(podIP, 80), authority: netip.AddrPortFrom(vip, 80),
			want: inboundTunnel{dial: netip.MustParseAddrPort("127.0.0.1:15088"), localhost: true, proxy: netip.AddrPortFrom(vip, 80)}},
		{name: "PROXY, localhost, IPv6", tunnel: proxyTo(15088), localhost: true,
			target: netip.AddrPortFrom(pod6, 80), authority: netip.AddrPortFrom(pod6, 80),
			want: inboundTunnel{dial: netip.MustParseAddrPort("[::1]:15088"), localhost: true, proxy: netip.AddrPortFrom(pod6, 80)}},
		{name: "PROXY, not localhost, port asked for", tunnel: proxyTo(0),
			target: netip.AddrPortFrom(podIP, 80), authority: netip.AddrPortFrom(podIP, 80),
			want: inboundTunnel{dial: netip.AddrPortFrom(podIP, 80), proxy: netip.AddrPortFrom(podIP, 80)}},
		{name: "PROXY, hostname: the service's IPv4 VIP on this network", tunnel: proxyTo(15088), svc: svc,
			target: netip.AddrPortFrom(podIP, 8080), authority: netip.AddrPortFrom(netip.Addr{}, 80),
			want: inboundTunnel{dial: netip.AddrPortFrom(podIP, 15088), proxy: netip.AddrPortFrom(vip, 80)}},
		{name: "PROXY, hostname, service without VIPs", tunnel: proxyTo(15088), svc: &workload.Service{Hostname: "x"},
			target: netip.AddrPortFrom(podIP, 8080), authority: netip.AddrPortFrom(netip.Addr{}, 80), err: true},
	} {
		p := &Proxy{cfg: Config{LocalhostAppTunnel: c.localhost}}
		w := &workload.Workload{Name: "w", ApplicationTunnel: c.tunnel}
		got, err := p.appTunnel(w, c.svc, c.target, c.authority)
		if (err != nil) != c.err || (err == nil && got != c.want) {
			t.Errorf("%s: %+v, %v; want %+v (error %v)", c.name, got, err, c.want, c.err)
		}
	}
}

// proxiedApp is an app behind an application tunnel: it reads each connection's PROXY header,
// keeps the last, and echoes what follows.
type proxiedApp struct {
	port uint16
	last atomic.Pointer[proxyproto.Header]
}

func startProxiedApp(t *testing.T) *proxiedApp {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	a := &proxiedApp{port: uint16(l.Addr().(*net.TCPAddr).Port)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				h, err := proxyproto.Read(r)
				if err != nil {
					return // no header: no echo, the client sees the connection end
				}
				a.last.Store(h)
				io.Copy(c, r)
			}()
		}
	}()
	return a
}

// tunnelEcho opens a CONNECT to authority over cc and echoes msg through it.
func tunnelEcho(t *testing.T, e *testEnv, authority, msg string) (string, error) {
	t.Helper()
	cc, err := e.hboneClient(t, clientID, serverID)
	if err != nil {
		t.Fatal(err)
	}
	s, err := connect(cc, authority)
	if err != nil {
		return "", err
	}
	s.SetDeadline(time.Now().Add(5 * time.Second))
	s.Write([]byte(msg))
	s.CloseWrite()
	got, err := io.ReadAll(s)
	return string(got), err
}

// TestInboundApplicationTunnel: a workload whose application tunnel speaks PROXY gets its
// connections on the tunnel's port, each behind a PROXY header naming the client's address, the
// address the client asked for (another address than the workload's is allowed then) and the
// client's identity.
func TestInboundApplicationTunnel(t *testing.T) {
	e := newEnvConfig(t, func(c *Config) { c.LocalhostAppTunnel = true })
	app := startProxiedApp(t)
	server := *e.store.Snapshot().WorkloadByUID("server")
	server.ApplicationTunnel = &workload.ApplicationTunnel{Protocol: workload.TunnelProxy, Port: app.port}
	e.apply(t, workload.Update{Workloads: []*workload.Workload{&server}})

	for _, authority := range []string{netip.AddrPortFrom(serverIP, 80).String(), "127.0.0.99:8080"} {
		got, err := tunnelEcho(t, e, authority, "through the tunnel")
		if err != nil || got != "through the tunnel" {
			t.Fatalf("CONNECT %s: echo %q, %v", authority, got, err)
		}
		h := app.last.Load()
		src, dst, _ := h.TCPAddrs()
		tlvs, _ := h.TLVs()
		if src == nil || src.IP.String() != clientIP.String() || dst == nil || dst.String() != authority ||
			len(tlvs) != 1 || tlvs[0].Type != 0xd0 || string(tlvs[0].Value) != clientID.String() {
			t.Errorf("CONNECT %s: PROXY header %v -> %v, TLVs %v", authority, src, dst, tlvs)
		}
	}
	// The record names the authority the client asked for, as ztunnel's.
	for _, authority := range []string{netip.AddrPortFrom(serverIP, 80).String(), "127.0.0.99:8080"} {
		waitLog(t, e.access, "connection complete", "direction=inbound", "dst.hbone_addr="+authority+" ")
	}
}

// TestInboundLocalhostTunnelPolicy: a connection sent to a localhost application tunnel is
// judged, as ztunnel judges it, by the workload's address (not the loopback address dialed), on
// the tunnel's port (not the authority's).
func TestInboundLocalhostTunnelPolicy(t *testing.T) {
	podIP := netip.MustParseAddr("127.0.0.5") // not the loopback address the tunnel is dialed on
	app := startProxiedApp(t)
	allow := &policy.Authorization{Name: "to-the-pod-tunnel", Namespace: "default", Scope: policy.ScopeNamespace, Action: policy.ActionAllow,
		Rules: [][][]policy.Match{{{{DestinationIPs: []netip.Prefix{netip.PrefixFrom(podIP, 32)}, DestinationPorts: []uint16{app.port}}}}}}
	e := newEnvConfig(t, func(c *Config) { c.ListenIP, c.LocalhostAppTunnel = podIP, true }, allow)
	server := *e.store.Snapshot().WorkloadByUID("server")
	server.WorkloadIPs = []netip.Addr{podIP}
	server.ApplicationTunnel = &workload.ApplicationTunnel{Protocol: workload.TunnelProxy, Port: app.port}
	e.apply(t, workload.Update{Workloads: []*workload.Workload{&server}})

	cc, err := e.hboneClientAt(t, podIP, clientID, serverID)
	if err != nil {
		t.Fatal(err)
	}
	authority := netip.AddrPortFrom(podIP, 80).String()
	s, err := connect(cc, authority)
	if err != nil {
		t.Fatalf("CONNECT %s: %v", authority, err)
	}
	s.SetDeadline(time.Now().Add(5 * time.Second))
	s.Write([]byte("allowed"))
	s.CloseWrite()
	if got, err := io.ReadAll(s); string(got) != "allowed" {
		t.Fatalf("echo %q, %v", got, err)
	}
	waitLog(t, e.access, "connection complete", "direction=inbound", "dst.addr="+netip.AddrPortFrom(podIP, e.ports.InboundHBONE).String()+" ",
		"dst.hbone_addr="+authority+" ")
}

// TestInboundSandwichedWaypoint: a CONNECT to another address than the workload's is allowed
// when the workload is the waypoint of what is at that address (a workload, or a service's VIP;
// the waypoint named by address, or by hostname as a service the workload backs), and then goes
// to the workload on the port asked for; any other address is refused with 400.
func TestInboundSandwichedWaypoint(t *testing.T) {
	var demanded atomic.Int32
	var e *testEnv
	e = newEnvConfig(t, func(c *Config) {
		c.OnDemand = func(ctx context.Context, network string, ip netip.Addr) error {
			demanded.Add(1)
			if ip == netip.MustParseAddr("127.0.0.22") { // istiod knew it: a workload behind us
				e.apply(t, workload.Update{Workloads: []*workload.Workload{{UID: "late", Name: "late", Namespace: "default",
					WorkloadIPs: []netip.Addr{ip}, Capacity: 1, Waypoint: &workload.GatewayAddress{
						Destination: workload.GatewayDestination{Address: &workload.NetworkAddress{Address: serverIP}}, HBONEMTLSPort: 15008}}}})
			}
			return nil
		}
	})
	byAddr := &workload.GatewayAddress{Destination: workload.GatewayDestination{Address: &workload.NetworkAddress{Address: serverIP}}, HBONEMTLSPort: 15008}
	wpHost := workload.NamespacedHostname{Namespace: "default", Hostname: "wp.default.svc.cluster.local"}
	byHost := &workload.GatewayAddress{Destination: workload.GatewayDestination{Hostname: &wpHost}, HBONEMTLSPort: 15008}
	wpSvc := &workload.Service{Name: "wp", Namespace: "default", Hostname: wpHost.Hostname,
		VIPs: []workload.NetworkAddress{{Address: netip.MustParseAddr("127.0.0.40")}}, Ports: map[uint16]uint16{15008: 15008},
		Endpoints: map[string]*workload.Endpoint{"server": {WorkloadUID: "server"}}}
	byService := e.echoService(byAddr) // echoVIP
	other := e.echoService(nil)
	other.Name, other.Hostname, other.VIPs = "other", "other.default.svc.cluster.local", []workload.NetworkAddress{{Address: netip.MustParseAddr("127.0.0.21")}}
	otherWP := waypointWorkload(netip.MustParseAddr("127.0.0.41"))
	behindHost := &workload.Workload{UID: "behind", Name: "behind", Namespace: "default", WorkloadIPs: []netip.Addr{netip.MustParseAddr("127.0.0.23")},
		Capacity: 1, Waypoint: byHost}
	behindOther := &workload.Workload{UID: "elsewhere", Name: "elsewhere", Namespace: "default", WorkloadIPs: []netip.Addr{netip.MustParseAddr("127.0.0.24")},
		Capacity: 1, Waypoint: &workload.GatewayAddress{Destination: workload.GatewayDestination{Address: &workload.NetworkAddress{Address: otherWP.WorkloadIPs[0]}}, HBONEMTLSPort: 15008}}
	e.apply(t, workload.Update{Workloads: []*workload.Workload{behindHost, behindOther, otherWP}, Services: []*workload.Service{byService, other, wpSvc}})

	port := strings.TrimPrefix(netip.AddrPortFrom(serverIP, e.appPort).String(), serverIP.String())
	for _, c := range []struct {
		name, ip string
		ok       bool
	}{
		{"a service whose waypoint is the workload, by address", echoVIP.String(), true},
		{"a workload whose waypoint is a service the workload backs, by hostname", "127.0.0.23", true},
		{"a workload istiod tells of on demand", "127.0.0.22", true},
		{"a service without a waypoint", "127.0.0.21", false},
		{"a workload with another waypoint", "127.0.0.24", false},
		{"nothing known", "127.0.0.99", false},
	} {
		got, err := tunnelEcho(t, e, c.ip+port, "sandwich")
		switch {
		case c.ok && (err != nil || got != "sandwich"):
			t.Errorf("%s: echo %q, %v", c.name, got, err)
		case !c.ok && statusOf(err) != 400:
			t.Errorf("%s: %q, %v; want 400", c.name, got, err)
		}
	}
	// Logged with the authority the client asked for, as ztunnel logs it.
	waitLog(t, e.access, "connection complete", "direction=inbound", "dst.hbone_addr="+echoVIP.String()+port+" ", "dst.workload=server")
	if n := demanded.Load(); n != 2 { // 127.0.0.22, and 127.0.0.99 (still unknown)
		t.Errorf("%d on-demand lookups, want 2", n)
	}
}

// TestInboundServiceGuess: the destination side reports a connection against the service the
// client named in its forwarded header, when the workload backs it, else against the first of
// the workload's services with a port that targets the port connected to, else none.
func TestInboundServiceGuess(t *testing.T) {
	e := newEnv(t)
	server := *e.store.Snapshot().WorkloadByUID("server")
	other := e.echoService(nil)
	other.Name, other.Hostname = "other", "other.default.svc.cluster.local"
	other.VIPs = []workload.NetworkAddress{{Address: netip.MustParseAddr("127.0.0.21")}}
	other.Ports = map[uint16]uint16{81: 9} // targets another port
	unrelated := e.echoService(nil)
	unrelated.Name, unrelated.Hostname = "unrelated", "unrelated.default.svc.cluster.local"
	unrelated.VIPs = []workload.NetworkAddress{{Address: netip.MustParseAddr("127.0.0.22")}}
	unrelated.Endpoints = nil
	server.Services = []workload.NamespacedHostname{{Namespace: "default", Hostname: other.Hostname}, {Namespace: "default", Hostname: echoHost}}
	e.apply(t, workload.Update{Workloads: []*workload.Workload{&server}, Services: []*workload.Service{e.echoService(nil), other, unrelated}})

	cc, err := e.hboneClient(t, clientID, serverID)
	if err != nil {
		t.Fatal(err)
	}
	to := netip.AddrPortFrom(serverIP, e.appPort).String()
	for i, c := range []struct {
		forwarded, want string
	}{
		{"", echoHost}, // the port: echo's 80 targets the app's port, other's does not
		{`for="127.0.0.3:1234";host=` + other.Hostname, other.Hostname},
		{`for="127.0.0.3:1234"; host="` + echoHost + `"`, echoHost},
		{"host=" + unrelated.Hostname, echoHost}, // not the workload's: the port decides
	} {
		req := &hbone.Request{Method: http.MethodConnect, Authority: to}
		if c.forwarded != "" {
			req.Header = hbone.Header{{Name: "forwarded", Value: c.forwarded}}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := cc.Connect(ctx, req)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		msg := strings.Repeat("x", i+1) // its length tells its log line
		s.Write([]byte(msg))
		s.CloseWrite()
		io.ReadAll(s)
		waitLog(t, e.access, "connection complete", "direction=inbound", "bytes_recv="+strconv.Itoa(len(msg))+" ", "dst.service="+c.want+" ")
	}
	if n := promtext.Sum(e.metricsText(t), "istio_tcp_connections_opened_total", `reporter="destination"`, `destination_service="`+echoHost+`"`); n != 3 {
		t.Errorf("inbound connections reported against %s: %v, want 3", echoHost, n)
	}
	if got := forwardedHost("for=x;host=caf\u00e9"); got != "" {
		t.Errorf("a non-ASCII forwarded header gave %q", got)
	}
}
