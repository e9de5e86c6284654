package proxy

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
)

// TestIdleConnectionsHoldNoGoroutines: connections through the whole path (SOCKS5 -> outbound ->
// pooled HBONE -> inbound -> app) hold no goroutine of the proxy once idle: their four relay
// directions park (the TCP legs in netutil's epoll loop, the HBONE streams on their
// notifications) and the handlers have returned. Parked connections still carry bytes both ways
// and end normally, with their access log lines.
func TestIdleConnectionsHoldNoGoroutines(t *testing.T) {
	e := newEnv(t)
	const n = 30
	buf := make([]byte, 1)
	echo := func(c net.Conn, b byte) {
		t.Helper()
		if _, err := c.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || buf[0] != b {
			t.Fatalf("echo: read %v, %v; want %d", buf, err, b)
		}
	}
	// Certificates and the pooled HBONE connection (with their goroutines) exist from here on.
	warm := e.socksDial(t, netip.AddrPortFrom(serverIP, e.appPort))
	echo(warm, 1)
	warm.Close()
	waitLog(t, e.access, "connection complete", "direction=inbound")
	time.Sleep(50 * time.Millisecond) // the warm-up connection's app goroutine ends
	base := leakcheck.Count()
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = e.socksDial(t, netip.AddrPortFrom(serverIP, e.appPort))
		defer conns[i].Close()
		echo(conns[i], byte(i))
	}
	// The test's echo app keeps one goroutine per connection; the proxy may keep none.
	want := base + n
	waitIdle := func(stage string) {
		t.Helper()
		testwait.Until(t, fmt.Sprintf("%d idle connections to run no goroutine beyond the app's (%s)", n, stage),
			5*time.Second, func() bool { return leakcheck.Count() <= want })
	}
	waitIdle("after the first echo")
	for i, c := range conns {
		echo(c, byte(i+100))
	}
	waitIdle("after the second echo")
	for _, c := range conns {
		c.(*net.TCPConn).CloseWrite()
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			t.Fatalf("after the client's FIN: read %q, %v; want EOF", rest, err)
		}
		c.Close()
	}
	testwait.Until(t, fmt.Sprintf("%d inbound access log lines", n+1), 5*time.Second, func() bool {
		return strings.Count(e.access.String(), "direction=inbound") >= n+1
	})
}

// TestSlowReaderIntact: a client that stops reading while its echo streams back fills its
// socket; the relay directions that write to it (on the HBONE reader's goroutine while they
// can, then on their own) must keep every byte in order.
func TestSlowReaderIntact(t *testing.T) {
	e := newEnv(t)
	c := e.socksDial(t, netip.AddrPortFrom(serverIP, e.appPort))
	defer c.Close()
	payload := make([]byte, 8<<20)
	for i := range payload {
		payload[i] = byte(i*7 + i>>11)
	}
	errc := make(chan error, 1)
	go func() {
		for off := 0; off < len(payload); off += 1000 { // many small writes: many small frames
			if _, err := c.Write(payload[off:min(off+1000, len(payload))]); err != nil {
				errc <- err
				return
			}
		}
		errc <- c.(*net.TCPConn).CloseWrite()
	}()
	time.Sleep(300 * time.Millisecond) // nobody reads: every buffer on the way back fills
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if werr := <-errc; werr != nil || err != nil {
		t.Fatalf("write err %v, read err %v", werr, err)
	}
	if len(got) != len(payload) {
		t.Fatalf("echoed %d bytes, want %d", len(got), len(payload))
	}
	for i := range got {
		if got[i] != payload[i] {
			t.Fatalf("echo differs first at byte %d", i)
		}
	}
}
