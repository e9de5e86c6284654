// Package proxy is the data path of one workload's (dedicated mode) or one pod's (shared mode)
// traffic: the outbound capture listener (15001), the inbound HBONE listener (15008), the inbound
// plaintext capture listener (15006) and the optional SOCKS5 listener (15080). It wires the
// workload store, the certificate manager, the policy engine and the HBONE engine together; none
// of those know about each other.
//
// Ownership: a Proxy owns its listeners, its HBONE pool and server, and every goroutine it starts
// (one goroutine per connection, tracked by a WaitGroup; the accept loops, each a
// netutil.IdleLoop that holds a goroutine only while its listener is busy; the byte flusher, a
// timer). Drain ends them all.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/internal/workers"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/netutil"
	"github.com/ztunnel-go/ztunnel/tls/certs"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	"github.com/ztunnel-go/ztunnel/workload"
)

// Well-known ports of ztunnel.
const (
	OutboundPort     = 15001
	InboundPlainPort = 15006
	InboundHBONEPort = 15008
	SOCKS5Port       = 15080
)

// Config is what a Proxy needs. Fields are read once by New.
type Config struct {
	Store   *workload.Store // workloads, services, policies; required
	Certs   *certs.Manager  // workload certificates; required
	Metrics *metrics.Registry

	// OnDemand asks the control plane about an address the store does not know (XDS_ON_DEMAND)
	// and returns once it answered; the outbound path then looks the address up again. Nil means
	// unknown addresses are passed through at once.
	OnDemand func(ctx context.Context, network string, ip netip.Addr) error
	// LookupHost resolves the hostname of a workload istiod knows by hostname only (a
	// ServiceEntry endpoint with DNS resolution), when a connection goes to it. The returned
	// slice is the caller's. Nil means Go's resolver (/etc/resolv.conf, uncached), for both
	// address families; the app sets dns.Resolver, which caches as ztunnel does.
	LookupHost func(ctx context.Context, host string) ([]netip.Addr, error)

	// Self is the identity the proxy falls back to when the store does not know the local
	// workload (dedicated mode: from PROXY_WORKLOAD_INFO). Zero means no fallback.
	Self identity.ID
	// Network is the network of the proxy's workloads ("" is the default network).
	Network string

	// ListenIP is the address the capture listeners bind: "::" or "0.0.0.0" (IPV6_ENABLED=false).
	ListenIP netip.Addr
	// SOCKS5 enables the SOCKS5 listener on 127.0.0.1:15080.
	SOCKS5 bool
	// Ports overrides the well-known ports (tests run several proxies on one loopback).
	// Zero fields mean ztunnel's ports.
	Ports Ports

	// Socket options of listeners and upstream sockets (mark, transparent, keepalive...).
	Socket netutil.SocketOptions
	// Netns, when set, runs fn inside the network namespace the proxy serves (shared mode: the
	// pod's), so listeners and upstream sockets are created there. Nil means the process's own.
	Netns func(fn func() error) error
	// OrigSrc makes inbound connections to the app come from the client's IP (IP_TRANSPARENT).
	OrigSrc bool
	// LocalhostAppTunnel sends the connections of a workload whose application tunnel speaks
	// PROXY to the workload's loopback, from loopback (LOCALHOST_APP_TUNNEL): the PROXY header
	// carries the client's address, and only ztunnel reaches the tunnel's port.
	LocalhostAppTunnel bool
	// Baggage is ztunnel's enhanced baggage (ENABLE_RESPONSE_BAGGAGE): inbound HBONE answers 200
	// with the destination workload's baggage header, and a client the store has no record of
	// (one behind another network's gateway) is described in telemetry by its request's baggage.
	// Outbound requests carry the client's baggage either way.
	Baggage bool
	// EarlyData sends a client's bytes with and after the CONNECT request instead of after its
	// 200: what the client has written by the time its outbound connection is handled (at most
	// earlyMax bytes, read without waiting) goes as DATA in the same write as the request, and
	// the relay starts as soon as the request is out (hbone.Pool.Open), so what the client
	// writes next leaves at once too. The destination's ztunnel holds those bytes until it has
	// authorized the connection and connected to the app, and a client that speaks first saves
	// a round trip between the nodes. A refused request is still logged and counted as a failed
	// connect. Only for tunnels to a workload's own ztunnel, never to a waypoint
	// (ZTUNNEL_HBONE_EARLY_DATA).
	EarlyData bool

	// HBONE engine settings and pool limits.
	HBONE            hbone.Config
	PoolMaxStreams   int
	PoolIdleTimeout  time.Duration
	HandshakeTimeout time.Duration // TLS handshake on 15008 (slowloris bound); 0 = 15 s
	ConnectTimeout   time.Duration // upstream connect; 0 = 10 s
	TerminationGrace time.Duration // how long Drain waits before closing what is left; 0 = 5 s
	// Limit caps the open connections of every proxy sharing it (ZTUNNEL_MAX_CONNECTIONS);
	// connections beyond it are reset at accept. Nil means unlimited.
	Limit             *ConnLimit
	ClusterID         string
	Logger, AccessLog *slog.Logger
}

