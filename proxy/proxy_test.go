package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/internal/syncbuf"
	"github.com/ztunnel-go/ztunnel/netutil"
	"github.com/ztunnel-go/ztunnel/policy"
	"github.com/ztunnel-go/ztunnel/tls/certs"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	"github.com/ztunnel-go/ztunnel/workload"
)

// These tests run whole proxies in-process on loopback with real TLS and real HBONE; no root.
// The server workload lives at 127.0.0.1 (where the proxy's inbound listener is), the client
// workload at 127.0.0.3 (the source address the client binds).

var (
	serverIP = netip.MustParseAddr("127.0.0.1")
	clientIP = netip.MustParseAddr("127.0.0.3")
	serverID = identity.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "server"}
	clientID = identity.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "client"}
)

// logBuffer collects log lines for assertions.
type logBuffer = syncbuf.Buffer

type testEnv struct {
	store    *workload.Store
	ca       *certs.LocalCA
	certs    *certs.Manager
	proxy    *Proxy
	access   *logBuffer // the access log
	log      *logBuffer // the proxy's own log
	app      net.Listener
	appPort  uint16
	appConns atomic.Int64 // connections the app accepted
	appBytes atomic.Int64 // bytes the app received
	ports    Ports
}

func freePort(t testing.TB) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// listenOnFreePorts builds a proxy from cfg on four free loopback ports and binds them. A port
// found free can be taken before the proxy binds it (by another test's listener or an outgoing
// connection's ephemeral port, in this process or another package's), so a bind that finds its
// port in use is retried on new ports; any other error fails the test.
//
// The ports of a failed attempt are not tried again: the kernel may offer the same port for a
// throwaway listener (SO_REUSEADDR) while a socket that rules out the proxy's bind holds it.
func listenOnFreePorts(t testing.TB, cfg Config) *Proxy {
	t.Helper()
	const attempts = 10
	tried := make(map[uint16]bool)
	fresh := func() uint16 {
		for {
			if p := freePort(t); !tried[p] {
				tried[p] = true
				return p
			}
		}
	}
	for i := 1; ; i++ {
		cfg.Ports = Ports{Outbound: fresh(), InboundPlain: fresh(), InboundHBONE: fresh(), SOCKS5: fresh()}
		cfg.Ports.RemoteHBONE = cfg.Ports.InboundHBONE
		p, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = p.Listen(context.Background())
		if err == nil {
			return p
		}
		if !errors.Is(err, syscall.EADDRINUSE) || i == attempts {
			t.Fatal(err)
		}
		t.Logf("retrying on new ports: %v", err)
	}
}

// newEnv starts a proxy for the server workload with an echo app on 127.0.0.1.
func newEnv(t testing.TB, pols ...*policy.Authorization) *testEnv {
	t.Helper()
	return newEnvConfig(t, nil, pols...)
}

