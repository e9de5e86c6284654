package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"github.com/ztunnel-go/ztunnel/metrics"
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
