package main

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// banner serves on a loopback listener: it writes name and a newline to each connection, then
// echoes. It counts the connections it accepted.
func banner(t *testing.T, name string) (addr string, accepted *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted = new(atomic.Int32)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				io.WriteString(c, name+"\n")
				io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String(), accepted
}

// dialRelay connects to r's first listener, as an application does, with a 10 s deadline. The
// connection is closed when the test ends.
func dialRelay(t *testing.T, r *relay) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", r.listeners[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn
}

// TestRelayALPN runs the pod-borne relay's shape over loopback with real TLS: one server-side
// listener that forwards to two upstreams by the ALPN protocol each client side offers.
func TestRelayALPN(t *testing.T) {
	certs := t.TempDir()
	if err := writeRelayCerts(certs); err != nil {
		t.Fatal(err)
	}
	up1, _ := banner(t, "one")
	up2, _ := banner(t, "two")
	srv, err := startRelay(roleTLSServer, certs, []relayMapping{
		{"127.0.0.1:0", up1, "app1"}, {"127.0.0.1:0", up2, "app2"},
	}, sockOpts{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	if len(srv.listeners) != 1 {
		t.Fatalf("server side listens on %d addresses, want 1", len(srv.listeners))
	}
	srvAddr := srv.listeners[0].Addr().String()
	for _, c := range []struct{ proto, want string }{{"app1", "one"}, {"app2", "two"}} {
		cli, err := startRelay(roleTLSClient, certs, []relayMapping{{"127.0.0.1:0", srvAddr, c.proto}}, sockOpts{})
		if err != nil {
			t.Fatal(err)
		}
		conn := dialRelay(t, cli)
		r := bufio.NewReader(conn)
		got, err := r.ReadString('\n')
		if err != nil || strings.TrimSpace(got) != c.want {
			t.Errorf("protocol %s reached %q (%v), want %q", c.proto, got, err, c.want)
		}
		io.WriteString(conn, "ping\n")
		if echo, err := r.ReadString('\n'); err != nil || echo != "ping\n" {
			t.Errorf("protocol %s echoed %q, %v", c.proto, echo, err)
		}
		conn.Close()
		cli.close()
	}
}

// TestRelayALPNUnknown checks that a client side offering a protocol the server side does not
// serve is refused at the handshake and reaches no upstream.
func TestRelayALPNUnknown(t *testing.T) {
	certs := t.TempDir()
	if err := writeRelayCerts(certs); err != nil {
		t.Fatal(err)
	}
	up1, accepted := banner(t, "one")
	srv, err := startRelay(roleTLSServer, certs, []relayMapping{{"127.0.0.1:0", up1, "app1"}}, sockOpts{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	cli, err := startRelay(roleTLSClient, certs, []relayMapping{{"127.0.0.1:0", srv.listeners[0].Addr().String(), "app9"}}, sockOpts{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.close()
	conn := dialRelay(t, cli)
	if b, err := io.ReadAll(conn); len(b) != 0 || err != nil {
		t.Errorf("read %q, %v; want the connection closed without data", b, err)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the upstream accepted %d connections, want none", n)
	}
}
