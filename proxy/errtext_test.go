package proxy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"golang.org/x/sys/unix"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/netutil"
	"github.com/ztunnel-go/ztunnel/tls/certs"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	tlsrec "github.com/ztunnel-go/ztunnel/tls/record"
	"github.com/ztunnel-go/ztunnel/workload"
)

// TestIOTextIsRusts checks that a real failed connect and a connect deadline read as Rust's
// std::io::Error writes them, which is what ztunnel's lines say.
func TestIOTextIsRusts(t *testing.T) {
	_, refused := net.Dial("tcp", netip.AddrPortFrom(serverIP, freePort(t)).String())
	if refused == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, timedOut := (&net.Dialer{}).DialContext(ctx, "tcp", "127.0.0.1:9")
	if timedOut == nil {
		t.Fatal("dial past its deadline succeeded")
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{refused, "Connection refused (os error 111)"},
		{timedOut, "Connection timed out (os error 110)"},
		{fmt.Errorf("wrapped: %w", syscall.EHOSTUNREACH), "No route to host (os error 113)"},
		{syscall.ECONNRESET, "Connection reset by peer (os error 104)"},
		{errors.New("something else"), "something else"},
	} {
		if got := ioText(c.err); got != c.want {
			t.Errorf("ioText(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	if got, want := connectionFailed(refused).Error(), "connection failed: Connection refused (os error 111)"; got != want {
		t.Errorf("connectionFailed: %q, want %q", got, want)
	}
	if !errors.Is(connectionFailed(refused), syscall.ECONNREFUSED) {
		t.Error("connectionFailed lost its cause")
	}
}

// TestOutboundFailure checks the error text and response flag of each way an outbound
// connect fails.
func TestOutboundFailure(t *testing.T) {
	_, refused := net.Dial("tcp", netip.AddrPortFrom(serverIP, freePort(t)).String())
	addr := netip.MustParseAddrPort("10.244.1.3:15008")
	timeout := &net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded}
	unauthorized := &hbone.StatusError{Code: 401}
	handshake := &handshakeError{addr: addr, err: timeout}
	for _, c := range []struct {
		name      string
		err       error
		wantErr   string
		wantFlags string
	}{
		{"refused tcp", refused, "io error: Connection refused (os error 111)", metrics.FlagConnect},
		{"refused hbone dial", &hbone.DialError{Addr: addr, Err: refused}, "io error: Connection refused (os error 111)", metrics.FlagConnect},
		{"hbone dial timed out", &hbone.DialError{Addr: addr, Err: timeout},
			"connection timed out, maybe a NetworkPolicy is blocking HBONE port 15008: Connection timed out (os error 110)", metrics.FlagNetworkPolicy},
		{"waited for the dial", &hbone.DialError{Addr: addr, Waited: true, Err: context.DeadlineExceeded},
			"connection timed out, maybe a NetworkPolicy is blocking HBONE port 15008: Connection timed out (os error 110)", metrics.FlagNetworkPolicy},
		{"tcp timed out", timeout, "io error: Connection timed out (os error 110)", metrics.FlagConnect},
		{"handshake timed out", &hbone.DialError{Addr: addr, Err: handshake}, "tls error: Connection timed out (os error 110)", metrics.FlagTLSFailure},
		{"refused CONNECT", fmt.Errorf("open: %w", unauthorized), "http status: 401 Unauthorized", metrics.FlagConnect},
		{"unavailable", &hbone.StatusError{Code: 503}, "http status: 503 Service Unavailable", metrics.FlagConnect},
		{"CONNECT reset", &hbone.ResetError{Code: http2.ErrCodeInternal, Remote: true},
			"h2 failed: stream error received: unexpected internal error encountered", metrics.FlagH2Handshake},
		{"refused by GOAWAY", hbone.GoAwayError{Code: http2.ErrCodeNo},
			"h2 failed: connection error received: not a result of an error", metrics.FlagH2Handshake},
		{"protocol error", &hbone.ConnError{Err: hbone.ProtocolError{Code: http2.ErrCodeProtocol}},
			"h2 failed: connection error detected: unspecific protocol error detected", metrics.FlagH2Handshake},
		{"keepalive", &hbone.ConnError{Err: hbone.ErrPingTimeout},
			"h2 failed: stream closed because of a broken pipe", metrics.FlagH2Handshake},
		{"connection reset", &hbone.ConnError{Err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}},
			"h2 failed: Connection reset by peer (os error 104)", metrics.FlagH2Handshake},
		{"peer's alert", &hbone.ConnError{Err: &tlsrec.AlertError{Desc: 42, Remote: true}},
			"h2 failed: received fatal alert: BadCertificate", metrics.FlagH2Handshake},
		{"forged record", &hbone.ConnError{Err: &tlsrec.AlertError{Desc: 20, Fault: tlsrec.FaultAuthentication}},
			"h2 failed: cannot decrypt peer's message", metrics.FlagH2Handshake},
		{"HTTP/2 client start", &hbone.DialError{Addr: addr, Err: &hbone.ConnError{Err: io.ErrUnexpectedEOF}},
			"io error: hbone: dial 10.244.1.3:15008: hbone: connection closed: unexpected EOF", metrics.FlagConnect},
	} {
		err, flags := outboundFailure(c.err)
		if flags != c.wantFlags {
			t.Errorf("%s: flags %q, want %q", c.name, flags, c.wantFlags)
		}
		if err.Error() != c.wantErr {
			t.Errorf("%s: error %q, want %q", c.name, err, c.wantErr)
		}
		// The cause stays reachable: the error itself, or the status or handshake inside it.
		if !errors.Is(err, c.err) && !errors.Is(err, unauthorized) && !errors.Is(err, handshake) {
			t.Errorf("%s: %v lost its cause %v", c.name, err, c.err)
		}
	}
}