// Ports are the listener ports of a proxy and the HBONE port it dials on remote workloads.
type Ports struct {
	Outbound, InboundPlain, InboundHBONE, SOCKS5 uint16
	// RemoteHBONE is the port HBONE tunnels are dialed on; 0 = 15008.
	RemoteHBONE uint16
}

func (p *Ports) setDefaults() {
	def := func(v *uint16, d uint16) {
		if *v == 0 {
			*v = d
		}
	}
	def(&p.Outbound, OutboundPort)
	def(&p.InboundPlain, InboundPlainPort)
	def(&p.InboundHBONE, InboundHBONEPort)
	def(&p.SOCKS5, SOCKS5Port)
	def(&p.RemoteHBONE, InboundHBONEPort)
}

// Proxy serves the listeners of one network namespace.
type Proxy struct {
	cfg    Config // immutable after New
	log    *slog.Logger
	access *slog.Logger

	pool   *hbone.Pool
	server *hbone.Server
	conns  *tracker

	// anon stands for a client whose workload is unknown in outbound routing: on the proxy's
	// network, nothing else known. Never modified.
	anon *workload.Workload

	// dialer and dialerFrom (transparent, for a foreign local address) carry the socket
	// options of every upstream dial; built once, shared by all (net.Dialer is safe for
	// concurrent use), the local address is DialTCP's argument.
	dialer, dialerFrom *net.Dialer

	// Owned by Listen/Drain under mu.
	mu       sync.Mutex
	accepts  []*acceptor // one per listener: outbound, inbound plaintext, inbound HBONE[, socks5]
	draining bool

	wg sync.WaitGroup // connection goroutines

	// flush runs flushTick every flushInterval while connections are tracked, until Drain
	// sets flushStopped; flushMu is held by a running tick, so that once Drain has taken it no
	// tick runs any more. A tick that finds no connection sets flushIdle and does not arm the
	// next one; track arms it again (an idle pod's proxy has no timer to wake for).
	flushMu      sync.Mutex
	flush        *time.Timer
	flushStopped bool        // guarded by flushMu
	flushIdle    atomic.Bool // set by a tick that found no connection; cleared under flushMu

	// handshakes bounds TLS handshakes on 15008 beyond their own timeout: Drain cancels it at
	// once, since a connection that has not finished its handshake carries nothing to drain.
	handshakes      context.Context
	cancelHandshake context.CancelFunc

	// fds refuses accepted connections that would leave fewer than fdHeadroom descriptors
	// free.
	fds *fdGuard

	// tunnels are the mTLS connections to judge again when the revocation lists change
	// (revoke.go); empty without lists.
	tunnels tunnelSet
}

// flushInterval is how often the bytes of long connections reach the metrics.
var flushInterval = 5 * time.Second

