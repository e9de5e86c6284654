package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/policy"
	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// dialFrom opens a plain TCP connection from clientIP to the proxy's port.
func dialFrom(t *testing.T, port uint16) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP.AsSlice()}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", netip.AddrPortFrom(serverIP, port).String())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// closedWithin reports whether the peer closed c (EOF or reset) within d, and how many bytes
// arrived before.
func closedWithin(c net.Conn, d time.Duration) (bool, int) {
	c.SetReadDeadline(time.Now().Add(d))
	n, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, int(n)
	}
	return true, int(n)
}

// echoOver opens a stream to the app through the proxy's 15008 and echoes msg.
func (e *testEnv) echoOver(t *testing.T, msg string) {
	t.Helper()
	cc, err := e.hboneClient(t, clientID, serverID)
	if err != nil {
		t.Fatalf("HBONE handshake: %v", err)
	}
	defer cc.Close()
	s, err := connect(cc, netip.AddrPortFrom(serverIP, e.appPort).String())
	if err != nil {
		t.Fatalf("CONNECT: %v", err)
	}
	s.Write([]byte(msg))
	s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != msg {
		t.Fatalf("echo = %q, %v; want %q", got, err, msg)
	}
}

// TestSlowlorisHandshakeTimeout opens 200 connections to 15008 that never finish the TLS
// handshake (half of them send a partial ClientHello record header, half nothing): the handshake
// timeout closes every one of them, and a real client is served while they hang.
func TestSlowlorisHandshakeTimeout(t *testing.T) {
	const timeout = 500 * time.Millisecond
	e := newEnvConfig(t, func(c *Config) { c.HandshakeTimeout = timeout })
	const n = 200
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = dialFrom(t, e.ports.InboundHBONE)
		defer conns[i].Close()
		if i%2 == 1 {
			// A TLS handshake record header announcing 512 bytes that never come.
			conns[i].Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
		}
	}
	// Meanwhile a real client is served.
	e.echoOver(t, "served during the flood")

	start := time.Now()
	for i, c := range conns {
		ok, got := closedWithin(c, timeout+5*time.Second-time.Since(start))
		if !ok {
			t.Fatalf("silent connection %d still open %v after the flood (handshake timeout %v)", i, time.Since(start), timeout)
		}
		if got != 0 {
			t.Errorf("silent connection %d received %d bytes", i, got)
		}
	}
	// Every socket is released: none is counted open on the destination side.
	deadline := time.Now().Add(5 * time.Second)
	for {
		body := e.metricsText(t)
		if promtext.Sum(body, "istio_tcp_sockets_open", `reporter="destination"`) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sockets still open after the flood:\n%s", body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("200 silent connections closed %v after the flood began (timeout %v)", time.Since(start).Round(time.Millisecond), timeout)
}

