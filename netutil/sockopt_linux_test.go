package netutil_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ztunnel-go/ztunnel/internal/lab"
	"github.com/ztunnel-go/ztunnel/netutil"
)

var mp = netip.MustParsePrefix

// sockopt reads an integer socket option of c.
func sockopt(t *testing.T, c syscall.Conn, level, opt int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatalf("getsockopt(%d, %d): %v", level, opt, serr)
	}
	return v
}

// acceptTCP accepts one connection within a few seconds.
func acceptTCP(t *testing.T, ln net.Listener) *net.TCPConn {
	t.Helper()
	tl := ln.(*net.TCPListener)
	tl.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := tl.AcceptTCP()
	if err != nil {
		t.Fatalf("accept on %v: %v", ln.Addr(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestOriginalDst redirects port 80 of an address that exists only inside a
// namespace to local listeners and reads the original destination back, for
// IPv4 and IPv6 on a dual-stack listener and IPv4 on an IPv4-only one.
func TestOriginalDst(t *testing.T) {
	l := lab.New(t)
	ns := l.Netns("od")
	l.Veth(ns, mp("10.81.0.1/24"), l.Netns("peer"), mp("10.81.0.2/24"))
	l.Veth(ns, mp("fd81::1/64"), l.Netns("peer6"), mp("fd81::2/64"))
	ns.MustRun(t, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "10.81.0.0/24", "--dport", "80", "-j", "REDIRECT", "--to-ports", "15001")
	ns.MustRun(t, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "10.81.0.0/24", "--dport", "81", "-j", "REDIRECT", "--to-ports", "15002")
	has6 := true
	if _, err := ns.Run("ip6tables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "fd81::/64", "--dport", "80", "-j", "REDIRECT", "--to-ports", "15001"); err != nil {
		has6 = false
		t.Logf("ip6tables nat unavailable (%v): skipping the IPv6 case", err)
	}
	dual := ns.Listen(t, "tcp", ":15001")
	only4 := ns.Listen(t, "tcp4", "0.0.0.0:15002")

	tests := []struct {
		name string
		dst  string
		ln   net.Listener
		skip bool
	}{
		{"v4 on dual-stack listener", "10.81.0.9:80", dual, false},
		{"v4 to an existing peer", "10.81.0.2:80", dual, false},
		{"v6 on dual-stack listener", "[fd81::9]:80", dual, !has6},
		{"v4 on v4-only listener", "10.81.0.9:81", only4, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip {
				t.Skip("no ip6tables nat")
			}
			c, err := ns.Dial("tcp", tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sc := acceptTCP(t, tt.ln)
			got, err := netutil.OriginalDst(sc)
			if err != nil {
				t.Fatalf("OriginalDst: %v", err)
			}
			if want := netip.MustParseAddrPort(tt.dst); got != want {
				t.Fatalf("OriginalDst = %v, want %v (local address %v)", got, want, sc.LocalAddr())
			}
			if got.Addr().Is4In6() {
				t.Fatalf("OriginalDst returned a mapped address %v", got)
			}
			// The option is read into a buffer on the stack: what allocates is the RawConn
			// and the closure given to its Control (x/sys's getter added a third).
			if n := testing.AllocsPerRun(100, func() { netutil.OriginalDst(sc) }); n > 2 {
				t.Errorf("OriginalDst allocates %.0f times per call, want at most 2", n)
			}
		})
	}

	t.Run("untracked connection errors", func(t *testing.T) {
		// A fresh namespace without any netfilter rule: conntrack is off there.
		plain := l.Netns("plain")
		ln := plain.Listen(t, "tcp", "127.0.0.1:0")
		c, err := plain.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got, err := netutil.OriginalDst(acceptTCP(t, ln)); err == nil && got.String() != ln.Addr().String() {
			t.Fatalf("OriginalDst = %v, want an error or the local address %v", got, ln.Addr())
		}
	})
}

// TestTransparentDial connects from a foreign source address the way ztunnel
// reaches an application in its pod: mark 0x539, IP_TRANSPARENT+IP_FREEBIND,
// and the in-pod connmark / table 100 rules carry the replies back.
func TestTransparentDial(t *testing.T) {
	l := lab.New(t)
	pod := l.Netns("pod")
	l.Veth(pod, mp("10.82.0.2/24"), l.Netns("peer"), mp("10.82.0.1/24"))
	l.Veth(pod, mp("fd82::2/64"), l.Netns("peer6"), mp("fd82::1/64"))
	// Like a real pod, a default route: the application's SYN-ACK to the
	// foreign source must be routable before the mangle OUTPUT rule re-marks
	// it into table 100 (without one the kernel drops it: IpOutNoRoutes).
	pod.AddRoute(mp("0.0.0.0/0"), netip.MustParseAddr("10.82.0.1"))
	pod.AddRoute(mp("::/0"), netip.MustParseAddr("fd82::1"))
	pod.InstallInpodRedirect(t)
	app4 := pod.Listen(t, "tcp", "10.82.0.2:8080")
	app6 := pod.Listen(t, "tcp", "[fd82::2]:8080")

	spoofed := netutil.SocketOptions{Mark: 0x539, Transparent: true, Freebind: true, NoDelay: true}
	tests := []struct {
		name    string
		opts    netutil.SocketOptions
		src     string
		dst     string
		app     net.Listener
		wantErr bool
	}{
		{"v4 spoofed source", spoofed, "10.99.1.5:0", "10.82.0.2:8080", app4, false},
		{"v4 spoofed source with port", spoofed, "10.99.1.6:40000", "10.82.0.2:8080", app4, false},
		{"v6 spoofed source", spoofed, "[fd99::5]:0", "[fd82::2]:8080", app6, false},
		{"4in6 source is unmapped", spoofed, "[::ffff:10.99.1.7]:0", "10.82.0.2:8080", app4, false},
		{"without transparent the bind fails", netutil.SocketOptions{Mark: 0x539}, "10.99.1.8:0", "10.82.0.2:8080", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := netip.MustParseAddrPort(tt.src)
			var c net.Conn
			err := pod.Do(func() error {
				d := tt.opts.Dialer(src)
				d.Timeout = 5 * time.Second
				var err error
				c, err = d.Dial("tcp", tt.dst)
				return err
			})
			if tt.wantErr {
				if err == nil {
					c.Close()
					t.Fatal("dial from a foreign address succeeded without IP_TRANSPARENT")
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			sc := acceptTCP(t, tt.app)
			peer := sc.RemoteAddr().(*net.TCPAddr).AddrPort()
			if peer.Addr().Unmap() != src.Addr().Unmap() {
				t.Fatalf("application sees source %v, want %v", peer, src.Addr().Unmap())
			}
			if src.Port() != 0 && peer.Port() != src.Port() {
				t.Fatalf("application sees port %d, want %d", peer.Port(), src.Port())
			}
			// Data both ways proves the replies to the foreign address come back.
			if _, err := sc.Write([]byte("from app")); err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 8)
			if _, err := io.ReadFull(c, buf); err != nil {
				t.Fatalf("reply to the spoofed source did not arrive: %v", err)
			}
			if got := sockopt(t, c.(*net.TCPConn), unix.SOL_SOCKET, unix.SO_MARK); got != 0x539 {
				t.Errorf("SO_MARK = %#x, want 0x539", got)
			}
		})
	}
}

// TestSocketOptions reads the options back with getsockopt.
func TestSocketOptions(t *testing.T) {
	l := lab.New(t)
	ns := l.Netns("opts")
	opts := netutil.SocketOptions{Mark: 0x2a, Transparent: true, Freebind: true, ReusePort: true, NoDelay: true, Keepalive: netutil.DefaultKeepAlive()}

	var ln, ln2 net.Listener
	var dialed net.Conn
	var noKA net.Conn
	err := ns.Do(func() error {
		lc := opts.ListenConfig()
		var err error
		if ln, err = lc.Listen(context.Background(), "tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		// SO_REUSEPORT: a second listener on the same port.
		if ln2, err = lc.Listen(context.Background(), "tcp", ln.Addr().String()); err != nil {
			return fmt.Errorf("second SO_REUSEPORT listener: %w", err)
		}
		// Without it the port is taken.
		plain := netutil.SocketOptions{}.ListenConfig()
		if l3, err := plain.Listen(context.Background(), "tcp", ln.Addr().String()); err == nil {
			l3.Close()
			return errors.New("listener without SO_REUSEPORT shared the port")
		}
		if dialed, err = opts.Dialer(netip.AddrPort{}).Dial("tcp", ln.Addr().String()); err != nil {
			return err
		}
		noKA, err = netutil.SocketOptions{}.Dialer(netip.AddrPort{}).Dial("tcp", ln.Addr().String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	defer ln2.Close()
	defer dialed.Close()
	defer noKA.Close()

	// The kernel spreads connections over the two listeners: find ours.
	var accepted *net.TCPConn
	for _, l := range []net.Listener{ln, ln2} {
		l.(*net.TCPListener).SetDeadline(time.Now().Add(200 * time.Millisecond))
		if c, err := l.(*net.TCPListener).AcceptTCP(); err == nil {
			if c.RemoteAddr().String() == dialed.LocalAddr().String() {
				accepted = c
			}
			defer c.Close()
		}
	}
	if accepted == nil {
		l1, _ := ln.(*net.TCPListener).AcceptTCP()
		if l1 != nil {
			defer l1.Close()
		}
		t.Fatal("did not accept the dialed connection")
	}

	tl := ln.(*net.TCPListener)
	dc := dialed.(*net.TCPConn)
	tests := []struct {
		name  string
		conn  syscall.Conn
		level int
		opt   int
		want  int
	}{
		{"listener SO_MARK", tl, unix.SOL_SOCKET, unix.SO_MARK, 0x2a},
		{"listener SO_REUSEPORT", tl, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1},
		{"listener IP_TRANSPARENT", tl, unix.SOL_IP, unix.IP_TRANSPARENT, 1},
		{"listener IP_FREEBIND", tl, unix.SOL_IP, unix.IP_FREEBIND, 1},
		{"accepted SO_MARK", accepted, unix.SOL_SOCKET, unix.SO_MARK, 0x2a},
		{"accepted TCP_NODELAY", accepted, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		{"accepted SO_KEEPALIVE", accepted, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"accepted TCP_KEEPIDLE", accepted, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 180},
		{"accepted TCP_KEEPINTVL", accepted, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 180},
		{"accepted TCP_KEEPCNT", accepted, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9},
		{"dialed SO_MARK", dc, unix.SOL_SOCKET, unix.SO_MARK, 0x2a},
		{"dialed SO_REUSEPORT (listeners only)", dc, unix.SOL_SOCKET, unix.SO_REUSEPORT, 0},
		{"dialed IP_TRANSPARENT", dc, unix.SOL_IP, unix.IP_TRANSPARENT, 1},
		{"dialed TCP_NODELAY", dc, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		{"dialed SO_KEEPALIVE", dc, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"dialed TCP_KEEPIDLE", dc, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 180},
		{"dialed TCP_KEEPINTVL", dc, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 180},
		{"dialed TCP_KEEPCNT", dc, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9},
		{"dialed IP_BIND_ADDRESS_NO_PORT (not transparent ones)", dc, unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT, 0},
		{"listener IP_BIND_ADDRESS_NO_PORT (dialed only)", tl, unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT, 0},
		{"zero options: IP_BIND_ADDRESS_NO_PORT", noKA.(*net.TCPConn), unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1},
		{"zero options: no mark", noKA.(*net.TCPConn), unix.SOL_SOCKET, unix.SO_MARK, 0},
		{"zero options: keepalive off", noKA.(*net.TCPConn), unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0},
	}
	for _, tt := range tests {
		if got := sockopt(t, tt.conn, tt.level, tt.opt); got != tt.want {
			t.Errorf("%s = %d, want %d", tt.name, got, tt.want)
		}
	}
	if got, err := netutil.Mark(dc); err != nil || got != 0x2a {
		t.Errorf("Mark(dialed) = %#x, %v; want 0x2a", got, err)
	}
}

// TestListenerKeepalive: the keepalive settings live on the listening socket,
// which accepted connections inherit, and Go does not set them again on each
// accept (four setsockopt calls per connection saved). Zero fields take Go's
// defaults and negative ones leave the system's, as net.KeepAliveConfig says.
func TestListenerKeepalive(t *testing.T) {
	l := lab.New(t)
	ns := l.Netns("ka")
	cases := []struct {
		name                 string
		ka                   net.KeepAliveConfig
		idle, intvl, cnt, on int
	}{
		{"ztunnel defaults", netutil.DefaultKeepAlive(), 180, 180, 9, 1},
		{"zero fields take Go's defaults", net.KeepAliveConfig{Enable: true}, 15, 15, 9, 1},
		{"negative fields keep the system's", net.KeepAliveConfig{Enable: true, Idle: -1, Interval: 1500 * time.Millisecond, Count: -1}, 7200, 2, 9, 1},
		{"disabled", net.KeepAliveConfig{}, 7200, 75, 9, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lc := netutil.SocketOptions{Keepalive: c.ka}.ListenConfig()
			if lc.KeepAlive != -1 || lc.KeepAliveConfig.Enable {
				t.Errorf("ListenConfig leaves Go's per-accept keepalive on (KeepAlive %v, KeepAliveConfig %+v)", lc.KeepAlive, lc.KeepAliveConfig)
			}
			var ln net.Listener
			var dialed net.Conn
			if err := ns.Do(func() error {
				var err error
				if ln, err = lc.Listen(context.Background(), "tcp", "127.0.0.1:0"); err != nil {
					return err
				}
				dialed, err = net.Dial("tcp", ln.Addr().String())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			defer dialed.Close()
			accepted, err := ln.(*net.TCPListener).AcceptTCP()
			if err != nil {
				t.Fatal(err)
			}
			defer accepted.Close()
			for _, conn := range []struct {
				name string
				c    syscall.Conn
			}{{"listener", ln.(*net.TCPListener)}, {"accepted", accepted}} {
				for _, o := range []struct {
					name       string
					level, opt int
					want       int
				}{
					{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, c.on},
					{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, c.idle},
					{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, c.intvl},
					{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, c.cnt},
				} {
					if got := sockopt(t, conn.c, o.level, o.opt); got != o.want {
						t.Errorf("%s %s = %d, want %d", conn.name, o.name, got, o.want)
					}
				}
			}
		})
	}
}

// TestSocketOptionsIPv6 checks that IPv6 sockets get the IPV6_* variants.
func TestSocketOptionsIPv6(t *testing.T) {
	l := lab.New(t)
	ns := l.Netns("opts6")
	opts := netutil.SocketOptions{Transparent: true, Freebind: true}
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		lc := opts.ListenConfig()
		ln, err = lc.Listen(context.Background(), "tcp6", "[::1]:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tl := ln.(*net.TCPListener)
	if got := sockopt(t, tl, unix.SOL_IPV6, unix.IPV6_TRANSPARENT); got != 1 {
		t.Errorf("IPV6_TRANSPARENT = %d, want 1", got)
	}
	if got := sockopt(t, tl, unix.SOL_IPV6, unix.IPV6_FREEBIND); got != 1 {
		t.Errorf("IPV6_FREEBIND = %d, want 1", got)
	}
}

// netnsInode returns the inode of the calling thread's network namespace.
func netnsInode(t *testing.T) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func fdInode(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestInNetns(t *testing.T) {
	l := lab.New(t)
	ns := l.Netns("inns")
	f, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	target := fdInode(t, int(f.Fd()))

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := netnsInode(t)
	if before == target {
		t.Fatal("test runs inside the lab namespace already")
	}
	cur, err := netutil.CurrentNetns()
	if err != nil {
		t.Fatal(err)
	}
	if got := fdInode(t, cur); got != before {
		t.Errorf("CurrentNetns inode = %d, want %d", got, before)
	}
	unix.Close(cur)

	var inside uint64
	var ln net.Listener
	err = netutil.InNetns(int(f.Fd()), func() error {
		inside = netnsInode(t)
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if inside != target {
		t.Errorf("fn ran in netns inode %d, want %d", inside, target)
	}
	if after := netnsInode(t); after != before {
		t.Fatalf("caller's thread is in netns %d after InNetns, want %d", after, before)
	}

	// The listener lives in the namespace: unreachable from here, reachable there. A dial from
	// here may still connect, to another process's listener on the same loopback port (test
	// packages run in parallel), so what fails the test is our listener accepting it: a
	// connection a dial completed is already in its accept queue.
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(200 * time.Millisecond))
		if a, err := ln.Accept(); err == nil {
			a.Close()
			t.Fatal("listener created in the namespace is reachable from the original one")
		}
		ln.(*net.TCPListener).SetDeadline(time.Time{})
	}
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := ns.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("listener not reachable inside its namespace: %v", err)
	}
	c.Close()

	// fn's error comes back wrapped-through.
	sentinel := errors.New("sentinel")
	if err := netutil.InNetns(int(f.Fd()), func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("InNetns error = %v, want the sentinel", err)
	}
	// A descriptor that is not a netns: error, fn not run.
	ran := false
	if err := netutil.InNetns(int(os.Stdin.Fd()), func() error { ran = true; return nil }); err == nil || ran {
		t.Errorf("InNetns(stdin) = %v, ran=%v; want an error and fn not run", err, ran)
	}
	// A panic reaches the caller, and the thread state stays clean.
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("recovered %v, want boom", p)
			}
		}()
		netutil.InNetns(int(f.Fd()), func() error { panic("boom") })
	}()
}

// TestInNetnsNoThreadLeak runs many InNetns calls at once, then checks that
// every thread of the process is in the original namespace.
func TestInNetnsNoThreadLeak(t *testing.T) {
	l := lab.New(t)
	ns := l.Netns("leak")
	f, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	orig := netnsInode(t)

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			errs <- netutil.InNetns(int(f.Fd()), func() error {
				time.Sleep(time.Millisecond) // let the scheduler move other goroutines around
				return nil
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tasks {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			continue // the thread exited meanwhile
		}
		if st.Ino != orig {
			t.Errorf("%s is in netns %d, want %d", p, st.Ino, orig)
		}
	}
}

// TestDialLeavesPortToConnect: a dialed socket bound to port 0 gets its port
// from connect, unique per destination, not from bind, unique per address. In
// a namespace with ten ephemeral ports, fifteen connections to two listeners
// must all succeed, from a source address and from none (net.Dialer.DialTCP
// binds the zero address when it is given no local address). A plain dialer
// runs out at the eleventh, which shows that the namespace is as narrow as
// meant; so does a transparent one, whose port bind chooses on purpose (see
// SocketOptions.Dialer). Each case has a namespace of its own: closed
// connections keep their ports in TIME_WAIT.
func TestDialLeavesPortToConnect(t *testing.T) {
	opts := netutil.SocketOptions{Mark: 0x2a}
	for _, fam := range []string{"127.0.0.1", "::1"} {
		lo := netip.MustParseAddr(fam)
		for _, tc := range []struct {
			name  string
			d     *net.Dialer
			laddr netip.AddrPort
			want  int // connections that must succeed; 0: the dialer must fail by the eleventh
		}{
			{"source address", opts.Dialer(netip.AddrPort{}), netip.AddrPortFrom(lo, 0), 15},
			{"no source address", opts.Dialer(netip.AddrPort{}), netip.AddrPort{}, 15},
			{"plain dialer, source address", &net.Dialer{}, netip.AddrPortFrom(lo, 0), 0},
			{"transparent dialer, source address", netutil.SocketOptions{Mark: 0x2a, Transparent: true}.Dialer(netip.AddrPort{}), netip.AddrPortFrom(lo, 0), 0},
		} {
			t.Run(fam+" "+tc.name, func(t *testing.T) {
				ns := lab.New(t).Netns("ports")
				// One range for both families: the ipv4 sysctl is the only one.
				ns.MustRun(t, "sh", "-c", "echo 40000 40009 > /proc/sys/net/ipv4/ip_local_port_range")
				var dsts [2]netip.AddrPort
				for i := range dsts {
					ln := ns.Listen(t, "tcp", netip.AddrPortFrom(lo, uint16(8080+i)).String())
					dsts[i] = ln.Addr().(*net.TCPAddr).AddrPort()
				}
				tc.d.Timeout = 5 * time.Second
				var conns []net.Conn
				defer func() {
					for _, c := range conns {
						c.Close()
					}
				}()
				err := ns.Do(func() error {
					for i := range 15 {
						c, err := tc.d.DialTCP(context.Background(), "tcp", tc.laddr, dsts[i%2])
						if err != nil {
							return err
						}
						conns = append(conns, c)
					}
					return nil
				})
				switch {
				case tc.want > 0 && err != nil:
					t.Errorf("%d connections in a 10-port range, then %v; want %d (ports shared across destinations)", len(conns), err, tc.want)
				case tc.want == 0 && (err == nil || len(conns) > 10):
					t.Errorf("made %d connections in a 10-port range (err %v); want the eleventh to fail", len(conns), err)
				}
			})
		}
	}
}