// acceptParkAfter is how long an accept loop waits for the next connection before it gives
// its goroutine up (netutil.IdleLoop): a pod whose listeners are quiet holds no goroutine for
// them. A parked listener's next connection costs a wake-up of the epoll loop and a goroutine
// from internal/workers, a few microseconds. A variable for tests.
var acceptParkAfter = time.Second

// New validates cfg and builds a Proxy; it opens no socket.
func New(cfg Config) (*Proxy, error) {
	if cfg.Store == nil || cfg.Certs == nil {
		return nil, errors.New("proxy: Store and Certs are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AccessLog == nil {
		cfg.AccessLog = cfg.Logger
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New("ztunnel", "unknown")
	}
	if cfg.LookupHost == nil {
		cfg.LookupHost = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if !cfg.ListenIP.IsValid() {
		cfg.ListenIP = netip.IPv6Unspecified()
	}
	cfg.Ports.setDefaults()
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 15 * time.Second
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.TerminationGrace == 0 {
		cfg.TerminationGrace = 5 * time.Second
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger, access: cfg.AccessLog, conns: newTracker(),
		fds: newFDGuard(), anon: &workload.Workload{Network: cfg.Network}}
	from := cfg.Socket
	from.Transparent, from.Freebind = true, true
	p.dialer, p.dialerFrom = cfg.Socket.Dialer(netip.AddrPort{}), from.Dialer(netip.AddrPort{})
	p.handshakes, p.cancelHandshake = context.WithCancel(context.Background())
	p.pool = hbone.NewPool(hbone.PoolConfig{
		Dial:              p.dialHBONE,
		Closed:            p.untrackTunnel,
		MaxStreamsPerConn: cfg.PoolMaxStreams,
		IdleTimeout:       cfg.PoolIdleTimeout,
		Config:            cfg.HBONE,
	})
	p.server = &hbone.Server{Config: cfg.HBONE, Handler: hbone.HandlerFunc(p.serveHBONE)}
	return p, nil
}

// Listen binds every listener, so that bind errors surface before the proxy reports ready.
func (p *Proxy) Listen(ctx context.Context) error {
	lc := p.cfg.Socket.ListenConfig()
	type spec struct {
		addr     netip.AddrPort
		reporter string
		handle   func(net.Conn, *connState)
	}
	src, dst := metrics.ReporterSource, metrics.ReporterDestination
	specs := []spec{
		{netip.AddrPortFrom(p.cfg.ListenIP, p.cfg.Ports.Outbound), src, p.handleOutbound},
		{netip.AddrPortFrom(p.cfg.ListenIP, p.cfg.Ports.InboundPlain), dst, p.handleInboundPlain},
		{netip.AddrPortFrom(p.cfg.ListenIP, p.cfg.Ports.InboundHBONE), dst, p.handleInboundHBONE},
	}
	if p.cfg.SOCKS5 {
		specs = append(specs, spec{netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), p.cfg.Ports.SOCKS5), src, p.handleSOCKS5})
	}
	var ls []net.Listener
	var accepts []*acceptor
	for _, s := range specs {
		var l net.Listener
		err := p.inNetns(func() (err error) {
			l, err = lc.Listen(ctx, "tcp", s.addr.String())
			return err
		})
		var a *acceptor
		if err == nil {
			ls = append(ls, l)
			a, err = p.newAcceptor(l.(*net.TCPListener), s.reporter, s.handle)
		}
		if err != nil {
			for _, o := range ls {
				o.Close()
			}
			return fmt.Errorf("listen %s: %w", s.addr, err)
		}
		accepts = append(accepts, a)
	}
	p.mu.Lock()
	p.accepts = accepts
	p.mu.Unlock()
	for _, a := range accepts {
		a.loop.Start()
	}
	p.flushMu.Lock()
	p.flush = time.AfterFunc(flushInterval, p.flushTick)
	p.flushMu.Unlock()
	p.log.Info("listeners ready", "outbound", ls[0].Addr().String(), "inbound", ls[2].Addr().String(),
		"inbound_plaintext", ls[1].Addr().String())
	return nil
}