// TestConnLimitSharedAcrossProxies runs two proxies that share one ConnLimit of 3, as the pod
// proxies of shared mode do: connections to either count against it, a fourth is reset (and
// logged once however often it is retried), and a slot freed on one proxy serves the other.
func TestConnLimitSharedAcrossProxies(t *testing.T) {
	limit := NewConnLimit(3)
	logs := &logBuffer{}
	mod := func(c *Config) {
		c.Limit = limit
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	e1 := newEnvConfig(t, mod)
	e2 := newEnvConfig(t, mod)

	// Three connections that never handshake hold every slot (the handshake timeout is 15 s).
	held := []net.Conn{dialFrom(t, e1.ports.InboundHBONE), dialFrom(t, e1.ports.InboundHBONE), dialFrom(t, e2.ports.InboundHBONE)}
	for _, c := range held {
		defer c.Close()
	}
	testwait.Until(t, "3 slots taken", 5*time.Second, func() bool { return limit.Open() == 3 })

	// The next connections, on either proxy, are refused before any byte moves.
	for i := range 5 {
		if err := e2.tryHBONE(t); err == nil {
			t.Fatalf("attempt %d: a connection beyond the limit was served", i)
		}
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP.AsSlice()}}
	if c, err := d.Dial("tcp", netip.AddrPortFrom(serverIP, e1.ports.Outbound).String()); err == nil {
		if ok, _ := closedWithin(c, 5*time.Second); !ok {
			t.Fatal("an outbound connection beyond the limit was not closed")
		}
		c.Close()
	}
	if got := limit.Refused(); got != 6 {
		t.Errorf("Refused() = %d, want 6", got)
	}
	if got := strings.Count(logs.String(), "connection limit reached"); got != 1 {
		t.Errorf("%d refusal log lines for 6 refusals, want 1 (rate-limited):\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), "limit=3") {
		t.Errorf("the refusal log does not name the limit:\n%s", logs.String())
	}

	// Freeing a slot on proxy 1 lets proxy 2 serve again.
	held[0].Close()
	testwait.Until(t, "a slot freed", 5*time.Second, func() bool { return limit.Open() == 2 })
	e2.echoOver(t, "after a slot was freed")
	if n := e1.appConns.Load() + e2.appConns.Load(); n != 1 {
		t.Errorf("the apps saw %d connections, want only the one served after the slot was freed", n)
	}
}

// TestFDHeadroomRefuses: an accepted connection whose descriptor number is at or above the
// guard's ceiling is reset before any byte moves, on every listener, and logged once however
// often it is retried; with the ceiling clear the same clients are served. The ceiling New sets
// is the soft RLIMIT_NOFILE less fdHeadroom.
func TestFDHeadroomRefuses(t *testing.T) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		t.Fatal(err)
	}
	if g := newFDGuard(); g.limit != int64(r.Cur) || g.ceiling.Load() != int64(r.Cur)-fdHeadroom {
		t.Fatalf("newFDGuard: limit %d, ceiling %d; want %d and %d", g.limit, g.ceiling.Load(), r.Cur, int64(r.Cur)-fdHeadroom)
	}

	logs := &logBuffer{}
	e := newEnvConfig(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	e.proxy.fds.ceiling.Store(1) // every socket's number is at least 1: as if none were free
	for i := range 3 {
		if err := e.tryHBONE(t); err == nil {
			t.Fatalf("attempt %d: a connection past the ceiling was served", i)
		}
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP.AsSlice()}}
	if c, err := d.Dial("tcp", netip.AddrPortFrom(serverIP, e.ports.Outbound).String()); err == nil {
		if ok, n := closedWithin(c, 5*time.Second); !ok || n != 0 {
			t.Fatalf("an outbound connection past the ceiling: closed %v after %d bytes", ok, n)
		}
		c.Close()
	}
	if got := e.proxy.fds.refused.Load(); got != 4 {
		t.Errorf("refused %d connections, want 4", got)
	}
	if got := strings.Count(logs.String(), "file descriptors nearly exhausted"); got != 1 {
		t.Errorf("%d refusal log lines for 4 refusals, want 1 (rate-limited):\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), "headroom=16") {
		t.Errorf("the refusal log does not name the headroom:\n%s", logs.String())
	}
	if n := e.appConns.Load(); n != 0 {
		t.Errorf("the app saw %d connections while every one was refused", n)
	}

	e.proxy.fds.ceiling.Store(0)
	e.echoOver(t, "served with the ceiling clear")
}

// TestConnLimitNilIsUnlimited checks the zero configuration.
func TestConnLimitNilIsUnlimited(t *testing.T) {
	if l := NewConnLimit(0); l != nil {
		t.Fatalf("NewConnLimit(0) = %v, want nil (unlimited)", l)
	}
	var l *ConnLimit
	for range 1000 {
		if !l.acquire() {
			t.Fatal("a nil limit refused")
		}
	}
	if l.Open() != 0 || l.Refused() != 0 || l.Max() != 0 {
		t.Fatal("a nil limit counts")
	}
}