// newEnvConfig is newEnv with mod applied to the proxy's Config before New (nil: none).
func newEnvConfig(t testing.TB, mod func(*Config), pols ...*policy.Authorization) *testEnv {
	t.Helper()
	e := &testEnv{store: workload.NewStore(), access: &logBuffer{}, log: &logBuffer{}}
	var err error
	e.ca, err = certs.NewFakeCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	e.certs = certs.NewManager(e.ca, certs.ManagerOptions{})
	t.Cleanup(func() { e.certs.Close() })

	e.app, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.appPort = uint16(e.app.Addr().(*net.TCPAddr).Port)
	go func() {
		for {
			c, err := e.app.Accept()
			if err != nil {
				return
			}
			e.appConns.Add(1)
			go func() {
				defer c.Close()
				n, _ := io.Copy(c, io.TeeReader(c, countWriter{&e.appBytes}))
				_ = n
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	t.Cleanup(func() { e.app.Close() })

	err = e.store.Apply(workload.Update{
		Workloads: []*workload.Workload{
			{UID: "server", Name: "server", Namespace: "default", ServiceAccount: "server", TrustDomain: "cluster.local",
				WorkloadIPs: []netip.Addr{serverIP}, Protocol: workload.ProtocolHBONE, Capacity: 1},
			{UID: "client", Name: "client", Namespace: "default", ServiceAccount: "client", TrustDomain: "cluster.local",
				WorkloadIPs: []netip.Addr{clientIP}, Protocol: workload.ProtocolHBONE, Capacity: 1},
		},
		Policies: pols,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Store: e.store, Certs: e.certs, Self: serverID,
		ListenIP: netip.MustParseAddr("127.0.0.1"), SOCKS5: true,
		Socket:           netutil.SocketOptions{NoDelay: true},
		EarlyData:        true, // ztunnel's default (ZTUNNEL_HBONE_EARLY_DATA)
		Baggage:          true, // ztunnel's default (ENABLE_RESPONSE_BAGGAGE)
		TerminationGrace: 2 * time.Second,
		AccessLog:        slog.New(slog.NewTextHandler(e.access, nil)),
		Logger:           slog.New(slog.NewTextHandler(e.log, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	e.proxy = listenOnFreePorts(t, cfg)
	e.ports = e.proxy.cfg.Ports
	stopWatch := e.proxy.WatchPolicies()
	t.Cleanup(func() {
		stopWatch()
		e.proxy.Drain(context.Background())
	})
	return e
}

type countWriter struct{ n *atomic.Int64 }

func (c countWriter) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }

// hboneClient opens an HBONE connection to the proxy's inbound port with cert as client identity.
func (e *testEnv) hboneClient(t *testing.T, src identity.ID, expected ...identity.ID) (*hbone.ClientConn, error) {
	t.Helper()
	return e.hboneClientAt(t, serverIP, src, expected...)
}

// hboneClientAt is hboneClient to the proxy's HBONE port on ip (its ListenIP).
func (e *testEnv) hboneClientAt(t *testing.T, ip netip.Addr, src identity.ID, expected ...identity.ID) (*hbone.ClientConn, error) {
	t.Helper()
	return e.hboneClientOver(t, ip, nil, src, expected...)
}

// hboneClientOver is hboneClientAt whose TLS runs over wrap(the TCP connection), or over the
// TCP connection itself when wrap is nil.
func (e *testEnv) hboneClientOver(t *testing.T, ip netip.Addr, wrap func(net.Conn) net.Conn, src identity.ID, expected ...identity.ID) (*hbone.ClientConn, error) {
	t.Helper()
	tc, err := e.hboneTLS(t, ip, wrap, src, expected...)
	if err != nil {
		return nil, err
	}
	cc, err := hbone.NewClientConn(tc, hbone.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc, nil
}

// hboneTLS dials the proxy's HBONE port on ip from clientIP and completes the TLS handshake as
// src, expecting one of expected; the TLS runs over wrap(the TCP connection), or over the TCP
// connection itself when wrap is nil. The caller closes the connection.
func (e *testEnv) hboneTLS(t *testing.T, ip netip.Addr, wrap func(net.Conn) net.Conn, src identity.ID, expected ...identity.ID) (*tls.Conn, error) {
	t.Helper()
	cfg, err := e.certs.ClientConfig(context.Background(), src, expected)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP.AsSlice()}}
	raw, err := d.Dial("tcp", netip.AddrPortFrom(ip, e.ports.InboundHBONE).String())
	if err != nil {
		t.Fatal(err)
	}
	var under net.Conn = raw
	if wrap != nil {
		under = wrap(raw)
	}
	tc := tls.Client(under, cfg)
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	return tc, nil
}

func connect(cc *hbone.ClientConn, authority string) (*hbone.Stream, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return cc.Connect(ctx, &hbone.Request{Method: http.MethodConnect, Authority: authority})
}

func statusOf(err error) int {
	var se *hbone.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestInboundHBONE(t *testing.T) {
	e := newEnv(t)
	cc, err := e.hboneClient(t, clientID, serverID)
	if err != nil {
		t.Fatal(err)
	}
	s, err := connect(cc, netip.AddrPortFrom(serverIP, e.appPort).String())
	if err != nil {
		t.Fatalf("CONNECT: %v", err)
	}
	s.Write([]byte("ping"))
	s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "ping" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	waitLog(t, e.access, "connection complete", "src.identity="+clientID.String(), "direction=inbound")
}

func TestInboundStatusCodes(t *testing.T) {
	deny := &policy.Authorization{Name: "deny-9", Namespace: "default", Scope: policy.ScopeNamespace, Action: policy.ActionDeny,
		Rules: [][][]policy.Match{{{{DestinationPorts: []uint16{9}}}}}}
	e := newEnv(t, deny)
	cc, err := e.hboneClient(t, clientID, serverID)
	if err != nil {
		t.Fatal(err)
	}
	closedPort := freePort(t)
	// A request refused before it has a destination is only logged, as ztunnel's "connection
	// failed" line; one refused by policy or by the app is counted and logged as complete.
	failed := []string{"level=WARN", `msg="connection failed"`, "direction=inbound"}
	complete := []string{`msg="connection complete"`, "direction=inbound"}
	cases := []struct {
		name      string
		authority string
		want      int
		log       []string
	}{
		{"authority neither ip:port nor hostname:port", "server.default", http.StatusBadRequest,
			append(failed, "no valid authority pseudo header: server.default")},
		{"authority an unknown service hostname", "server.default:80", http.StatusServiceUnavailable,
			append(failed, "no service or workload for hostname: server.default")},
		{"authority is another IP than the connection's", "127.0.0.9:80", http.StatusBadRequest,
			append(failed, "ip mismatch: 127.0.0.1 != 127.0.0.9")},
		{"authority is the proxy's own port", netip.AddrPortFrom(serverIP, e.ports.InboundPlain).String(), http.StatusServiceUnavailable,
			append(failed, "attempted recursive call to ourselves")},
		{"policy denies", "127.0.0.1:9", http.StatusUnauthorized,
			append(complete, "level=ERROR", `error="connection closed due to policy rejection: explicitly denied by: default/deny-9"`)},
		{"upstream does not answer", netip.AddrPortFrom(serverIP, closedPort).String(), http.StatusServiceUnavailable,
			append(complete, "level=ERROR", `error="connection failed: Connection refused (os error 111)"`)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := connect(cc, c.authority)
			if got := statusOf(err); got != c.want {
				t.Fatalf("status = %d (%v), want %d", got, err, c.want)
			}
			waitLog(t, e.access, c.log...)
		})
	}
	if n := e.appConns.Load(); n != 0 {
		t.Errorf("the app saw %d connections, want none", n)
	}
	text := e.metricsText(t)
	if n := promtext.Sum(text, "istio_tcp_connections_opened_total", `reporter="destination"`); n != 2 {
		t.Errorf("%v inbound connections counted, want 2 (the denied one and the unanswered one)", n)
	}
	for _, flags := range []string{"DENY", "CONNECT"} {
		if n := promtext.Sum(text, "istio_tcp_connections_failed_total", `reporter="destination"`, `response_flags="`+flags+`"`); n != 1 {
			t.Errorf("%v inbound connections counted as failed with %s, want 1", n, flags)
		}
	}

	// A TLS handshake that fails on 15008 is a "connection failed" line too.
	raw, err := net.Dial("tcp", netip.AddrPortFrom(serverIP, e.ports.InboundHBONE).String())
	if err != nil {
		t.Fatal(err)
	}
	raw.Write([]byte("GET / HTTP/1.1\r\n\r\n")) // not a TLS client hello
	io.Copy(io.Discard, raw)
	raw.Close()
	waitLog(t, e.access, append(failed, "src.addr="+raw.LocalAddr().String()+" ", "dst.addr="+raw.RemoteAddr().String()+" ", "tls handshake")...)
}

func TestInboundUnknownWorkload503(t *testing.T) {
	e := newEnv(t)
	// Remove the server workload: the proxy still terminates TLS with its own identity, but no
	// workload lives at the authority's address.
	if err := e.store.Apply(workload.Update{RemoveWorkloads: []string{"server"}}); err != nil {
		t.Fatal(err)
	}
	cc, err := e.hboneClient(t, clientID, serverID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = connect(cc, netip.AddrPortFrom(serverIP, e.appPort).String())
	if got := statusOf(err); got != http.StatusServiceUnavailable {
		t.Fatalf("status = %d (%v), want 503", got, err)
	}
	waitLog(t, e.access, "level=WARN", `msg="connection failed"`, "direction=inbound", "unknown destination workload 127.0.0.1")
}

func TestInboundRefusesClientWithoutCertificate(t *testing.T) {
	e := newEnv(t)
	conn, err := tls.Dial("tcp", netip.AddrPortFrom(serverIP, e.ports.InboundHBONE).String(),
		&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS13})
	if err == nil {
		// TLS 1.3: the server's refusal arrives with the first read.
		conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if n := e.appConns.Load(); n != 0 {
		t.Errorf("the app saw %d connections, want none", n)
	}
}

func TestClientRefusesWrongSAN(t *testing.T) {
	e := newEnv(t)
	other := identity.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "impostor"}
	if _, err := e.hboneClient(t, clientID, other); err == nil {
		t.Fatal("handshake with a server whose SAN was not expected succeeded")
	}
	if n := e.appBytes.Load(); n != 0 {
		t.Errorf("the app received %d bytes, want none", n)
	}
}

// socksDial connects through the proxy's SOCKS5 port to dst, from the client workload's IP.
func (e *testEnv) socksDial(t testing.TB, dst netip.AddrPort) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP.AsSlice()}}
	c, err := d.Dial("tcp", netip.AddrPortFrom(serverIP, e.ports.SOCKS5).String())
	if err != nil {
		t.Fatal(err)
	}
	req := []byte{5, 1, 0, 5, 1, 0, 1}
	req = append(req, dst.Addr().AsSlice()...)
	req = binary.BigEndian.AppendUint16(req, dst.Port())
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, 2+10)
	if _, err := io.ReadFull(c, resp); err != nil {
		t.Fatal(err)
	}
	if resp[0] != 5 || resp[1] != 0 || resp[3] != 0 {
		t.Fatalf("socks5 reply %v", resp)
	}
	return c
}

// TestOutboundLoop sends a connection through the full path inside one proxy: SOCKS5 ->
// outbound -> pooled HBONE -> inbound -> app, as `make run` does.
func TestOutboundLoop(t *testing.T) {
	e := newEnv(t)
	c := e.socksDial(t, netip.AddrPortFrom(serverIP, e.appPort))
	defer c.Close()
	payload := bytes.Repeat([]byte("0123456789"), 100_000)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if werr := <-errc; werr != nil || err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("round trip of %d bytes: got %d, read err %v, write err %v", len(payload), len(got), err, werr)
	}
	waitLog(t, e.access, "connection complete", "direction=outbound", "dst.identity="+serverID.String())
	waitLog(t, e.access, "connection complete", "direction=inbound", "src.identity="+clientID.String(), "bytes_recv=1000000")
}

