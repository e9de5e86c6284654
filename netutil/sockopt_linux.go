package netutil

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Netfilter's getsockopt names for the pre-NAT destination
// (linux/netfilter_ipv4.h SO_ORIGINAL_DST, linux/netfilter_ipv6/ip6_tables.h
// IP6T_SO_ORIGINAL_DST); both are 80, at levels SOL_IP and SOL_IPV6.
const (
	soOriginalDst     = 80
	ip6tSoOriginalDst = 80
)

// keepaliveOnListener: on Linux an accepted TCP socket inherits SO_KEEPALIVE
// and TCP_KEEPIDLE/KEEPINTVL/KEEPCNT from its listener, so ListenConfig sets
// them once on the listening socket instead of with four setsockopt calls on
// every accepted connection.
const keepaliveOnListener = true

// apply sets o on the socket fd. It runs inside RawConn.Control; network is
// the name Control was given ("tcp4", "udp6", ...).
func (o SocketOptions) apply(fd int, network string, listener bool) error {
	v6, stream, err := sockKind(fd, network)
	if err != nil {
		return err
	}
	if o.Mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(o.Mark)); err != nil {
			return sockoptErr("set", "SO_MARK", err)
		}
	}
	if o.ReusePort && listener {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return sockoptErr("set", "SO_REUSEPORT", err)
		}
	}
	if o.Transparent {
		level, opt, name := unix.SOL_IP, unix.IP_TRANSPARENT, "IP_TRANSPARENT"
		if v6 {
			level, opt, name = unix.SOL_IPV6, unix.IPV6_TRANSPARENT, "IPV6_TRANSPARENT"
		}
		if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
			return sockoptErr("set", name, err)
		}
	}
	if o.Freebind {
		level, opt, name := unix.SOL_IP, unix.IP_FREEBIND, "IP_FREEBIND"
		if v6 {
			level, opt, name = unix.SOL_IPV6, unix.IPV6_FREEBIND, "IPV6_FREEBIND"
		}
		if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
			return sockoptErr("set", name, err)
		}
	}
	// A dialed socket may be bound before it connects: net.Dialer.DialTCP
	// binds the zero address when it is given no local address. Without
	// IP_BIND_ADDRESS_NO_PORT a bind to port 0 takes a port of that address
	// for the socket's whole life, TIME_WAIT included, whatever the
	// destination: all destinations share one ephemeral range, and each bind
	// searches it, slower the fuller it is. With it, connect picks the port,
	// and any port will do whose 4-tuple is free.
	//
	// Not for a transparent socket, which binds the address of a client
	// whose own connections may pass through this namespace (plaintext ones,
	// captured on their way to the application). Connect's choice starts
	// from a hash of the addresses and the destination port, the client's
	// own, and moves on from there as the client's own connects do: the two
	// take ports from one short stretch, and a later connection of the
	// client can get a port that such a dial holds here, whose SYN then
	// meets the application's end of the dial and is reset. Bind's choice
	// is random over the range, as the Rust ztunnel's is.
	if stream && !listener && !o.Transparent {
		if err := unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
			return sockoptErr("set", "IP_BIND_ADDRESS_NO_PORT", err)
		}
	}
	// Dialed connections get TCP_NODELAY from Go itself, right after
	// connect; a listener's is inherited by what it accepts.
	if o.NoDelay && stream && listener {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			return sockoptErr("set", "TCP_NODELAY", err)
		}
	}
	if o.Keepalive.Enable && stream && listener {
		if err := setKeepalive(fd, o.Keepalive); err != nil {
			return err
		}
	}
	return nil
}

// sockKind says whether fd is an IPv6 socket and a stream socket: from
// Control's network name when it has its usual 4/6 suffix, from getsockopt
// otherwise.
func sockKind(fd int, network string) (v6, stream bool, err error) {
	switch network {
	case "tcp4", "udp4":
		return false, network == "tcp4", nil
	case "tcp6", "udp6":
		return true, network == "tcp6", nil
	}
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return false, false, sockoptErr("get", "SO_DOMAIN", err)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return false, false, sockoptErr("get", "SO_TYPE", err)
	}
	return domain == unix.AF_INET6, typ == unix.SOCK_STREAM, nil
}