// listenFull returns a listener at a whose accept queue is full, so that the kernel drops the
// SYNs of any further connect, as a NetworkPolicy that drops them does: backlog 0 takes one
// connection, which is made and never accepted.
func listenFull(t *testing.T, a netip.AddrPort) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	filler, err := net.DialTimeout("tcp", a.String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })
	if c, err := net.DialTimeout("tcp", a.String(), 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("a connect to a full accept queue succeeded: the test cannot make a connect time out")
	}
}

// TestOutboundHBONEConnectTimeoutIsNetworkPolicy: a pool connection to a peer's HBONE port
// whose TCP connect times out (its SYNs dropped) is ztunnel's NETWORK_POLICY failure, with or
// without early data.
func TestOutboundHBONEConnectTimeoutIsNetworkPolicy(t *testing.T) {
	for _, early := range []bool{true, false} {
		t.Run(fmt.Sprintf("EarlyData=%v", early), func(t *testing.T) {
			e := newEnvConfig(t, func(c *Config) { c.ConnectTimeout, c.EarlyData = 500*time.Millisecond, early })
			silent := netip.MustParseAddr("127.0.0.5")
			e.addMeshWorkload(t, "silent", silent)
			listenFull(t, netip.AddrPortFrom(silent, e.ports.RemoteHBONE))
			c := e.socksPipelined(t, clientIP, netip.AddrPortFrom(silent, 80), "hello")
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, _ := c.Read(make([]byte, 1)); n != 0 {
				t.Fatal("relayed through a connect that timed out")
			}
			waitLog(t, e.access, "level=ERROR", "connection complete", "dst.workload=silent",
				`error="connection timed out, maybe a NetworkPolicy is blocking HBONE port 15008: Connection timed out (os error 110)"`)
			waitFailed(t, e, "source", "NETWORK_POLICY")
		})
	}
}