// TestPolicyChangeClosesLiveConnection tightens policy while a connection is open.
func TestPolicyChangeClosesLiveConnection(t *testing.T) {
	e := newEnv(t)
	c := e.socksDial(t, netip.AddrPortFrom(serverIP, e.appPort))
	defer c.Close()
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	deny := &policy.Authorization{Name: "deny-client", Namespace: "default", Scope: policy.ScopeNamespace, Action: policy.ActionDeny,
		Rules: [][][]policy.Match{{{{Principals: []policy.StringMatch{policy.Exact("cluster.local/ns/default/sa/client")}}}}}}
	if err := e.store.Apply(workload.Update{Policies: []*policy.Authorization{deny}}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("connection not closed after the policy change: %v", err)
	}
	// As ztunnel logs it: the access line at error level with the error alone, and a line
	// of the proxy's that says which policy decision closed it.
	waitLog(t, e.access, "level=ERROR", "connection complete", "direction=inbound", `error="connection closed due to policy change"`)
	waitLog(t, e.log, "connection closed because it's no longer allowed after a policy update",
		"src.identity="+clientID.String(), `reason="explicitly denied by: default/deny-client"`)
	if n := promtext.Sum(e.metricsText(t), "istio_tcp_connections_failed_total", `reporter="destination"`, `response_flags="DENY"`); n != 1 {
		t.Errorf("%v inbound connections counted as failed with DENY, want 1", n)
	}
}