// setKeepalive applies ka with net.KeepAliveConfig's meaning: a zero field
// takes Go's default (15 s, 15 s, 9 probes), a negative one leaves the
// system's value; durations round up to whole seconds.
func setKeepalive(fd int, ka net.KeepAliveConfig) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1); err != nil {
		return sockoptErr("set", "SO_KEEPALIVE", err)
	}
	secs := func(d time.Duration) int {
		if d == 0 {
			d = 15 * time.Second
		}
		return int((d + time.Second - 1) / time.Second)
	}
	count := ka.Count
	if count == 0 {
		count = 9
	}
	opts := []struct {
		opt  int
		name string
		v    int
		skip bool
	}{
		{unix.TCP_KEEPIDLE, "TCP_KEEPIDLE", secs(ka.Idle), ka.Idle < 0},
		{unix.TCP_KEEPINTVL, "TCP_KEEPINTVL", secs(ka.Interval), ka.Interval < 0},
		{unix.TCP_KEEPCNT, "TCP_KEEPCNT", count, ka.Count < 0},
	}
	for _, o := range opts {
		if o.skip {
			continue
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, o.opt, o.v); err != nil {
			return sockoptErr("set", o.name, err)
		}
	}
	return nil
}

func sockoptErr(op, name string, err error) error {
	return fmt.Errorf("netutil: %s %s: %w", op, name, os.NewSyscallError(op+"sockopt", err))
}

// Mark returns the SO_MARK of a socket (a *net.TCPConn, *net.TCPListener,
// *net.UDPConn, ...).
func Mark(c syscall.Conn) (uint32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("netutil: mark: %w", err)
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK) }); err != nil {
		return 0, fmt.Errorf("netutil: mark: %w", err)
	}
	if serr != nil {
		return 0, sockoptErr("get", "SO_MARK", serr)
	}
	return uint32(v), nil
}

// OriginalDst returns the destination a connection had before netfilter
// redirected it (iptables REDIRECT/DNAT): SO_ORIGINAL_DST at SOL_IP first, then
// IP6T_SO_ORIGINAL_DST at SOL_IPV6, so a dual-stack listener serves both
// families. The address is unmapped (an IPv4 destination is never returned as
// ::ffff:a.b.c.d). A connection conntrack tracks but did not NAT reports its
// own destination (its local address); one conntrack does not track (no
// netfilter NAT in its namespace) yields an error, and callers fall back to
// the local address as ztunnel does.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("netutil: original dst: %w", err)
	}
	var ap netip.AddrPort
	var serr error
	cerr := rc.Control(func(fd uintptr) {
		var err4 error
		ap, err4 = originalDst(int(fd), unix.SOL_IP, soOriginalDst)
		if err4 == nil {
			return
		}
		var err6 error
		ap, err6 = originalDst(int(fd), unix.SOL_IPV6, ip6tSoOriginalDst)
		if err6 != nil {
			serr = fmt.Errorf("netutil: original dst: SO_ORIGINAL_DST: %w; IP6T_SO_ORIGINAL_DST: %w", err4, err6)
		}
	})
	if cerr != nil {
		return netip.AddrPort{}, fmt.Errorf("netutil: original dst: %w", cerr)
	}
	return ap, serr
}

// ReadReady reads into p what c has already received, without waiting: 0
// and nil when nothing has arrived. An end of stream is not reported: a TCP
// socket keeps returning it, so the next Read finds it. A pending socket
// error (a reset) is, since reading consumes it.
func ReadReady(c *net.TCPConn, p []byte) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), p)
		return true // never wait
	})
	switch {
	case err != nil:
		return 0, err
	case rerr == unix.EAGAIN || rerr == unix.EINTR:
		return 0, nil
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	}
	return max(n, 0), nil
}