// TestResetIsNotAnError: a client that resets its connection during the relay ends it as
// ztunnel reports it: a complete connection, at info level, without an error (ztunnel's copy
// ignores resets, broken pipes and unexpected EOFs), on both sides.
func TestResetIsNotAnError(t *testing.T) {
	e := newEnv(t)
	c := e.socksDial(t, netip.AddrPortFrom(serverIP, e.appPort))
	local := c.LocalAddr().String()
	echoOnce(t, c)
	c.(*net.TCPConn).SetLinger(0)
	c.Close() // a reset
	waitLog(t, e.access, "level=INFO", "connection complete", "direction=outbound", "src.addr="+local, "bytes_sent=1")
	waitLog(t, e.access, "level=INFO", "connection complete", "direction=inbound", "bytes_recv=1")
	if strings.Contains(e.access.String(), "error=") {
		t.Errorf("a reset was logged as an error:\n%s", e.access.String())
	}
}

// TestDrainClosesWithZtunnelsError: the connections a drain closes (here the proxy stopped at
// once, as for a deleted pod) end as ztunnel's do: at error level with "connection closed due
// to connection drain", and not counted as failures.
func TestDrainClosesWithZtunnelsError(t *testing.T) {
	e := newEnv(t)
	c := e.socksDial(t, netip.AddrPortFrom(serverIP, e.appPort))
	defer c.Close()
	echoOnce(t, c)
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	e.proxy.Drain(stopped)
	for _, dir := range []string{"outbound", "inbound"} {
		waitLog(t, e.access, "level=ERROR", "connection complete", "direction="+dir, `error="connection closed due to connection drain"`)
	}
	text := e.metricsText(t)
	if n := promtext.Sum(text, "istio_tcp_connections_failed_total"); n != 0 {
		t.Errorf("%v drained connections counted as failed, want none", n)
	}
	if n := promtext.Sum(text, "istio_tcp_connections_closed_total", `response_flags="-"`); n != 2 {
		t.Errorf("%v connections closed without flags, want the 2 legs", n)
	}
}

// TestRelayErrIsZtunnels checks the error of each way a relay ends, as ztunnel's copy reports
// it: the disconnects and the stream ends it ignores, and the direction and wording of the
// rest.
func TestRelayErrIsZtunnels(t *testing.T) {
	send := func(err error) error { return &netutil.DirError{AToB: true, Err: err} }
	receive := func(err error) error { return &netutil.DirError{Err: err} }
	timedOut := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}
	internal := &hbone.ResetError{Code: http2.ErrCodeInternal, Remote: true}
	other := errors.New("hbone: some other failure")
	// As the streams of a connection that ended see its error.
	inConn := func(err error) error { return fmt.Errorf("hbone: connection closed: %w", err) }
	protocol := hbone.ProtocolError{Code: http2.ErrCodeProtocol, Reason: "HEADERS on idle stream"}
	for _, c := range []struct {
		err  error
		want string // "" for no error
	}{
		{nil, ""},
		{send(io.EOF), ""},
		{receive(net.ErrClosed), ""},
		{net.ErrClosed, ""}, // the Link closed from outside
		{send(syscall.ECONNRESET), ""},
		{receive(fmt.Errorf("write: %w", syscall.EPIPE)), ""},
		{receive(io.ErrUnexpectedEOF), ""},
		{receive(&hbone.ResetError{Code: http2.ErrCodeCancel, Remote: true}), ""},
		{receive(&hbone.ResetError{Code: http2.ErrCodeNo, Remote: true}), ""},
		{send(&hbone.ResetError{Code: http2.ErrCodeStreamClosed, Remote: true}), ""},
		{send(&hbone.ResetError{Code: http2.ErrCodeCancel}), ""},
		{send(timedOut), "send: io error: Connection timed out (os error 110)"},
		{receive(timedOut), "receive: io error: Connection timed out (os error 110)"},
		{receive(syscall.EHOSTUNREACH), "receive: io error: No route to host (os error 113)"},
		{&netutil.DirError{AToB: true, Shutdown: true, Err: syscall.ENETDOWN},
			"while closing connection: send: io error: Network is down (os error 100)"},
		{receive(internal), "receive: io error: stream error received: unexpected internal error encountered"},
		{send(&hbone.ResetError{Code: http2.ErrCodeFlowControl}), "send: io error: stream error detected: flow-control protocol violated"},
		{send(&hbone.ResetError{Code: http2.ErrCodeStreamClosed}), "send: io error: stream error detected: received frame when stream half-closed"},
		{receive(&hbone.ResetError{Code: 0x77, Remote: true}), "receive: io error: stream error received: unknown reason"},
		{receive(inConn(protocol)), "receive: io error: connection error detected: unspecific protocol error detected"},
		{send(inConn(hbone.ProtocolError{Code: http2.ErrCodeFlowControl})),
			"send: io error: connection error detected: flow-control protocol violated"},
		{send(inConn(&net.OpError{Op: "local error", Err: tls.AlertError(20)})),
			"send: io error: cannot decrypt peer's message"},
		{receive(inConn(&net.OpError{Op: "remote error", Err: tls.AlertError(80)})),
			"receive: io error: received fatal alert: InternalError"},
		{receive(inConn(hbone.ErrPingTimeout)), ""},
		{send(inConn(hbone.ErrWriteStalled)), ""},
		{send(other), "send: io error: hbone: some other failure"},
		{other, "hbone: some other failure"},
	} {
		got := relayErr(c.err)
		switch {
		case c.want == "" && got != nil:
			t.Errorf("relayErr(%v) = %q, want no error", c.err, got)
		case c.want != "" && (got == nil || got.Error() != c.want):
			t.Errorf("relayErr(%v) = %v, want %q", c.err, got, c.want)
		}
		var de *netutil.DirError
		if got != nil && errors.As(c.err, &de) && !errors.Is(got, de.Err) {
			t.Errorf("relayErr(%v) lost its cause", c.err)
		}
	}
}