// tryHBONE dials the proxy's 15008, handshakes and echoes one CONNECT; any failure is returned.
func (e *testEnv) tryHBONE(t *testing.T) error {
	cfg, err := e.certs.ClientConfig(context.Background(), clientID, []identity.ID{serverID})
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP.AsSlice()}, Timeout: 5 * time.Second}
	raw, err := d.Dial("tcp", netip.AddrPortFrom(serverIP, e.ports.InboundHBONE).String())
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		return err
	}
	cc, err := hbone.NewClientConn(tc, hbone.Config{})
	if err != nil {
		return err
	}
	defer cc.Close()
	s, err := connect(cc, netip.AddrPortFrom(serverIP, e.appPort).String())
	if err != nil {
		return err
	}
	s.Close()
	return nil
}

// TestSpoofedHeadersDoNotChangePolicyInputs sends CONNECTs whose forwarded and baggage headers
// lie about the source: policy sees the connection's real source IP (127.0.0.3) and the
// certificate's identity, never what the headers claim.
func TestSpoofedHeadersDoNotChangePolicyInputs(t *testing.T) {
	pfx := func(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }
	allow := func(name string, m policy.Match) *policy.Authorization {
		return &policy.Authorization{Name: name, Namespace: "default", Scope: policy.ScopeNamespace, Action: policy.ActionAllow,
			Rules: [][][]policy.Match{{{m}}}}
	}
	deny := func(name string, m policy.Match) *policy.Authorization {
		return &policy.Authorization{Name: name, Namespace: "default", Scope: policy.ScopeNamespace, Action: policy.ActionDeny,
			Rules: [][][]policy.Match{{{m}}}}
	}
	const (
		lyingForwarded = `for="127.0.0.9:4000";proto=https`
		lyingBaggage   = "k8s.namespace.name=kube-system,k8s.deployment.name=admin,service.name=admin,k8s.cluster.name=other"
	)
	cases := []struct {
		name   string
		policy *policy.Authorization
		header hbone.Header
		want   int
	}{
		{"control: allow the real source IP", allow("real-ip", policy.Match{SourceIPs: pfx("127.0.0.3/32")}),
			hbone.Header{{Name: "forwarded", Value: lyingForwarded}}, http.StatusOK},
		{"allow only the IP forwarded claims", allow("claimed-ip", policy.Match{SourceIPs: pfx("127.0.0.9/32")}),
			hbone.Header{{Name: "forwarded", Value: lyingForwarded}, {Name: "x-forwarded-for", Value: "127.0.0.9"}}, http.StatusUnauthorized},
		{"deny the real IP, forwarded claims another", deny("real-ip", policy.Match{SourceIPs: pfx("127.0.0.3/32")}),
			hbone.Header{{Name: "forwarded", Value: lyingForwarded}}, http.StatusUnauthorized},
		{"allow only the namespace baggage claims", allow("claimed-ns", policy.Match{Namespaces: []policy.StringMatch{policy.Exact("kube-system")}}),
			hbone.Header{{Name: "baggage", Value: lyingBaggage}, {Name: "forwarded", Value: lyingForwarded}}, http.StatusUnauthorized},
		{"allow only the principal baggage claims", allow("claimed-principal", policy.Match{Principals: []policy.StringMatch{policy.Exact("cluster.local/ns/kube-system/sa/admin")}}),
			hbone.Header{{Name: "baggage", Value: lyingBaggage}}, http.StatusUnauthorized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, c.policy)
			cc, err := e.hboneClient(t, clientID, serverID)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := cc.Connect(ctx, &hbone.Request{Method: http.MethodConnect,
				Authority: netip.AddrPortFrom(serverIP, e.appPort).String(), Header: c.header})
			got := http.StatusOK
			if err != nil {
				got = statusOf(err)
			} else {
				s.Close()
			}
			if got != c.want {
				t.Fatalf("status = %d (%v), want %d", got, err, c.want)
			}
			// The access log names the real source, never the claimed one.
			waitLog(t, e.access, "connection complete", "src.addr=127.0.0.3:", "src.identity="+clientID.String())
			if strings.Contains(e.access.String(), "127.0.0.9") || strings.Contains(e.access.String(), "kube-system") {
				t.Errorf("the access log repeats a spoofed header:\n%s", e.access.String())
			}
		})
	}
}