// inNetns runs fn in the proxy's network namespace.
func (p *Proxy) inNetns(fn func() error) error {
	if p.cfg.Netns == nil {
		return fn()
	}
	return p.cfg.Netns(fn)
}

// Addrs returns the bound listener addresses (outbound, inbound plaintext, inbound HBONE[, socks5]).
func (p *Proxy) Addrs() []net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]net.Addr, len(p.accepts))
	for i, a := range p.accepts {
		out[i] = a.l.Addr()
	}
	return out
}

// flushTick adds the bytes of live connections to the metrics, so long connections show up
// before they close, and arms the next tick unless Drain stopped them.
func (p *Proxy) flushTick() {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	if p.flushStopped {
		return
	}
	// flushIdle is set before the tracker is read: a connection that track adds after the
	// read finds it set, and arms the timer once this tick has released flushMu.
	p.flushIdle.Store(true)
	if p.conns.flushBytes() == 0 {
		return
	}
	p.flushIdle.Store(false)
	p.flush.Reset(flushInterval)
}

// track adds st to the connections that drain, policy re-evaluation and the byte flusher see,
// and arms the flusher when its last tick found none.
func (p *Proxy) track(st *connState) {
	p.conns.add(st)
	if !p.flushIdle.Load() {
		return
	}
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	if p.flushIdle.Load() && !p.flushStopped {
		p.flushIdle.Store(false)
		p.flush.Reset(flushInterval)
	}
}

// stopFlush stops the byte flusher; once it returns, no tick runs.
func (p *Proxy) stopFlush() {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	p.flushStopped = true
	if p.flush != nil {
		p.flush.Stop()
	}
}

// acceptor is one listener's accept loop. It accepts until the listener closes, backing off on
// temporary errors such as file-descriptor exhaustion so established connections keep flowing.
// Each accepted socket counts in istio_tcp_sockets_open, and holds a connection-limit slot,
// until its job ends: when its handler returns, or when the relay it handed the connection to
// ends (connState.end). Its loop owns the goroutine that accepts; Drain closes it.
type acceptor struct {
	p        *Proxy
	l        *net.TCPListener
	loop     *netutil.IdleLoop
	reporter string
	socket   socketGauge
	handle   func(net.Conn, *connState)
	probe    *fdProbe // used by the accepting goroutine only
}

func (p *Proxy) newAcceptor(l *net.TCPListener, reporter string, handle func(net.Conn, *connState)) (*acceptor, error) {
	a := &acceptor{p: p, l: l, reporter: reporter, socket: sourceSocket, handle: handle, probe: newFDProbe()}
	if reporter == metrics.ReporterDestination {
		a.socket = destinationSocket
	}
	var err error
	a.loop, err = netutil.NewIdleLoop(l, l.SetDeadline, acceptParkAfter, a.serve)
	return a, err
}