// TestRelayStreamResetIsZtunnels: a peer that resets an HBONE stream during its relay (here a
// waypoint on Go's own HTTP/2 server, whose handler aborts: RST_STREAM INTERNAL_ERROR) ends the
// connection as ztunnel reports it, in the direction that read the reset and in ztunnel's
// HTTP/2 library's words.
func TestRelayStreamResetIsZtunnels(t *testing.T) {
	e := newEnv(t)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodConnect {
				http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
				return
			}
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			io.ReadFull(r.Body, make([]byte, 5))
			panic(http.ErrAbortHandler) // the server resets the stream: INTERNAL_ERROR
		}),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	h2 := &http2.Server{}
	serveWaypoint(t, e, func(c net.Conn, _ <-chan struct{}) {
		tc := tls.Server(c, e.certs.ServerConfig(waypointID))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return
		}
		h2.ServeConn(tc, &http2.ServeConnOpts{Handler: srv.Handler, BaseConfig: srv})
	})

	local := helloViaWaypoint(t, e, "a stream the server reset")
	waitLog(t, e.access, "level=ERROR", "connection complete", "src.addr="+local, "bytes_sent=5",
		`error="receive: io error: stream error received: unexpected internal error encountered"`)
}

// TestInboundHandshakeErrorIsZtunnels: a connection to 15008 whose TLS handshake fails is
// ztunnel's "connection failed" line with its "tls handshake error: " and the std::io::Error
// of the same failure as Rust's Debug writes it, for real handshakes that fail each way.
func TestInboundHandshakeErrorIsZtunnels(t *testing.T) {
	e := newEnv(t)
	// A client certificate from another mesh's root: the proxy does not know its issuer.
	otherCA, err := certs.NewFakeCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	other := certs.NewManager(otherCA, certs.ManagerOptions{})
	t.Cleanup(func() { other.Close() })
	foreign, err := other.ClientConfig(context.Background(), clientID, []identity.ID{serverID})
	if err != nil {
		t.Fatal(err)
	}
	foreign = foreign.Clone()
	foreign.InsecureSkipVerify, foreign.VerifyPeerCertificate, foreign.VerifyConnection = true, nil, nil
	anonymous := foreign.Clone()
	anonymous.GetClientCertificate, anonymous.Certificates = nil, nil

	// A client certificate from the proxy's own CA that expired a moment ago.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := e.ca.Sign(context.Background(), clientID,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	expiredCert, err := tls.X509KeyPair([]byte(chain[0]), pemKey(t, key))
	if err != nil {
		t.Fatal(err)
	}
	for time.Now().Before(expiredCert.Leaf.NotAfter.Add(time.Second)) { // expired, also in whole seconds
		time.Sleep(50 * time.Millisecond)
	}
	expired := anonymous.Clone()
	expired.Certificates = []tls.Certificate{expiredCert}
	// A client of the proxy's own mesh that expects another identity than the proxy's.
	refusing, err := e.certs.ClientConfig(context.Background(), clientID, []identity.ID{waypointID})
	if err != nil {
		t.Fatal(err)
	}

	handshake := func(cfg *tls.Config) func(net.Conn) {
		return func(c net.Conn) {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			tls.Client(c, cfg).Handshake() // TLS 1.3: the client's side may finish first
			io.Copy(io.Discard, c)         // until the server closes
		}
	}
	for _, c := range []struct {
		name string
		do   func(net.Conn)
		want string // the error field as the access log quotes it
		rest string // what follows a variable part of it, if any
	}{
		{"not TLS", func(c net.Conn) { c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); io.Copy(io.Discard, c) },
			`error="tls handshake error: Custom { kind: InvalidData, error: InvalidMessage(InvalidContentType) }"`, ""},
		{"no client certificate", handshake(anonymous),
			`error="tls handshake error: Custom { kind: InvalidData, error: NoCertificatesPresented }"`, ""},
		{"unknown issuer", handshake(foreign),
			`error="tls handshake error: Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }"`, ""},
		{"expired client certificate", handshake(expired),
			`error="tls handshake error: Custom { kind: InvalidData, error: InvalidCertificate(ExpiredContext { time: UnixTime(`,
			"), not_after: UnixTime(" + strconv.FormatInt(expiredCert.Leaf.NotAfter.Unix(), 10) + `) }) }"`},
		{"a client that refuses the proxy's certificate", handshake(refusing),
			`error="tls handshake error: Custom { kind: InvalidData, error: AlertReceived(BadCertificate) }"`, ""},
		{"closed before the hello", func(c net.Conn) {},
			`error="tls handshake error: Custom { kind: UnexpectedEof, error: \"tls handshake eof\" }"`, ""},
		{"reset after a partial hello", func(c net.Conn) {
			c.Write([]byte{22, 3, 1, 0, 200, 1}) // a handshake record the server waits to complete
			time.Sleep(50 * time.Millisecond)
			c.(*net.TCPConn).SetLinger(0)
		}, `error="tls handshake error: Os { code: 104, kind: ConnectionReset, message: \"Connection reset by peer\" }"`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP.AsSlice()}}
			raw, err := d.Dial("tcp", netip.AddrPortFrom(serverIP, e.ports.InboundHBONE).String())
			if err != nil {
				t.Fatal(err)
			}
			c.do(raw)
			raw.Close()
			waitLog(t, e.access, "level=WARN", `msg="connection failed"`, "direction=inbound",
				"src.addr="+raw.LocalAddr().String()+" ", c.want, c.rest)
		})
	}
}