// TestOwnPortsRefused: a CONNECT to any of the proxy's own capture ports is refused with 503
// before anything is dialed (ztunnel's SelfCall), and a pod connecting straight to its own
// 15001/15006 (no redirection, so the original destination is the listener itself) is closed
// without a loop. The app never sees a connection.
func TestOwnPortsRefused(t *testing.T) {
	e := newEnv(t)
	cc, err := e.hboneClient(t, clientID, serverID)
	if err != nil {
		t.Fatal(err)
	}
	for _, port := range []uint16{e.ports.InboundHBONE, e.ports.InboundPlain, e.ports.Outbound, e.ports.SOCKS5, InboundHBONEPort, OutboundPort} {
		_, err := connect(cc, netip.AddrPortFrom(serverIP, port).String())
		if got := statusOf(err); got != http.StatusServiceUnavailable {
			t.Errorf("CONNECT to own port %d: status %d (%v), want 503", port, got, err)
		}
	}
	for _, port := range []uint16{e.ports.Outbound, e.ports.InboundPlain} {
		c := dialFrom(t, port)
		c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		ok, n := closedWithin(c, 5*time.Second)
		c.Close()
		if !ok || n != 0 {
			t.Errorf("direct connection to own port %d: closed %v after %d bytes, want closed with none", port, ok, n)
		}
	}
	if n := e.appConns.Load(); n != 0 {
		t.Errorf("the app saw %d connections, want none", n)
	}
	// Nothing is left behind by the refusals.
	testwait.Until(t, "no live connection", 5*time.Second, func() bool {
		return promtext.Sum(e.metricsText(t), "istio_tcp_sockets_open") <= 1 // the HBONE client's connection
	})
}

// TestDrainLeavesNoGoroutines moves traffic through every listener of a proxy (HBONE, the
// outbound path through the pool, SOCKS5, slowloris sockets, a refused own-port call), leaves
// connections open, then drains: the goroutine count returns to what it was before Listen.
func TestDrainLeavesNoGoroutines(t *testing.T) {
	e := newEnv(t)
	// Certificates first: their refresh goroutines belong to the manager, not the proxy.
	for _, id := range []identity.ID{serverID, clientID} {
		if _, err := e.certs.Get(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	// A second proxy on fresh ports, measured from before its Listen; the helpers use it.
	// New starts no goroutine, and a Listen that fails starts none either, so the baseline may
	// be taken before the proxy is built.
	cfg := e.proxy.cfg
	cfg.HandshakeTimeout = 200 * time.Millisecond
	cfg.TerminationGrace = 500 * time.Millisecond
	base := leakcheck.Baseline()
	p := listenOnFreePorts(t, cfg)
	orig, origPorts := e.proxy, e.ports
	defer func() { e.proxy, e.ports = orig, origPorts }()
	e.proxy, e.ports = p, p.cfg.Ports
	e.echoOver(t, "one")
	c := e.socksDial(t, netip.AddrPortFrom(serverIP, e.appPort))
	c.Write([]byte("two"))
	if _, err := io.ReadFull(c, make([]byte, 3)); err != nil {
		t.Fatalf("socks round trip: %v", err)
	}
	c.Close()
	silent := dialFrom(t, e.ports.InboundHBONE)
	defer silent.Close()
	own := dialFrom(t, e.ports.InboundPlain)
	defer own.Close()
	open := e.socksDial(t, netip.AddrPortFrom(serverIP, e.appPort)) // still open when Drain starts
	defer open.Close()
	cc, err := e.hboneClient(t, clientID, serverID) // an idle HBONE connection: GOAWAY ends it
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	if err := p.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ok, _ := closedWithin(open, 5*time.Second); !ok {
		t.Fatal("Drain returned with a connection still open")
	}
	cc.Close()
	leakcheck.Wait(t, base)
}
