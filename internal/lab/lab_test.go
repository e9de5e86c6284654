package lab

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/netutil"
)

var mp = netip.MustParsePrefix

// accept accepts one connection within a few seconds.
func accept(t *testing.T, ln net.Listener) (*net.TCPConn, error) {
	t.Helper()
	tl := ln.(*net.TCPListener)
	tl.SetDeadline(time.Now().Add(3 * time.Second))
	c, err := tl.AcceptTCP()
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// echoOnce accepts one connection on ln, echoes one line back and closes it.
// The returned channel yields the accepted connection's remote address.
func echoOnce(ln net.Listener) <-chan error {
	errc := make(chan error, 1)
	go func() { // waited for through errc by the test
		tl := ln.(*net.TCPListener)
		tl.SetDeadline(time.Now().Add(5 * time.Second))
		c, err := tl.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			errc <- err
			return
		}
		_, err = io.WriteString(c, line)
		errc <- err
	}()
	return errc
}

// roundTrip dials addr from n, sends a line and expects it echoed.
func roundTrip(n *Netns, network, addr string) error {
	c, err := n.Dial(network, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "hello lab\n"); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != "hello lab\n" {
		return fmt.Errorf("echo = %q, want %q", got, "hello lab\n")
	}
	return nil
}

func TestVethPingAndTCP(t *testing.T) {
	l := New(t)
	a, b := l.Netns("a"), l.Netns("b")
	aIf, bIf := l.Veth(a, mp("10.71.0.1/24"), b, mp("10.71.0.2/24"))
	if len(aIf) > 15 || len(bIf) > 15 {
		t.Fatalf("interface names %q %q longer than 15", aIf, bIf)
	}
	// A second pair for IPv6.
	l.Veth(a, mp("fd71::1/64"), b, mp("fd71::2/64"))

	lnA := a.Listen(t, "tcp", ":7000")
	lnB := b.Listen(t, "tcp", ":7000")

	tests := []struct {
		name     string
		from     *Netns
		dst      string
		srv      net.Listener
		wantPing bool
	}{
		{"a to b v4", a, "10.71.0.2", lnB, true},
		{"b to a v4", b, "10.71.0.1", lnA, true},
		{"a to b v6", a, "fd71::2", lnB, true},
		{"b to a v6", b, "fd71::1", lnA, true},
		{"a to nowhere", a, "10.72.0.9", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A reachable peer answers within milliseconds, but a fresh IPv6 link on a loaded
			// machine can take seconds to pass traffic: wait long for the positive cases (Ping
			// returns at the first reply) and briefly for the unreachable one.
			timeout := 2 * time.Second
			if tt.wantPing {
				timeout = 15 * time.Second
			}
			err := tt.from.Ping(netip.MustParseAddr(tt.dst), timeout)
			if got := err == nil; got != tt.wantPing {
				t.Fatalf("ping %s from %s: reachable = %v (err %v), want %v", tt.dst, tt.from.Name(), got, err, tt.wantPing)
			}
			if tt.srv == nil {
				return
			}
			errc := echoOnce(tt.srv)
			if err := roundTrip(tt.from, "tcp", net.JoinHostPort(tt.dst, "7000")); err != nil {
				t.Fatalf("tcp round trip: %v", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("server: %v", err)
			}
		})
	}
}