// TestIODebugIsRusts checks the Debug forms that no real handshake here produces.
func TestIODebugIsRusts(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.EPIPE)},
			`Os { code: 32, kind: BrokenPipe, message: "Broken pipe" }`},
		{syscall.EPROTO, `Os { code: 71, kind: Uncategorized, message: "Protocol error" }`},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), "Kind(TimedOut)"},
		{fmt.Errorf("client certificate: %w", certs.ErrRevoked), "Custom { kind: InvalidData, error: InvalidCertificate(Revoked) }"},
		{fmt.Errorf("client certificate: %w", &certs.ValidityError{At: time.Unix(1764000000, 5e8),
			NotBefore: time.Unix(1763990000, 0), NotAfter: time.Unix(1763999999, 0), Err: errors.New("x509: expired")}),
			"Custom { kind: InvalidData, error: InvalidCertificate(ExpiredContext { time: UnixTime(1764000000), not_after: UnixTime(1763999999) }) }"},
		{&certs.ValidityError{At: time.Unix(1764000000, 0), NotBefore: time.Unix(1764000001, 0),
			NotAfter: time.Unix(1764090000, 0), Err: errors.New("x509: not yet valid")},
			"Custom { kind: InvalidData, error: InvalidCertificate(NotValidYetContext { time: UnixTime(1764000000), not_before: UnixTime(1764000001) }) }"},
		{&net.OpError{Op: "remote error", Err: tls.AlertError(48)},
			"Custom { kind: InvalidData, error: AlertReceived(UnknownCA) }"},
		{&net.OpError{Op: "local error", Err: tls.AlertError(20)}, "Custom { kind: InvalidData, error: DecryptError }"},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake", RecordHeader: [5]byte{22, 2, 0, 0, 1}},
			"Custom { kind: InvalidData, error: InvalidMessage(UnknownProtocolVersion) }"},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake", RecordHeader: [5]byte{22, 3, 1, 0x40, 0}},
			"Custom { kind: InvalidData, error: InvalidMessage(InvalidContentType) }"}, // rustls would wait for it
		{errors.New(`tls: "odd"`), `Custom { kind: InvalidData, error: "tls: \"odd\"" }`},
	} {
		if got := ioDebug(c.err); got != c.want {
			t.Errorf("ioDebug(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

// serveWaypoint listens at the waypoint's HBONE address, serves each connection with serve
// on a goroutine of its own, and makes the waypoint known to the proxy. The listener, the
// connections and their goroutines are the test's: cleanup closes done, the listener and the
// connections, and waits for the goroutines.
func serveWaypoint(t *testing.T, e *testEnv, serve func(c net.Conn, done <-chan struct{})) {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(waypointIP, e.ports.RemoteHBONE).String())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { serve(c, done) })
		}
	})
	t.Cleanup(func() {
		close(done)
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	e.apply(t, workload.Update{Workloads: []*workload.Workload{waypointWorkload(waypointIP)}})
}

// rawWaypoint serves HTTP/2 at the waypoint's HBONE address (serveWaypoint) with
// x/net/http2's Framer and no server logic of its own: it hands the connection's Framer and
// the first CONNECT's stream id, unanswered, to misbehave (which runs on the connection's
// goroutine and may block until done closes).
func rawWaypoint(t *testing.T, e *testEnv, misbehave func(fr *http2.Framer, id uint32, done <-chan struct{})) {
	t.Helper()
	tamperWaypoint(t, e, func(fr *http2.Framer, id uint32, _ *tamperConn, done <-chan struct{}) { misbehave(fr, id, done) })
}

// tamperWaypoint is rawWaypoint whose TLS runs over a tamperConn, which misbehave is given
// too: it can corrupt a TLS record the waypoint sends or receives.
func tamperWaypoint(t *testing.T, e *testEnv, misbehave func(fr *http2.Framer, id uint32, tc *tamperConn, done <-chan struct{})) {
	t.Helper()
	serve := func(c net.Conn, done <-chan struct{}) error {
		tamper := &tamperConn{Conn: c}
		tc := tls.Server(tamper, e.certs.ServerConfig(waypointID))
		if err := tc.Handshake(); err != nil {
			return err
		}
		if _, err := io.ReadFull(tc, make([]byte, len(http2.ClientPreface))); err != nil {
			return err
		}
		fr := http2.NewFramer(tc, tc)
		if err := fr.WriteSettings(); err != nil {
			return err
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return err
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					if err := fr.WriteSettingsAck(); err != nil {
						return err
					}
				}
			case *http2.HeadersFrame:
				misbehave(fr, f.StreamID, tamper, done)
				return nil
			}
		}
	}
	serveWaypoint(t, e, func(c net.Conn, done <-chan struct{}) {
		if err := serve(c, done); err != nil {
			t.Logf("raw waypoint: %v", err)
		}
	})
}