// serve accepts for one period of a.loop: it returns when the listener's deadline passes or
// the listener closes.
func (a *acceptor) serve() error {
	p := a.p
	var delay time.Duration
	for {
		c, err := a.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
				return err
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			p.log.Warn("accept failed, backing off", "addr", a.l.Addr().String(), "err", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		a.loop.Active()
		if !p.fds.admit(c, a.probe, p.log, a.l) {
			continue
		}
		if !p.cfg.Limit.acquire() {
			p.cfg.Limit.logRefusal(p.log, a.l.Addr().String(), c.RemoteAddr().String())
			refuse(c)
			continue
		}
		p.wg.Add(1)
		p.cfg.Metrics.SocketOpened(a.reporter)
		st := &connState{p: p, limited: true, socket: a.socket}
		handle := a.handle
		workers.Go(func() { // owned by p.wg, through st
			handle(c, st)
			if !st.kept {
				st.end()
			}
		})
	}
}

// Drain stops accepting, sends GOAWAY on inbound HBONE connections, waits for connections to
// finish until the termination grace period or ctx ends, then closes what is left and waits for
// every goroutine of the proxy. A ctx that has already ended stops the proxy at once.
func (p *Proxy) Drain(ctx context.Context) error {
	immediate := ctx.Err() != nil // the caller wants every connection closed now
	p.mu.Lock()
	p.draining = true
	accepts := p.accepts
	p.accepts = nil
	p.mu.Unlock()
	p.stopFlush()
	for _, a := range accepts {
		a.loop.Close(a.l.Close)
	}
	p.cancelHandshake()
	ctx, cancel := context.WithTimeout(ctx, p.cfg.TerminationGrace)
	defer cancel()
	// The HBONE server closes its connections when its context ends, which must come after
	// the records of the streams it cuts are marked as closed by the drain.
	serverCtx, stopServer := context.WithCancel(context.Background())
	context.AfterFunc(ctx, func() {
		p.conns.markDrained()
		stopServer()
	})
	shutdownDone := make(chan struct{})
	go func() {
		defer close(shutdownDone)
		p.server.Shutdown(serverCtx)
	}()
	p.conns.waitEmpty(ctx)
	<-shutdownDone
	if n := p.conns.closeAll(); n > 0 && immediate {
		p.log.Info("proxy stopped, closed its connections", "count", n)
	} else if n > 0 {
		p.log.Info("drain deadline reached, closed remaining connections", "count", n)
	}
	p.pool.Close()
	p.wg.Wait()
	return nil
}

// serverTLS picks the certificate of the workload the client dialed (by local IP), falling back
// to the proxy's own identity.
func (p *Proxy) serverTLS() *tls.Config {
	return &tls.Config{
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			id := p.localID(hello.Conn.LocalAddr())
			if id.IsZero() {
				return nil, errors.New("no local workload for this address")
			}
			return p.cfg.Certs.ServerConfig(id), nil
		},
	}
}

// localID is the identity the proxy serves HBONE as on the local address la: the workload's
// there, else the proxy's own (Self).
func (p *Proxy) localID(la net.Addr) identity.ID {
	if a, ok := la.(*net.TCPAddr); ok {
		if w := p.cfg.Store.Snapshot().WorkloadByAddr(p.cfg.Network, unmap(a.AddrPort().Addr())); w != nil {
			return w.Identity()
		}
	}
	return p.cfg.Self
}

func unmap(a netip.Addr) netip.Addr { return a.Unmap() }

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// isIllegalPort reports whether port is one of the proxy's own capture ports, which no inbound
// connection may be forwarded to whatever the address: a CONNECT or a captured connection to
// 15001/15006/15008 would re-enter the proxy (a loop, or HBONE inside HBONE), as ztunnel refuses.
func (p *Proxy) isIllegalPort(port uint16) bool {
	switch port {
	case p.cfg.Ports.Outbound, p.cfg.Ports.InboundPlain, p.cfg.Ports.InboundHBONE,
		OutboundPort, InboundPlainPort, InboundHBONEPort:
		return true
	case p.cfg.Ports.SOCKS5, SOCKS5Port:
		return p.cfg.SOCKS5
	}
	return false
}

// isOwnPort reports whether dst is one of the proxy's own ports on loopback: a loop.
func (p *Proxy) isOwnPort(dst netip.AddrPort) bool {
	if !dst.Addr().IsLoopback() && !dst.Addr().IsUnspecified() {
		return false
	}
	switch dst.Port() {
	case p.cfg.Ports.Outbound, p.cfg.Ports.InboundPlain, p.cfg.Ports.InboundHBONE, p.cfg.Ports.SOCKS5,
		OutboundPort, InboundPlainPort, InboundHBONEPort, SOCKS5Port, 15000, 15020, 15021, 15053:
		return true
	}
	return false
}
