package dns

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Defaults of a Resolver, those of the Rust ztunnel's resolver where it sets one.
const (
	// DefaultCacheSize bounds the answers a Resolver keeps (ztunnel sets 4,096).
	DefaultCacheSize = 4096
	// maxCacheTTL caps how long an answer is kept, whatever its TTL says (one day).
	maxCacheTTL = 24 * time.Hour
	// resolverEDNSSize is the UDP payload size the resolver advertises: the
	// size DNS flag day 2020 recommends, which avoids IP fragmentation.
	resolverEDNSSize = 1232
)

// hostsPath is where a Resolver reads static names.
const hostsPath = "/etc/hosts"

// ErrNotFound is returned (wrapped) by Resolver.LookupHost when no name the
// hostname expands to has an address.
var ErrNotFound = errors.New("no such host")

// ResolverConfig configures a Resolver. The zero value reads /etc/resolv.conf
// and /etc/hosts and asks for both address families.
type ResolverConfig struct {
	// Servers are the resolvers asked ("ip:port", or "ip" for port 53), in
	// order. Nil means resolv.conf's nameservers; then Search, Ndots,
	// Timeout and Attempts left zero also come from resolv.conf.
	Servers []string
	// Search is the search list a name with fewer than Ndots dots is tried
	// in first (and a name with more, after itself). Nil means none, or
	// resolv.conf's when Servers is nil.
	Search []string
	// Ndots is resolv.conf's ndots. Zero means 1, or resolv.conf's value
	// when Servers is nil.
	Ndots int
	// Timeout bounds one exchange with one server. Zero means 5 s, or
	// resolv.conf's "timeout" when Servers is nil.
	Timeout time.Duration
	// Attempts is how many times each server is tried. Zero means 2, or
	// resolv.conf's "attempts" when Servers is nil.
	Attempts int

	// IPv4Only asks for A records only (ztunnel with IPV6_ENABLED=false);
	// false asks for A and AAAA records at once.
	IPv4Only bool

	// Hosts maps names (lower case, without the trailing dot) to addresses
	// answered without a query. Nil means the entries of /etc/hosts, read
	// once by NewResolver (a missing file means none).
	Hosts map[string][]netip.Addr

	// CacheSize bounds the answers kept (one per name and record type,
	// negative ones included); the least recently used goes first. Zero
	// means DefaultCacheSize; a negative value disables the cache.
	CacheSize int
}

// Resolver looks hostnames up over DNS, as ztunnel's on-demand DNS does for
// workloads istiod knows by hostname only: A and AAAA are asked at once, the
// search list and ndots are applied as the C library does, and each answer
// is cached for its TTL (a negative one for its SOA's minimum), so a
// connection to such a workload costs a query only when the answer expired.
// Concurrent lookups of one name share one query.
//
// A Resolver is safe for concurrent use. It holds no goroutine between
// lookups: a query outlives the lookup that started it (so waiters and the
// cache get its answer) by at most Attempts × len(Servers) × Timeout, and
// Close ends the queries in flight and waits for them.
type Resolver struct {
	// Immutable after NewResolver.
	servers  []string
	search   []string // fully qualified, lower case
	ndots    int
	timeout  time.Duration
	attempts int
	qtypes   []uint16 // dns.TypeA, then dns.TypeAAAA unless IPv4-only
	hosts    map[string][]netip.Addr
	maxSize  int
	now      func() time.Time // the clock of the cache; tests replace it

	ctx    context.Context // cancelled by Close: ends the queries in flight
	cancel context.CancelFunc

	mu       sync.Mutex
	cache    map[cacheKey]*list.Element // guarded by mu; values are *cacheEntry
	lru      list.List                  // guarded by mu; most recently used first
	inflight map[cacheKey]*flight       // guarded by mu
	closed   bool                       // guarded by mu
	wg       sync.WaitGroup             // the queries' goroutines; added to under mu
}

// errResolverClosed is the error of lookups after Close.
var errResolverClosed = errors.New("dns: resolver closed")

// cacheKey names one answer: a fully qualified lower-case name and a type.
type cacheKey struct {
	name  string
	qtype uint16
}

// cacheEntry is one cached answer; an empty addrs is a negative answer.
type cacheEntry struct {
	key     cacheKey
	addrs   []netip.Addr // never modified once cached
	expires time.Time
}

// flight is one exchange in flight; done is closed when addrs and err are set.
type flight struct {
	done  chan struct{}
	addrs []netip.Addr
	err   error
}