// TestRelayConnectionErrorIsZtunnels: a peer that breaks HTTP/2 at the connection's level
// during a relay (here HEADERS on a stream it never saw opened) gets GOAWAY with
// PROTOCOL_ERROR, and the relayed connection ends as ztunnel reports one whose HTTP/2 library
// detected a connection error: in the direction that read it, in that library's words.
func TestRelayConnectionErrorIsZtunnels(t *testing.T) {
	e := newEnv(t)
	goAway := make(chan http2.ErrCode, 1)
	rawWaypoint(t, e, func(fr *http2.Framer, id uint32, _ <-chan struct{}) {
		if !answerThenRead(t, fr, id) { // then the violation
			return
		}
		if err := writeStatus(fr, id+2, 200); err != nil { // on a stream the client never opened
			t.Errorf("writing HEADERS: %v", err)
			return
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Errorf("no GOAWAY before the connection ended: %v", err)
				return
			}
			if g, ok := f.(*http2.GoAwayFrame); ok {
				goAway <- g.ErrCode
				return
			}
		}
	})

	local := helloViaWaypoint(t, e, "a connection that broke the protocol")
	select {
	case code := <-goAway:
		if code != http2.ErrCodeProtocol {
			t.Errorf("GOAWAY %v, want PROTOCOL_ERROR", code)
		}
	case <-time.After(5 * time.Second):
		t.Error("no GOAWAY")
	}
	waitLog(t, e.access, "level=ERROR", "connection complete", "src.addr="+local, "bytes_sent=5",
		`error="receive: io error: connection error detected: unspecific protocol error detected"`)
}

