package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztunnel-go/ztunnel/netutil"
	"github.com/ztunnel-go/ztunnel/workload"
)

// Defaults of ztunnel's DNS proxy.
const (
	// Port is the port the proxy serves on (ztunnel's DEFAULT_DNS_PORT).
	Port = 15053
	// TTL is the time to live, in seconds, of every record answered from
	// the mesh.
	TTL = 30
	// DefaultDomain is the cluster domain used when Config.Domain is empty.
	DefaultDomain = "cluster.local"
	// DefaultUpstreamTimeout bounds one exchange with one upstream resolver.
	DefaultUpstreamTimeout = 5 * time.Second
	// tcpReadTimeout bounds the wait for a query on a client's TCP
	// connection (ztunnel's DEFAULT_TCP_REQUEST_TIMEOUT).
	tcpReadTimeout = 5 * time.Second
	// udpReadSize is the largest query datagram read; a larger one is cut
	// and answered FORMERR.
	udpReadSize = dns.DefaultMsgSize
)

// resolvConfPath is where the default upstream resolvers come from.
const resolvConfPath = "/etc/resolv.conf"

// Config configures a Server. Only Store is required.
type Config struct {
	// Store holds the mesh's services and workloads. Required.
	Store *workload.Store

	// Network is the proxy's network: only service VIPs on it are
	// answered, and clients are looked up in it. Empty is the default
	// network.
	Network string

	// Domain is the cluster domain; empty means "cluster.local".
	Domain string

	// ClientNamespace returns the namespace of the pod that sent a query
	// from src, or "" when unknown. In shared mode the server is per pod
	// and knows it. Nil means: look the source IP up in Store (on Network).
	// A client of unknown namespace gets no short-name expansion and does
	// not see namespace-visible services.
	ClientNamespace func(src netip.Addr) string

	// PreferredNamespace is ztunnel's PREFERED_SERVICE_NAMESPACE: among
	// services of one hostname in several namespaces, after the client's
	// own namespace and canonical services, this namespace wins. Empty
	// means none.
	PreferredNamespace string

	// DisableIPv6 answers AAAA queries for mesh names with no records
	// (ztunnel's IPV6_ENABLED=false). False means IPv6 is enabled.
	DisableIPv6 bool

	// Upstreams are the resolvers ("ip:port", or "ip" for port 53)
	// everything else is forwarded to, tried in order. Nil means the
	// nameserver lines of /etc/resolv.conf.
	Upstreams []string

	// UpstreamTimeout bounds one exchange with one upstream; zero means
	// DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration

	// Socket is applied to every socket the server makes: its listeners
	// (SO_REUSEPORT, the mark) and the sockets that forward to upstreams,
	// whose mark keeps the pod's redirection from looping them back here.
	Socket netutil.SocketOptions

	// Netns, when set, runs fn with sockets created inside the pod's
	// network namespace (shared mode); listeners and forwarding sockets
	// are made inside it. Nil means the current namespace.
	Netns func(fn func() error) error

	// Registerer receives the istio_dns_* metrics; nil registers nothing.
	// Servers sharing one Registerer (one per pod) share the metrics.
	Registerer prometheus.Registerer

	// Logger receives start, stop and failure logs (queries only at debug
	// level). Nil discards.
	Logger *slog.Logger
}

// Server is a DNS proxy. Create it with NewServer, start it with Listen and
// stop it with Close.
type Server struct {
	// Immutable after NewServer.
	store      *workload.Store
	network    string
	domain     string // lower case, no trailing dot, e.g. "cluster.local"
	svcDomain  string // "svc." + domain
	svcSuffix  string // ".svc." + domain
	clientNS   func(netip.Addr) string
	preferred  string
	ipv6       bool
	upstreams  []string // "ip:port" ready to dial
	upTimeout  time.Duration
	socket     netutil.SocketOptions
	netns      func(fn func() error) error
	log        *slog.Logger
	metrics    *metrics
	ctx        context.Context // cancelled by Close: ends forwarding in flight
	cancel     context.CancelFunc
	scratchMax int // scratch buffers grown beyond this many addresses are not pooled

	mu     sync.Mutex
	loops  []socketLoop          // guarded by mu; the sockets served and their loops (serve.go)
	conns  map[net.Conn]struct{} // guarded by mu; TCP connections being served
	addrs  []net.Addr            // guarded by mu
	closed bool                  // guarded by mu

	// wg tracks the goroutines that serve a query or a TCP connection; Close waits for it
	// after it has ended the loops, the only ones that add to it.
	wg sync.WaitGroup
}

// NewServer validates cfg and returns a server that does not listen yet.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("dns: Config.Store is required")
	}
	domain := strings.Trim(strings.ToLower(cfg.Domain), ".")
	if domain == "" {
		domain = DefaultDomain
	}
	ups := cfg.Upstreams
	if ups == nil {
		f, err := os.Open(resolvConfPath)
		if err != nil {
			return nil, fmt.Errorf("dns: upstream resolvers: %w", err)
		}
		ups = parseResolvConf(f).servers
		f.Close()
		if len(ups) == 0 {
			return nil, fmt.Errorf("dns: upstream resolvers: no nameserver line in %s", resolvConfPath)
		}
	}
	upstreams := make([]string, 0, len(ups))
	for _, u := range ups {
		a, err := parseUpstream(u)
		if err != nil {
			return nil, err
		}
		upstreams = append(upstreams, a)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	timeout := cfg.UpstreamTimeout
	if timeout <= 0 {
		timeout = DefaultUpstreamTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		store:      cfg.Store,
		network:    cfg.Network,
		domain:     domain,
		svcDomain:  "svc." + domain,
		svcSuffix:  ".svc." + domain,
		clientNS:   cfg.ClientNamespace,
		preferred:  cfg.PreferredNamespace,
		ipv6:       !cfg.DisableIPv6,
		upstreams:  upstreams,
		upTimeout:  timeout,
		socket:     cfg.Socket,
		netns:      cfg.Netns,
		log:        log.With("component", "dns"),
		metrics:    m,
		ctx:        ctx,
		cancel:     cancel,
		scratchMax: 4096,
	}
	return s, nil
}