// NewResolver returns a Resolver for cfg, reading resolv.conf and the hosts
// file when cfg leaves them out.
func NewResolver(cfg ResolverConfig) (*Resolver, error) {
	if cfg.Servers == nil {
		f, err := os.Open(resolvConfPath)
		if err != nil {
			return nil, fmt.Errorf("dns: resolver: %w", err)
		}
		rc := parseResolvConf(f)
		f.Close()
		if len(rc.servers) == 0 {
			return nil, fmt.Errorf("dns: resolver: no nameserver line in %s", resolvConfPath)
		}
		cfg.Servers = rc.servers
		if cfg.Search == nil {
			cfg.Search = rc.search
		}
		if cfg.Ndots == 0 {
			cfg.Ndots = rc.ndots
		}
		if cfg.Timeout == 0 {
			cfg.Timeout = rc.timeout
		}
		if cfg.Attempts == 0 {
			cfg.Attempts = rc.attempts
		}
	}
	if len(cfg.Servers) == 0 {
		return nil, errors.New("dns: resolver: no server")
	}
	r := &Resolver{
		ndots:    cfg.Ndots,
		timeout:  cfg.Timeout,
		attempts: cfg.Attempts,
		hosts:    cfg.Hosts,
		maxSize:  cfg.CacheSize,
		now:      time.Now,
		cache:    map[cacheKey]*list.Element{},
		inflight: map[cacheKey]*flight{},
		qtypes:   []uint16{dns.TypeA, dns.TypeAAAA},
	}
	if cfg.IPv4Only {
		r.qtypes = r.qtypes[:1]
	}
	for _, s := range cfg.Servers {
		a, err := parseUpstream(s)
		if err != nil {
			return nil, fmt.Errorf("dns: resolver: %w", err)
		}
		r.servers = append(r.servers, a)
	}
	for _, d := range cfg.Search {
		d = strings.ToLower(strings.Trim(d, "."))
		if d != "" {
			r.search = append(r.search, d+".")
		}
	}
	if r.ndots <= 0 {
		r.ndots = 1
	}
	if r.timeout <= 0 {
		r.timeout = DefaultUpstreamTimeout
	}
	if r.attempts <= 0 {
		r.attempts = 2
	}
	if r.maxSize == 0 {
		r.maxSize = DefaultCacheSize
	}
	if r.hosts == nil {
		r.hosts = map[string][]netip.Addr{}
		if f, err := os.Open(hostsPath); err == nil {
			r.hosts = parseHosts(f)
			f.Close()
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("dns: resolver: %w", err)
		}
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// LookupHost returns the addresses of host: an address literal itself, the
// hosts file's entry, or the first name of the search list expansion that
// has addresses, over DNS. The slice is the caller's. A name no expansion
// resolves gives an error wrapping ErrNotFound; a failing server ends the
// lookup with its error. ctx bounds the wait, not the query: an answer that
// arrives later is still cached.
func (r *Resolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	name := strings.ToLower(host)
	if ips := r.hosts[strings.TrimSuffix(name, ".")]; len(ips) > 0 {
		var out []netip.Addr
		for _, ip := range ips {
			if ip.Is4() || len(r.qtypes) > 1 {
				out = append(out, ip)
			}
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	if _, ok := dns.IsDomainName(name); !ok || name == "." {
		return nil, fmt.Errorf("lookup %s: invalid name", host)
	}
	for _, fqdn := range r.names(name) {
		addrs, err := r.lookupName(ctx, fqdn)
		if err != nil {
			return nil, fmt.Errorf("lookup %s: %w", host, err)
		}
		if len(addrs) > 0 {
			return addrs, nil
		}
	}
	return nil, fmt.Errorf("lookup %s: %w", host, ErrNotFound)
}

// names returns the fully qualified names a lower-case name is tried as, in
// order: itself only when it ends with a dot; else itself first when it has
// at least ndots dots, then under each search domain, then itself when it had
// fewer.
func (r *Resolver) names(name string) []string {
	if strings.HasSuffix(name, ".") {
		return []string{name}
	}
	out := make([]string, 0, len(r.search)+1)
	first := strings.Count(name, ".") >= r.ndots
	if first {
		out = append(out, name+".")
	}
	for _, d := range r.search {
		if len(name)+1+len(d) <= 254 {
			out = append(out, name+"."+d)
		}
	}
	if !first {
		out = append(out, name+".")
	}
	return out
}

// lookupName returns the addresses of one fully qualified name: its A and
// AAAA answers, asked at once. A type that failed is ignored when the other
// has addresses.
func (r *Resolver) lookupName(ctx context.Context, fqdn string) ([]netip.Addr, error) {
	qs := make([]*flight, len(r.qtypes))
	for i, t := range r.qtypes {
		qs[i] = r.start(cacheKey{fqdn, t})
	}
	var out []netip.Addr
	var errs []error
	for _, q := range qs {
		select {
		case <-q.done:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		if q.err != nil {
			errs = append(errs, q.err)
		}
		out = append(out, q.addrs...)
	}
	if len(out) > 0 {
		return out, nil
	}
	return nil, errors.Join(errs...)
}

// start returns the flight answering k: a finished one when the cache holds
// an unexpired answer, the one in flight for k when there is one, or a new
// one, whose query it starts.
func (r *Resolver) start(k cacheKey) *flight {
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.cache[k]; ok {
		e := el.Value.(*cacheEntry)
		if r.now().Before(e.expires) {
			r.lru.MoveToFront(el)
			return &flight{done: closedChan, addrs: e.addrs}
		}
		r.lru.Remove(el)
		delete(r.cache, k)
	}
	if q, ok := r.inflight[k]; ok {
		return q
	}
	if r.closed {
		return &flight{done: closedChan, err: errResolverClosed}
	}
	q := &flight{done: make(chan struct{})}
	r.inflight[k] = q
	r.wg.Add(1)
	go r.run(k, q)
	return q
}

// Close ends the queries in flight (their lookups fail) and waits for their
// goroutines; later lookups fail, but for answers still cached.
func (r *Resolver) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// closedChan is the done channel of an answer taken from the cache.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// run asks the servers about k, publishes the answer to q's waiters and
// caches it for its TTL.
func (r *Resolver) run(k cacheKey, q *flight) {
	defer r.wg.Done()
	ctx, cancel := context.WithTimeout(r.ctx, time.Duration(r.attempts*len(r.servers))*r.timeout)
	addrs, ttl, err := r.exchange(ctx, k)
	cancel()
	expires := r.now().Add(min(ttl, maxCacheTTL)) // the TTL counts from the answer
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.inflight, k)
	q.addrs, q.err = addrs, err
	close(q.done)
	if err != nil || ttl <= 0 || r.maxSize < 0 {
		return
	}
	r.cache[k] = r.lru.PushFront(&cacheEntry{key: k, addrs: addrs, expires: expires})
	for r.lru.Len() > r.maxSize {
		old := r.lru.Back()
		r.lru.Remove(old)
		delete(r.cache, old.Value.(*cacheEntry).key)
	}
}

// exchange asks each server in turn, Attempts rounds, until one answers
// NOERROR or NXDOMAIN. It returns the addresses of k's type in the answer
// and how long the answer may be kept: the smallest TTL of the answer
// section, or for a negative answer the SOA's (RFC 2308; zero without one).
func (r *Resolver) exchange(ctx context.Context, k cacheKey) ([]netip.Addr, time.Duration, error) {
	var errs []error
	for range r.attempts {
		for _, s := range r.servers {
			m := new(dns.Msg)
			m.SetQuestion(k.name, k.qtype)
			m.SetEdns0(resolverEDNSSize, false)
			resp, err := r.exchangeWith(ctx, s, m)
			if err == nil {
				switch resp.Rcode {
				case dns.RcodeSuccess, dns.RcodeNameError:
					addrs, ttl := answerOf(resp, k.qtype)
					return addrs, ttl, nil
				}
				err = fmt.Errorf("answered %s", dns.RcodeToString[resp.Rcode])
			}
			if ctx.Err() != nil {
				return nil, 0, fmt.Errorf("%s: %w", s, ctx.Err())
			}
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
		}
	}
	return nil, 0, errors.Join(errs...)
}

// exchangeWith asks one server over UDP, and over TCP when the answer is
// truncated.
func (r *Resolver) exchangeWith(ctx context.Context, server string, m *dns.Msg) (*dns.Msg, error) {
	resp, err := r.exchangeOver(ctx, "udp", server, m)
	if err == nil && resp.Truncated {
		resp, err = r.exchangeOver(ctx, "tcp", server, m)
	}
	return resp, err
}

// exchangeOver does one exchange on a new socket, which the end of ctx closes
// (the client's own deadline does not watch ctx: Close would wait a timeout).
func (r *Resolver) exchangeOver(ctx context.Context, network, server string, m *dns.Msg) (*dns.Msg, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, server)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	cl := dns.Client{Net: network, Timeout: r.timeout, UDPSize: resolverEDNSSize}
	resp, _, err := cl.ExchangeWithConnContext(ctx, m, &dns.Conn{Conn: c, UDPSize: resolverEDNSSize})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", network, err)
	}
	return resp, nil
}

// answerOf returns the addresses of type qtype in resp and how long they may
// be cached.
func answerOf(resp *dns.Msg, qtype uint16) ([]netip.Addr, time.Duration) {
	var addrs []netip.Addr
	ttl := uint32(maxCacheTTL / time.Second)
	for _, rr := range resp.Answer {
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			if qtype == dns.TypeA {
				ip = v.A.To4()
			}
		case *dns.AAAA:
			if qtype == dns.TypeAAAA {
				ip = v.AAAA.To16()
			}
		}
		ttl = min(ttl, rr.Header().Ttl)
		if a, ok := netip.AddrFromSlice(ip); ok {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) > 0 {
		return addrs, time.Duration(ttl) * time.Second
	}
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return nil, time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
		}
	}
	return nil, 0
}