func TestOutboundRefusesLoopToOwnPort(t *testing.T) {
	e := newEnv(t)
	c := e.socksDial(t, netip.AddrPortFrom(serverIP, e.ports.Outbound))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := c.Read(make([]byte, 1))
	c.Close()
	if n != 0 {
		t.Fatal("a connection to the proxy's own port was relayed")
	}
}

func waitLog(t *testing.T, l *logBuffer, subs ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(l.String(), "\n") {
			ok := true
			for _, s := range subs {
				if !strings.Contains(line, s) {
					ok = false
					break
				}
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q in:\n%s", subs, l.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metricsText scrapes the proxy's registry.
func (e *testEnv) metricsText(t *testing.T) string {
	t.Helper()
	rec := httptest.NewRecorder()
	e.proxy.cfg.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

// TestLongConnectionBytesAndSockets checks that a connection's bytes reach the metrics while it
// is still open (periodic flush) and that open sockets are counted.
func TestLongConnectionBytesAndSockets(t *testing.T) {
	e := newEnv(t)
	c := e.socksDial(t, netip.AddrPortFrom(serverIP, e.appPort))
	payload := bytes.Repeat([]byte("x"), 5000)
	c.Write(payload)
	if _, err := io.ReadFull(c, make([]byte, len(payload))); err != nil {
		t.Fatal(err)
	}
	// The relay counts a chunk just after writing it, so the echo can overtake the count: flush
	// until every side has seen the 5000 bytes (or time out and report what it saw).
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.proxy.conns.flushBytes()
		body = e.metricsText(t)
		if promtext.Sum(body, "istio_tcp_received_bytes_total") == 10000 && promtext.Sum(body, "istio_tcp_sent_bytes_total") == 10000 ||
			time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, reporter := range []string{"source", "destination"} {
		got := promtext.Sum(body, "istio_tcp_received_bytes_total", `reporter="`+reporter+`"`)
		if got != 5000 {
			t.Errorf("received bytes (%s) while open = %v, want 5000", reporter, got)
		}
		if got := promtext.Sum(body, "istio_tcp_sent_bytes_total", `reporter="`+reporter+`"`); got != 5000 {
			t.Errorf("sent bytes (%s) while open = %v, want 5000", reporter, got)
		}
	}
	// SOCKS5 (source) and the HBONE connection (destination) are open sockets.
	if got := promtext.Sum(body, "istio_tcp_sockets_open", `reporter="source"`); got != 1 {
		t.Errorf("open source sockets = %v, want 1", got)
	}
	if got := promtext.Sum(body, "istio_tcp_sockets_open", `reporter="destination"`); got != 1 {
		t.Errorf("open destination sockets = %v, want 1", got)
	}
	c.Close()
	waitLog(t, e.access, "connection complete", "direction=outbound")
	deadline = time.Now().Add(5 * time.Second)
	for {
		body = e.metricsText(t)
		if promtext.Sum(body, "istio_tcp_sockets_open", `reporter="source"`) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("source socket still counted open after close:\n%s", body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Flushed bytes are not counted twice at close.
	if got := promtext.Sum(body, "istio_tcp_received_bytes_total", `reporter="source"`); got != 5000 {
		t.Errorf("received bytes after close = %v, want 5000", got)
	}
}

// TestOnDemandLookup: an outbound connection to an address the store does not know asks the
// control plane once, then routes by its answer (the access log names the workload it learned).
func TestOnDemandLookup(t *testing.T) {
	e := newEnv(t)
	other := netip.MustParseAddr("127.0.0.7")
	var asked atomic.Int32
	e.proxy.cfg.OnDemand = func(ctx context.Context, network string, ip netip.Addr) error {
		asked.Add(1)
		if ip != other {
			return nil
		}
		// The control plane answers: 127.0.0.7 is the server workload's second address.
		return e.store.Apply(workload.Update{Workloads: []*workload.Workload{{
			UID: "late", Name: "late", Namespace: "default", ServiceAccount: "server", TrustDomain: "cluster.local",
			WorkloadIPs: []netip.Addr{serverIP, other}, Protocol: workload.ProtocolHBONE, Capacity: 1,
		}}})
	}
	c := e.socksDial(t, netip.AddrPortFrom(other, e.appPort))
	defer c.Close()
	c.Close()
	waitLog(t, e.access, "connection complete", "direction=outbound", "dst.workload=late")
	if asked.Load() != 1 {
		t.Errorf("on-demand asked %d times, want 1", asked.Load())
	}
}

// addMeshWorkload adds an HBONE workload of namespace default named name, with service account
// name, at ip.
func (e *testEnv) addMeshWorkload(t *testing.T, name string, ip netip.Addr) {
	t.Helper()
	e.apply(t, workload.Update{Workloads: []*workload.Workload{{
		UID: name, Name: name, Namespace: "default", ServiceAccount: name, TrustDomain: "cluster.local",
		WorkloadIPs: []netip.Addr{ip}, Protocol: workload.ProtocolHBONE, Capacity: 1,
	}}})
}

// TestOutboundWrongPeerIdentityIsTLSFailure: an HBONE peer presenting another identity than the
// destination workload's is refused during the handshake and logged with TLS_FAILURE.
func TestOutboundWrongPeerIdentityIsTLSFailure(t *testing.T) {
	e := newEnv(t)
	victim := netip.MustParseAddr("127.0.0.4")
	e.addMeshWorkload(t, "victim", victim)
	// Something else answers on the victim's HBONE port, with a valid certificate of the mesh
	// for another identity.
	l, err := net.Listen("tcp", netip.AddrPortFrom(victim, e.ports.RemoteHBONE).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	impostor := identity.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "impostor"}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			tc := tls.Server(c, e.certs.ServerConfig(impostor))
			tc.Handshake()
			tc.Close()
		}
	}()
	// The client speaks first: the proxy reads its bytes to send them with the request (early
	// data), and the failed connect still resets the client, as a refused one would.
	c := e.socksPipelined(t, clientIP, netip.AddrPortFrom(victim, 80), "hello")
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a connection to an impostor read %d bytes, %v; want a reset", n, err)
	}
	waitLog(t, e.access, "connection complete", "direction=outbound", "dst.workload=victim", "level=ERROR", `error="tls error: server identity spiffe://cluster.local/ns/default/sa/impostor is not an expected identity`)
	if n := promtext.Sum(e.metricsText(t), "istio_tcp_connections_failed_total", `reporter="source"`, `response_flags="TLS_FAILURE"`); n != 1 {
		t.Errorf("%v outbound connections counted as failed with TLS_FAILURE, want 1", n)
	}
}