// TestRelayPingTimeoutIsZtunnels: a peer that answers CONNECT and then falls silent (no PING
// answered, no byte read) has its connection closed at the keepalive's timeout. As in
// ztunnel, which drops such a connection and whose streams then end as a broken pipe, the
// relayed connection's line reports no error of its own, and the HBONE connection's warning
// says why, once.
func TestRelayPingTimeoutIsZtunnels(t *testing.T) {
	hlog := &logBuffer{}
	e := newEnvConfig(t, func(cfg *Config) {
		cfg.HBONE.PingInterval, cfg.HBONE.PingTimeout = 50*time.Millisecond, 300*time.Millisecond
		cfg.HBONE.Logger = slog.New(slog.NewTextHandler(hlog, nil))
	})
	rawWaypoint(t, e, func(fr *http2.Framer, id uint32, done <-chan struct{}) {
		if err := writeStatus(fr, id, 200); err != nil {
			t.Errorf("answering CONNECT: %v", err)
		}
		<-done
	})

	local := helloViaWaypoint(t, e, "a connection whose tunnel timed out")
	waitLog(t, e.access, "connection complete", "src.addr="+local, "bytes_sent=5")
	for _, line := range strings.Split(e.access.String(), "\n") {
		if strings.Contains(line, "src.addr="+local) && (strings.Contains(line, "error=") ||
			!strings.Contains(line, "level=INFO")) {
			t.Errorf("the line of a connection whose tunnel's peer went silent reports an error: %s", line)
		}
	}
	waitLog(t, hlog, "level=WARN", `msg="HBONE ping timeout/error"`, "remote="+
		netip.AddrPortFrom(waypointIP, e.ports.RemoteHBONE).String())
	if n := strings.Count(hlog.String(), "HBONE ping timeout/error"); n != 1 {
		t.Errorf("%d ping timeout lines, want 1:\n%s", n, hlog)
	}
}

