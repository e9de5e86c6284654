package netutil

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// ErrUnsupported is returned on systems other than Linux by every operation
// that needs a Linux-only socket option or namespace call.
var ErrUnsupported = errors.New("netutil: not supported on this operating system")

// ztunnel's keepalive defaults (its SocketConfig): probes on, first probe
// after 180s idle, then every 180s, give up after 9 unanswered probes.
const (
	defaultKeepAliveIdle     = 180 * time.Second
	defaultKeepAliveInterval = 180 * time.Second
	defaultKeepAliveCount    = 9
)

// DefaultKeepAlive returns ztunnel's keepalive defaults (KEEPALIVE_ENABLED=true,
// KEEPALIVE_TIME=180s, KEEPALIVE_INTERVAL=180s, KEEPALIVE_RETRIES=9).
func DefaultKeepAlive() net.KeepAliveConfig {
	return net.KeepAliveConfig{
		Enable:   true,
		Idle:     defaultKeepAliveIdle,
		Interval: defaultKeepAliveInterval,
		Count:    defaultKeepAliveCount,
	}
}

// SocketOptions describes the options applied to every socket a listener or
// dialer made from it creates. The zero value sets nothing and disables TCP
// keepalive; a SocketOptions is a plain value, safe to copy and share.
type SocketOptions struct {
	// Mark is SO_MARK (the fwmark routing and iptables see). Zero leaves the
	// socket unmarked.
	Mark uint32

	// Transparent sets IP_TRANSPARENT (IPV6_TRANSPARENT on IPv6 sockets). A
	// listener then accepts connections addressed to foreign addresses
	// (TPROXY); a dialer may bind a foreign source address, i.e. connect from
	// the client's own IP.
	Transparent bool

	// Freebind sets IP_FREEBIND (IPV6_FREEBIND): bind to an address that is
	// not (yet) configured on the host.
	Freebind bool

	// ReusePort sets SO_REUSEPORT on listening sockets so that several
	// listeners (an old and a new proxy during a rollout) share a port. It is
	// ignored by Dialer.
	ReusePort bool

	// NoDelay sets TCP_NODELAY on listening TCP sockets, which accepted
	// connections inherit. Go enables TCP_NODELAY on every TCP connection it
	// creates anyway (dialed ones included), so false does not disable it:
	// call (*net.TCPConn).SetNoDelay(false) for that.
	NoDelay bool

	// Keepalive configures TCP keepalive on dialed and accepted connections
	// (net.KeepAliveConfig semantics). Keepalive.Enable == false disables
	// keepalive probes, overriding Go's 15s default. Use DefaultKeepAlive for
	// ztunnel's defaults.
	Keepalive net.KeepAliveConfig
}

// ListenConfig returns a net.ListenConfig whose Control applies o to each
// listening socket before bind, and which gives accepted connections
// o.Keepalive. Accepted connections inherit SO_MARK and TCP_NODELAY from the
// listener, and on Linux the keepalive settings too (set once on the
// listening socket rather than per accept). It also works for ListenPacket
// (UDP), where NoDelay and Keepalive do not apply.
func (o SocketOptions) ListenConfig() net.ListenConfig {
	lc := net.ListenConfig{Control: o.listenControl}
	if o.Keepalive.Enable && !keepaliveOnListener {
		lc.KeepAliveConfig = o.Keepalive
	} else {
		// Go's own per-accept keepalive stays off: either o disables it,
		// or the listener carries it (apply).
		lc.KeepAlive = -1
	}
	return lc
}

// Dialer returns a TCP dialer whose Control applies o (except ReusePort) to
// each socket before bind and connect. When local is valid the socket is bound
// to it (port 0 picks an ephemeral port); with Transparent (and Freebind) the
// address may be foreign, which is how an inbound connection to an application
// is made from the client's own IP. A 4in6 local address is unmapped first.
// On Linux, without Transparent, a local port of 0 (in local, or in a DialTCP
// laddr, valid or not) is chosen by connect, not by bind
// (IP_BIND_ADDRESS_NO_PORT): a source port then only has to be unique per
// destination. A transparent dialer's port is chosen by bind, at random, so
// that it does not take ports from the stretch the client it speaks for uses.
// The dialer has no timeout: set Timeout or pass a context with a deadline.
func (o SocketOptions) Dialer(local netip.AddrPort) *net.Dialer {
	d := &net.Dialer{
		Control:         o.dialControl,
		KeepAliveConfig: o.Keepalive,
	}
	if !o.Keepalive.Enable {
		d.KeepAlive = -1
	}
	if local.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(local.Addr().Unmap(), local.Port()))
	}
	return d
}

func (o SocketOptions) listenControl(network, address string, c syscall.RawConn) error {
	return o.control(c, network, true)
}

func (o SocketOptions) dialControl(network, address string, c syscall.RawConn) error {
	return o.control(c, network, false)
}

// control runs apply on the raw socket; listener says whether it is a
// listening socket (SO_REUSEPORT and the inherited options only apply to
// those).
func (o SocketOptions) control(c syscall.RawConn, network string, listener bool) error {
	var serr error
	if err := c.Control(func(fd uintptr) { serr = o.apply(int(fd), network, listener) }); err != nil {
		return err
	}
	return serr
}