// parseUpstream turns "ip", "ip:port" or "[ip]:port" into "ip:port".
func parseUpstream(u string) (string, error) {
	if ap, err := netip.ParseAddrPort(u); err == nil {
		return ap.String(), nil
	}
	if a, err := netip.ParseAddr(u); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	return "", fmt.Errorf("dns: upstream %q: want ip or ip:port", u)
}

// inNetns runs fn inside the configured namespace, or here.
func (s *Server) inNetns(fn func() error) error {
	if s.netns == nil {
		return fn()
	}
	return s.netns(fn)
}

// Listen serves UDP and TCP on each address (inside Config.Netns when set).
// With port 0 the TCP listener takes the port the kernel chose for UDP. On
// error nothing of this call keeps listening; earlier calls are unaffected.
func (s *Server) Listen(addrs ...netip.AddrPort) error {
	if len(addrs) == 0 {
		return errors.New("dns: Listen: no address")
	}
	type pair struct {
		pc net.PacketConn
		ln net.Listener
	}
	var opened []pair
	fail := func(err error) error {
		for _, p := range opened {
			p.pc.Close()
			p.ln.Close()
		}
		return err
	}
	lc := s.socket.ListenConfig()
	for _, a := range addrs {
		var p pair
		err := s.inNetns(func() error {
			var err error
			p.pc, p.ln, err = listenPair(s.ctx, &lc, a)
			return err
		})
		if err != nil {
			return fail(fmt.Errorf("dns: listen %s: %w", a, err))
		}
		opened = append(opened, p)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fail(fmt.Errorf("dns: listen: %w", net.ErrClosed))
	}
	var loops []socketLoop
	for _, p := range opened {
		u, err := s.udpSocket(p.pc.(*net.UDPConn))
		if err != nil {
			return fail(fmt.Errorf("dns: serve %s: %w", p.pc.LocalAddr(), err))
		}
		t, err := s.tcpSocket(p.ln.(*net.TCPListener))
		if err != nil {
			return fail(fmt.Errorf("dns: serve %s: %w", p.ln.Addr(), err))
		}
		loops = append(loops, u, t)
	}
	for _, l := range loops {
		l.loop.Start()
	}
	s.loops = append(s.loops, loops...)
	for _, p := range opened {
		s.addrs = append(s.addrs, p.pc.LocalAddr(), p.ln.Addr())
		s.log.Info("starting local DNS server", "udp", p.pc.LocalAddr().String(), "tcp", p.ln.Addr().String())
	}
	return nil
}

// listenPair opens a UDP socket and a TCP listener on a. When a's port is 0
// the TCP listener is opened on the UDP socket's port, retrying a few times
// if that port is taken for TCP.
func listenPair(ctx context.Context, lc *net.ListenConfig, a netip.AddrPort) (net.PacketConn, net.Listener, error) {
	const tries = 8
	for i := 0; ; i++ {
		pc, err := lc.ListenPacket(ctx, "udp", a.String())
		if err != nil {
			return nil, nil, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		ln, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(a.Addr(), port).String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if a.Port() != 0 || i == tries-1 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, err
		}
	}
}

// Addrs returns the addresses served: for each Listen address its UDP
// address, then its TCP address.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Addr(nil), s.addrs...)
}

// Close stops serving, aborts forwarding in flight and waits for every
// goroutine of the server. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	loops := s.loops
	s.loops = nil
	// Connections being served read no further query, as new ones are refused; the answer
	// in flight on each still goes out.
	for c := range s.conns {
		c.SetReadDeadline(inThePast)
	}
	s.mu.Unlock()

	var errs []error
	for _, l := range loops {
		if err := l.loop.Close(l.stop); err != nil {
			errs = append(errs, err)
		}
	}
	s.cancel() // forwarding in flight ends and answers SERVFAIL
	s.wg.Wait()
	for _, l := range loops {
		if err := l.sock.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if len(loops) > 0 {
		s.log.Info("dns server drained")
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dns: close: %w", err)
	}
	return nil
}

// acceptQuery decides what the server does with a parsed header: only
// standard queries with one question are served; other opcodes get
// NOTIMP, odd section counts FORMERR. Responses are ignored: answering
// them could make two servers echo each other forever.
func acceptQuery(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	if opcode := int(dh.Bits>>11) & 0xF; opcode != dns.OpcodeQuery {
		return dns.MsgRejectNotImplemented
	}
	if dh.Qdcount != 1 || dh.Ancount > 0 || dh.Nscount > 0 || dh.Arcount > 2 {
		return dns.MsgReject
	}
	return dns.MsgAccept
}