// originalDst reads one of the two original-destination options. The kernel
// copies a sockaddr_in (16 bytes) or sockaddr_in6 (28 bytes) and only checks
// that the buffer is at least that large. The buffer is on the stack: x/sys's
// getters return a new value on the heap, 32 bytes of garbage per connection.
func originalDst(fd, level, opt int) (netip.AddrPort, error) {
	var buf [32]byte
	n := uint32(len(buf))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return netip.AddrPort{}, os.NewSyscallError("getsockopt", errno)
	}
	return parseSockaddr(buf[:min(int(n), len(buf))])
}

var errBadSockaddr = errors.New("netutil: malformed sockaddr")

// parseSockaddr decodes a Linux sockaddr_in or sockaddr_in6 in its wire layout
// (family in host byte order, port and address in network byte order) and
// returns the unmapped address and port. The IPv6 scope id is dropped: original
// destinations are never link-local in practice and netip zones are names.
func parseSockaddr(b []byte) (netip.AddrPort, error) {
	if len(b) < 2 {
		return netip.AddrPort{}, errBadSockaddr
	}
	switch binary.NativeEndian.Uint16(b) {
	case unix.AF_INET:
		if len(b) < 8 {
			return netip.AddrPort{}, errBadSockaddr
		}
		port := binary.BigEndian.Uint16(b[2:4])
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port), nil
	case unix.AF_INET6:
		if len(b) < 24 {
			return netip.AddrPort{}, errBadSockaddr
		}
		port := binary.BigEndian.Uint16(b[2:4])
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), port), nil
	default:
		return netip.AddrPort{}, fmt.Errorf("%w: family %d", errBadSockaddr, binary.NativeEndian.Uint16(b))
	}
}

// CurrentNetns opens the network namespace of the calling OS thread
// (/proc/thread-self/ns/net). Outside InNetns every thread of the process is in
// the process's namespace, so this is the process's netns. The caller owns the
// returned descriptor and must close it.
func CurrentNetns() (fd int, err error) {
	fd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("netutil: open current netns: %w", &os.PathError{Op: "open", Path: "/proc/thread-self/ns/net", Err: err})
	}
	return fd, nil
}

// inNetnsResult carries fn's outcome from the locked goroutine to the caller.
type inNetnsResult struct {
	err      error
	panicked bool
	panicVal any
}

// InNetns runs fn inside the network namespace netnsFD (an open
// /proc/<pid>/ns/net or /var/run/netns/<name>) and returns its error.
//
// fn runs on a new goroutine locked to its OS thread, which setns(2) moves into
// the namespace and moves back afterwards; InNetns waits for it. Sockets fn
// creates belong to the namespace for their whole life, whichever thread uses
// them later. Goroutines fn starts run on other threads, in the original
// namespace, so fn must create its sockets itself (a Dial to an IP literal or
// a Listen does). If the switch back fails the goroutine exits still locked,
// which makes the runtime terminate the thread: no thread is ever left in the
// wrong namespace. A panic in fn is re-raised in the caller.
func InNetns(netnsFD int, fn func() error) error {
	done := make(chan inNetnsResult, 1)
	go func() {
		runtime.LockOSThread()
		// Unlock only once the thread is known to be in its original netns;
		// every other path leaves it locked so the thread dies with us.
		orig, err := CurrentNetns()
		if err != nil {
			runtime.UnlockOSThread()
			done <- inNetnsResult{err: err}
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(netnsFD, unix.CLONE_NEWNET); err != nil {
			done <- inNetnsResult{err: fmt.Errorf("netutil: enter netns: %w", os.NewSyscallError("setns", err))}
			return
		}
		var r inNetnsResult
		func() {
			defer func() {
				if p := recover(); p != nil {
					r.panicked, r.panicVal = true, p
				}
			}()
			r.err = fn()
		}()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			r.err = errors.Join(r.err, fmt.Errorf("netutil: restore netns (thread discarded): %w", os.NewSyscallError("setns", err)))
		} else {
			runtime.UnlockOSThread()
		}
		done <- r
	}()
	r := <-done
	if r.panicked {
		panic(r.panicVal)
	}
	return r.err
}