func TestNamespacesIsolatedAndCleanedUp(t *testing.T) {
	var name string
	t.Run("lab", func(t *testing.T) {
		l := New(t)
		a := l.Netns("iso")
		name = a.Name()
		ln := a.Listen(t, "tcp", "127.0.0.1:0")
		// The host (this process's netns) has no listener on that port.
		if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
			c.Close()
			t.Fatalf("listener inside %s reachable from the host netns", name)
		}
		errc := echoOnce(ln)
		if err := roundTrip(a, "tcp", ln.Addr().String()); err != nil {
			t.Fatalf("inside netns: %v", err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(name, l.Prefix()+"-") {
			t.Fatalf("name %q lacks prefix %q", name, l.Prefix())
		}
	})
	if _, err := os.Stat("/var/run/netns/" + name); !os.IsNotExist(err) {
		t.Fatalf("netns %s still present after cleanup (stat err %v)", name, err)
	}
}

func TestBridge(t *testing.T) {
	l := New(t)
	node := l.Netns("node")
	p1, p2 := l.Netns("p1"), l.Netns("p2")
	l.Bridge(node, "br0", mp("10.73.0.1/24"))
	l.VethToBridge(p1, mp("10.73.0.11/24"), node, "br0")
	l.VethToBridge(p2, mp("10.73.0.12/24"), node, "br0")
	p1.AddRoute(mp("10.74.0.0/16"), netip.MustParseAddr("10.73.0.1"))

	if out := p1.MustRun(t, "ip", "route"); !strings.Contains(out, "10.74.0.0/16 via 10.73.0.1") {
		t.Errorf("route missing in p1:\n%s", out)
	}
	tests := []struct {
		from *Netns
		dst  string
	}{
		{p1, "10.73.0.12"}, {p2, "10.73.0.11"}, {p1, "10.73.0.1"}, {node, "10.73.0.12"},
	}
	for _, tt := range tests {
		if err := tt.from.Ping(netip.MustParseAddr(tt.dst), 3*time.Second); err != nil {
			t.Errorf("ping %s from %s: %v", tt.dst, tt.from.Name(), err)
		}
	}
	ln := p2.Listen(t, "tcp", "10.73.0.12:7001")
	errc := echoOnce(ln)
	if err := roundTrip(p1, "tcp", "10.73.0.12:7001"); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestCommand(t *testing.T) {
	l := New(t)
	n := l.Netns("cmd")
	l.Veth(n, mp("10.75.0.1/24"), l.Netns("peer"), mp("10.75.0.2/24"))
	out, err := n.Command(t.Context(), "ip", "-o", "-4", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "10.75.0.1/24") {
		t.Fatalf("command did not run in the netns; output:\n%s", out)
	}
}

// TestInpodRedirect checks the istio-cni rules: outbound TCP lands on 15001,
// inbound TCP on 15006 (both with the original destination readable), 15008
// and traffic marked 0x539 are left alone, DNS goes to 15053.
func TestInpodRedirect(t *testing.T) {
	l := New(t)
	pod, remote := l.Netns("pod"), l.Netns("rem")
	l.Veth(pod, mp("10.76.0.2/24"), remote, mp("10.76.0.1/24"))
	pod.AddRoute(mp("0.0.0.0/0"), netip.MustParseAddr("10.76.0.1"))
	pod.InstallInpodRedirect(t)

	out15001 := pod.Listen(t, "tcp", ":15001")
	in15006 := pod.Listen(t, "tcp", ":15006")
	hbone := pod.Listen(t, "tcp", ":15008")
	remote80 := remote.Listen(t, "tcp", "10.76.0.1:80")

	tests := []struct {
		name       string
		from       *Netns
		mark       uint32
		dst        string
		land       net.Listener // where the connection must be accepted
		redirected bool         // OriginalDst must then be dst
	}{
		{"outbound to remote service", pod, 0, "10.99.0.7:80", out15001, true},
		{"outbound to existing peer", pod, 0, "10.76.0.1:80", out15001, true},
		{"outbound marked 0x539 bypasses", pod, 0x539, "10.76.0.1:80", remote80, false},
		{"inbound plaintext", remote, 0, "10.76.0.2:8080", in15006, true},
		{"inbound hbone not redirected", remote, 0, "10.76.0.2:15008", hbone, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c net.Conn
			err := tt.from.Do(func() error {
				var err error
				d := netutil.SocketOptions{Mark: tt.mark}.Dialer(netip.AddrPort{})
				d.Timeout = 3 * time.Second
				c, err = d.Dial("tcp", tt.dst)
				return err
			})
			if err != nil {
				t.Fatalf("dial %s: %v", tt.dst, err)
			}
			defer c.Close()
			sc, err := accept(t, tt.land)
			if err != nil {
				t.Fatalf("connection did not land on %v: %v", tt.land.Addr(), err)
			}
			orig, err := netutil.OriginalDst(sc)
			if !tt.redirected {
				// Untracked: an error; tracked but not NATed: the address dialed.
				if err == nil && orig.String() != tt.dst {
					t.Fatalf("OriginalDst = %v on a connection that was not redirected, want %s or an error", orig, tt.dst)
				}
				return
			}
			if err != nil {
				t.Fatalf("OriginalDst: %v", err)
			}
			if got := orig.String(); got != tt.dst {
				t.Fatalf("OriginalDst = %s, want %s", got, tt.dst)
			}
		})
	}

	t.Run("dns udp to 15053", func(t *testing.T) {
		var pc net.PacketConn
		if err := pod.Do(func() error {
			var err error
			pc, err = net.ListenPacket("udp", ":15053")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		c, err := pod.Dial("udp", "10.99.0.53:53")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("query")); err != nil {
			t.Fatal(err)
		}
		pc.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 64)
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram to :53 did not reach 15053: %v", err)
		}
		if got := string(buf[:n]); got != "query" {
			t.Fatalf("got %q, want %q", got, "query")
		}
	})
}