// pemKey is key in PKCS #8 PEM, as tls.X509KeyPair reads it.
func pemKey(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// helloViaWaypoint connects the client to the waypoint through the proxy's SOCKS5 listener,
// sends 5 bytes and waits for the proxy to end the connection without a byte back, failing
// (with what the connection went through) when a byte or the read deadline comes instead. It
// returns the client's address, by which the access log names the connection.
func helloViaWaypoint(t *testing.T, e *testEnv, what string) string {
	t.Helper()
	c := e.socksDialFrom(t, clientIP, netip.AddrPortFrom(waypointIP, 9))
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || isTimeout(err) {
		t.Fatalf("%s: read %d bytes, %v; want the connection's end", what, n, err)
	}
	return c.LocalAddr().String()
}

// answerThenRead answers the CONNECT on stream id with 200, reads up to the client's first
// DATA with bytes in it, then sends a PING and reads up to its answer: the client has taken
// the answer by then (it reads frames in order), and its writer is idle. It reports false,
// after failing t, when any of it fails.
func answerThenRead(t *testing.T, fr *http2.Framer, id uint32) bool {
	if err := writeStatus(fr, id, 200); err != nil {
		t.Errorf("answering CONNECT: %v", err)
		return false
	}
	data := false
	for !data {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Errorf("reading the client's bytes: %v", err)
			return false
		}
		d, ok := f.(*http2.DataFrame)
		data = ok && len(d.Data()) > 0
	}
	mark := [8]byte{'a', 'n', 's', 'w', 'e', 'r', 'e', 'd'}
	if err := fr.WritePing(false, mark); err != nil {
		t.Errorf("writing PING: %v", err)
		return false
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Errorf("reading the PING's answer: %v", err)
			return false
		}
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() && p.Data == mark {
			return true
		}
	}
}

// writeStatus writes a response HEADERS frame with status on stream id.
func writeStatus(fr *http2.Framer, id uint32, status int) error {
	var hdr bytes.Buffer
	hpack.NewEncoder(&hdr).WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(status)})
	return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr.Bytes(), EndHeaders: true})
}

// TestOutboundH2FailureIsZtunnels: an HBONE request that its pool connection fails after the
// connection was up ends as ztunnel's H2 errors do: "h2 failed: " and its HTTP/2 library's
// words, flagged H2_HANDSHAKE_FAILURE. Here a peer resets the CONNECT before answering it,
// and another answers with a protocol error on the connection; with early data the proxy
// relays before the answer (netutil.Refuser), without it the answer is awaited.
func TestOutboundH2FailureIsZtunnels(t *testing.T) {
	for _, early := range []bool{false, true} {
		t.Run(fmt.Sprintf("early=%v", early), func(t *testing.T) { testOutboundH2Failure(t, early) })
	}
}

func testOutboundH2Failure(t *testing.T, early bool) {
	for _, c := range []struct {
		name      string
		misbehave func(fr *http2.Framer, id uint32) error
		want      string
	}{
		{"reset", func(fr *http2.Framer, id uint32) error { return fr.WriteRSTStream(id, http2.ErrCodeInternal) },
			`error="h2 failed: stream error received: unexpected internal error encountered"`},
		{"protocol error", func(fr *http2.Framer, id uint32) error { return writeStatus(fr, id+2, 200) },
			`error="h2 failed: connection error detected: unspecific protocol error detected"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnvConfig(t, func(cfg *Config) { cfg.EarlyData = early })
			rawWaypoint(t, e, func(fr *http2.Framer, id uint32, done <-chan struct{}) {
				if err := c.misbehave(fr, id); err != nil {
					t.Errorf("misbehaving: %v", err)
				}
				<-done
			})
			conn := e.socksDialFrom(t, clientIP, netip.AddrPortFrom(waypointIP, 9))
			defer conn.Close()
			local := conn.LocalAddr().String()
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, _ := conn.Read(make([]byte, 1)); n != 0 {
				t.Fatal("read bytes through a refused tunnel")
			}
			waitLog(t, e.access, "level=ERROR", "connection complete", "src.addr="+local, c.want)
			text := e.metricsText(t)
			if n := promtext.Sum(text, "istio_tcp_connections_failed_total", `response_flags="H2_HANDSHAKE_FAILURE"`); n != 1 {
				t.Errorf("%v connections failed with H2_HANDSHAKE_FAILURE, want 1", n)
			}
		})
	}
}
