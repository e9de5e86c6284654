package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// zone is a test authoritative server for the resolver: it answers the
// records of its map by type, with the name's CNAME as a recursive server
// would (NOERROR with an SOA when the name has none of
// the type), NXDOMAIN with an SOA for other names, and logs every query.
type zone struct {
	addr string // "127.0.0.1:port", UDP and TCP

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case fully qualified name
	soa     bool                // negative answers carry an SOA (TTL 300, minimum 60)
	rcode   int                 // when set, every query gets this rcode and nothing else
	hold    chan struct{}       // when set, answers wait for it to close
	log     []string            // "name TYPE" of each query, in order
	tcp     int                 // queries over TCP
}

func startZone(t *testing.T, rrs ...string) *zone {
	t.Helper()
	z := &zone{records: map[string][]dns.RR{}, soa: true}
	for _, s := range rrs {
		z.add(t, s)
	}
	var lc net.ListenConfig
	pc, ln, err := listenPair(context.Background(), &lc, netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	z.addr = pc.LocalAddr().String()
	var wg sync.WaitGroup
	servers := []*dns.Server{{PacketConn: pc, Handler: z.handler(false)}, {Listener: ln, Handler: z.handler(true)}}
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Go(func() { srv.ActivateAndServe() })
		<-started
	}
	t.Cleanup(func() {
		z.mu.Lock()
		if z.hold != nil {
			select {
			case <-z.hold:
			default:
				close(z.hold)
			}
		}
		z.mu.Unlock()
		for _, srv := range servers {
			srv.Shutdown()
		}
		wg.Wait()
	})
	return z
}

func (z *zone) add(t *testing.T, s string) {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("record %q: %v", s, err)
	}
	name := strings.ToLower(rr.Header().Name)
	z.mu.Lock()
	z.records[name] = append(z.records[name], rr)
	z.mu.Unlock()
}

func (z *zone) handler(tcp bool) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		q := r.Question[0]
		z.mu.Lock()
		z.log = append(z.log, q.Name+" "+dns.TypeToString[q.Qtype])
		if tcp {
			z.tcp++
		}
		hold, rcode, soa := z.hold, z.rcode, z.soa
		rrs, ok := z.records[strings.ToLower(q.Name)]
		z.mu.Unlock()
		if hold != nil {
			<-hold
		}
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		switch {
		case rcode != 0:
			m.Rcode = rcode
		case !ok:
			m.Rcode = dns.RcodeNameError
		default:
			for _, rr := range rrs {
				if t := rr.Header().Rrtype; t == q.Qtype || t == dns.TypeCNAME {
					m.Answer = append(m.Answer, rr)
				}
			}
		}
		if rcode == 0 && len(m.Answer) == 0 && soa {
			m.Ns = append(m.Ns, &dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
				Ns: "ns.example.", Mbox: "admin.example.", Serial: 1, Refresh: 60, Retry: 60, Expire: 600, Minttl: 60})
		}
		if !tcp {
			m.Truncate(udpLimit(r))
		}
		w.WriteMsg(m)
	}
}

// queries returns the queries seen since the last call.
func (z *zone) queries() []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	l := z.log
	z.log = nil
	return l
}

// holdAnswers makes the zone hold its answers until the returned channel is closed.
func (z *zone) holdAnswers() chan struct{} {
	hold := make(chan struct{})
	z.mu.Lock()
	z.hold = hold
	z.mu.Unlock()
	return hold
}

// waitQueries waits until the zone has seen n queries since the last call of queries.
func (z *zone) waitQueries(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		z.mu.Lock()
		seen := len(z.log)
		z.mu.Unlock()
		if seen >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the zone saw %d queries, want %d", seen, n)
		}
	}
}

// clock is a settable clock for the resolver's cache.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newTestResolver returns a resolver asking z (first the servers of extra, when given) with an
// empty hosts file and a settable clock.
func newTestResolver(t *testing.T, cfg ResolverConfig) (*Resolver, *clock) {
	t.Helper()
	if cfg.Hosts == nil {
		cfg.Hosts = map[string][]netip.Addr{}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	r, err := NewResolver(cfg)
	if err != nil {
		t.Fatalf("NewResolver: %v", err)
	}
	t.Cleanup(r.Close)
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	r.now = c.Now
	return r, c
}

func lookup(t *testing.T, r *Resolver, host string) ([]netip.Addr, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.LookupHost(ctx, host)
}

func mustLookup(t *testing.T, r *Resolver, host string, want ...string) {
	t.Helper()
	got, err := lookup(t, r, host)
	if err != nil {
		t.Fatalf("LookupHost(%q): %v", host, err)
	}
	var gs []string
	for _, a := range got {
		gs = append(gs, a.String())
	}
	slices.Sort(gs)
	slices.Sort(want)
	if !slices.Equal(gs, want) {
		t.Fatalf("LookupHost(%q) = %v, want %v", host, gs, want)
	}
}

func wantQueries(t *testing.T, z *zone, want ...string) {
	t.Helper()
	got := z.queries()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("queries = %q, want %q", got, want)
	}
}

// TestResolverCachesForTTL: A and AAAA are asked at once and each answer is kept for its own TTL;
// the slice returned is the caller's.
func TestResolverCachesForTTL(t *testing.T) {
	z := startZone(t, "www.example. 45 IN A 192.0.2.1", "www.example. 45 IN A 192.0.2.2", "www.example. 120 IN AAAA 2001:db8::1")
	r, clk := newTestResolver(t, ResolverConfig{Servers: []string{z.addr}})

	mustLookup(t, r, "www.example", "192.0.2.1", "192.0.2.2", "2001:db8::1")
	wantQueries(t, z, "www.example. A", "www.example. AAAA")

	got, _ := lookup(t, r, "WWW.Example.")
	got[0] = netip.MustParseAddr("203.0.113.9") // the caller's to change
	mustLookup(t, r, "www.example", "192.0.2.1", "192.0.2.2", "2001:db8::1")
	wantQueries(t, z)

	clk.advance(46 * time.Second) // past A's 45 s, within AAAA's 120 s
	mustLookup(t, r, "www.example", "192.0.2.1", "192.0.2.2", "2001:db8::1")
	wantQueries(t, z, "www.example. A")
	clk.advance(75 * time.Second) // past AAAA's 120 s (121 s), A's renewed 45 s (75 s)
	mustLookup(t, r, "www.example", "192.0.2.1", "192.0.2.2", "2001:db8::1")
	wantQueries(t, z, "www.example. A", "www.example. AAAA")
}

// TestResolverCNAMETTL: an answer is kept for the smallest TTL of its records, the CNAME's
// included.
func TestResolverCNAMETTL(t *testing.T) {
	z := startZone(t, "alias.example. 10 IN CNAME real.example.", "alias.example. 300 IN A 192.0.2.7")
	r, clk := newTestResolver(t, ResolverConfig{Servers: []string{z.addr}, IPv4Only: true})
	mustLookup(t, r, "alias.example", "192.0.2.7")
	clk.advance(9 * time.Second)
	mustLookup(t, r, "alias.example", "192.0.2.7")
	wantQueries(t, z, "alias.example. A")
	clk.advance(2 * time.Second)
	mustLookup(t, r, "alias.example", "192.0.2.7")
	wantQueries(t, z, "alias.example. A")
}

// TestResolverNegativeCache: a name that does not exist is remembered for its SOA's minimum
// (RFC 2308), and not at all without an SOA.
func TestResolverNegativeCache(t *testing.T) {
	z := startZone(t, "v4.example. 300 IN A 192.0.2.4")
	r, clk := newTestResolver(t, ResolverConfig{Servers: []string{z.addr}})

	for range 2 {
		if _, err := lookup(t, r, "gone.example."); !errors.Is(err, ErrNotFound) {
			t.Fatalf("LookupHost(gone.example.) error = %v, want ErrNotFound", err)
		}
	}
	wantQueries(t, z, "gone.example. A", "gone.example. AAAA")
	// NOERROR with no AAAA record is negative too: kept for the SOA's minimum.
	mustLookup(t, r, "v4.example.", "192.0.2.4")
	mustLookup(t, r, "v4.example.", "192.0.2.4")
	wantQueries(t, z, "v4.example. A", "v4.example. AAAA")
	clk.advance(61 * time.Second)
	lookup(t, r, "gone.example.")
	mustLookup(t, r, "v4.example.", "192.0.2.4")
	wantQueries(t, z, "gone.example. A", "gone.example. AAAA", "v4.example. AAAA")

	z.mu.Lock()
	z.soa = false
	z.mu.Unlock()
	clk.advance(61 * time.Second)
	for range 2 {
		lookup(t, r, "gone.example.")
	}
	wantQueries(t, z, "gone.example. A", "gone.example. AAAA", "gone.example. A", "gone.example. AAAA")
}

// TestResolverSearch: a name with fewer dots than ndots is tried under each search domain first
// and as itself last; one with at least ndots dots as itself first; a fully qualified one only
// as itself. The search list and ndots come from resolv.conf when the config leaves them out.
func TestResolverSearch(t *testing.T) {
	z := startZone(t,
		"httpbin.org. 60 IN A 192.0.2.80",
		"db.svc.cluster.local. 60 IN A 10.96.0.5",
	)
	search := []string{"ns1.svc.cluster.local", "svc.cluster.local.", "cluster.local"}
	r, _ := newTestResolver(t, ResolverConfig{Servers: []string{z.addr}, Search: search, Ndots: 5, IPv4Only: true})

	mustLookup(t, r, "httpbin.org", "192.0.2.80")
	if got, want := z.queries(), []string{
		"httpbin.org.ns1.svc.cluster.local. A", "httpbin.org.svc.cluster.local. A",
		"httpbin.org.cluster.local. A", "httpbin.org. A",
	}; !slices.Equal(got, want) {
		t.Errorf("ndots 5: queries = %q, want %q", got, want)
	}
	mustLookup(t, r, "db", "10.96.0.5")
	if got, want := z.queries(), []string{"db.ns1.svc.cluster.local. A", "db.svc.cluster.local. A"}; !slices.Equal(got, want) {
		t.Errorf("queries = %q, want %q", got, want)
	}
	mustLookup(t, r, "httpbin.org.", "192.0.2.80") // cached
	wantQueries(t, z)

	r1, _ := newTestResolver(t, ResolverConfig{Servers: []string{z.addr}, Search: search, Ndots: 1, IPv4Only: true})
	mustLookup(t, r1, "httpbin.org", "192.0.2.80")
	wantQueries(t, z, "httpbin.org. A")
	if _, err := lookup(t, r1, "nowhere.example."); !errors.Is(err, ErrNotFound) {
		t.Errorf("fully qualified unknown name: error = %v, want ErrNotFound", err)
	}
	wantQueries(t, z, "nowhere.example. A")
}

// TestResolverSharesQueries: lookups of one name while its query is in flight wait for that
// query instead of sending their own.
func TestResolverSharesQueries(t *testing.T) {
	z := startZone(t, "busy.example. 60 IN A 192.0.2.9")
	hold := z.holdAnswers()
	r, _ := newTestResolver(t, ResolverConfig{Servers: []string{z.addr}, IPv4Only: true})

	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			addrs, err := lookup(t, r, "busy.example.")
			if err == nil && (len(addrs) != 1 || addrs[0] != netip.MustParseAddr("192.0.2.9")) {
				err = fmt.Errorf("addresses %v", addrs)
			}
			errs <- err
		}()
	}
	z.waitQueries(t, 1)
	time.Sleep(50 * time.Millisecond) // let the last lookups join the query in flight
	close(hold)
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	wantQueries(t, z, "busy.example. A")
}

// TestResolverWaitEndsWithContext: the caller's context bounds its wait; the query goes on and
// its answer is cached for the next lookup.
func TestResolverWaitEndsWithContext(t *testing.T) {
	z := startZone(t, "slow.example. 60 IN A 192.0.2.10")
	hold := z.holdAnswers()
	r, _ := newTestResolver(t, ResolverConfig{Servers: []string{z.addr}, IPv4Only: true})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := r.LookupHost(ctx, "slow.example."); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want the context's deadline", err)
	}
	close(hold)
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		_, cached := r.cache[cacheKey{"slow.example.", dns.TypeA}]
		r.mu.Unlock()
		if cached {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the answer that came after the caller gave up was not cached")
		}
		time.Sleep(5 * time.Millisecond)
	}
	mustLookup(t, r, "slow.example.", "192.0.2.10")
	wantQueries(t, z, "slow.example. A")
}

// TestResolverServerFailover: a server that is down or answers SERVFAIL is passed over for the
// next; when every server fails, the lookup fails with each one's error and nothing is cached.
func TestResolverServerFailover(t *testing.T) {
	good := startZone(t, "ok.example. 60 IN A 192.0.2.11")
	broken := startZone(t)
	broken.mu.Lock()
	broken.rcode = dns.RcodeServerFailure
	broken.mu.Unlock()
	down := closedPort(t)

	r, _ := newTestResolver(t, ResolverConfig{Servers: []string{down, broken.addr, good.addr}, IPv4Only: true, Attempts: 1})
	mustLookup(t, r, "ok.example.", "192.0.2.11")
	wantQueries(t, broken, "ok.example. A")
	wantQueries(t, good, "ok.example. A")

	r2, _ := newTestResolver(t, ResolverConfig{Servers: []string{broken.addr}, IPv4Only: true, Attempts: 2})
	for range 2 {
		_, err := lookup(t, r2, "ok.example.")
		if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "SERVFAIL") {
			t.Fatalf("error = %v, want the server's SERVFAIL", err)
		}
	}
	wantQueries(t, broken, "ok.example. A", "ok.example. A", "ok.example. A", "ok.example. A")
}

// TestResolverTruncatedOverTCP: an answer too large for UDP is asked again over TCP.
func TestResolverTruncatedOverTCP(t *testing.T) {
	var rrs []string
	var want []string
	for i := range 120 {
		ip := fmt.Sprintf("198.51.100.%d", i+1)
		rrs = append(rrs, "many.example. 60 IN A "+ip)
		want = append(want, ip)
	}
	z := startZone(t, rrs...)
	r, _ := newTestResolver(t, ResolverConfig{Servers: []string{z.addr}, IPv4Only: true})
	mustLookup(t, r, "many.example.", want...)
	z.mu.Lock()
	tcp := z.tcp
	z.mu.Unlock()
	if tcp != 1 {
		t.Errorf("%d queries over TCP, want 1", tcp)
	}
}

// TestResolverCacheBound: the cache keeps at most CacheSize answers, dropping the least
// recently used; a negative size keeps none.
func TestResolverCacheBound(t *testing.T) {
	z := startZone(t, "a.example. 60 IN A 192.0.2.1", "b.example. 60 IN A 192.0.2.2", "c.example. 60 IN A 192.0.2.3")
	r, _ := newTestResolver(t, ResolverConfig{Servers: []string{z.addr}, IPv4Only: true, CacheSize: 2})
	mustLookup(t, r, "a.example.", "192.0.2.1")
	mustLookup(t, r, "b.example.", "192.0.2.2")
	mustLookup(t, r, "a.example.", "192.0.2.1") // a is now the most recent
	mustLookup(t, r, "c.example.", "192.0.2.3") // b goes
	wantQueries(t, z, "a.example. A", "b.example. A", "c.example. A")
	mustLookup(t, r, "a.example.", "192.0.2.1")
	mustLookup(t, r, "b.example.", "192.0.2.2")
	wantQueries(t, z, "b.example. A")
	r.mu.Lock()
	n, m := r.lru.Len(), len(r.cache)
	r.mu.Unlock()
	if n != 2 || m != 2 {
		t.Errorf("cache holds %d (map %d), want 2", n, m)
	}

	off, _ := newTestResolver(t, ResolverConfig{Servers: []string{z.addr}, IPv4Only: true, CacheSize: -1})
	mustLookup(t, off, "a.example.", "192.0.2.1")
	mustLookup(t, off, "a.example.", "192.0.2.1")
	wantQueries(t, z, "a.example. A", "a.example. A")
}

// TestResolverHostsAndLiterals: the hosts file answers without a query (IPv6 entries only when
// IPv6 is asked for); an address literal is itself; an invalid name fails without a query.
func TestResolverHostsAndLiterals(t *testing.T) {
	z := startZone(t)
	hosts := parseHosts(strings.NewReader("127.0.0.1 localhost\n::1 localhost ip6-localhost\n10.1.2.3 Static.Example # pinned\n"))
	r, _ := newTestResolver(t, ResolverConfig{Servers: []string{z.addr}, Hosts: hosts})
	mustLookup(t, r, "static.example", "10.1.2.3")
	mustLookup(t, r, "LOCALHOST.", "127.0.0.1", "::1")
	mustLookup(t, r, "2001:db8::7", "2001:db8::7")
	mustLookup(t, r, "192.0.2.77", "192.0.2.77")
	for _, bad := range []string{"", ".", "a..b", strings.Repeat("x", 64) + ".example"} {
		if _, err := lookup(t, r, bad); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("LookupHost(%q) error = %v, want an invalid name", bad, err)
		}
	}
	wantQueries(t, z)

	r4, _ := newTestResolver(t, ResolverConfig{Servers: []string{z.addr}, Hosts: hosts, IPv4Only: true})
	mustLookup(t, r4, "localhost", "127.0.0.1")
	if _, err := lookup(t, r4, "ip6-localhost."); !errors.Is(err, ErrNotFound) {
		t.Errorf("an IPv6-only hosts entry with IPv4 only: error = %v, want ErrNotFound", err)
	}
	wantQueries(t, z, "ip6-localhost. A")
}

func TestNewResolverErrors(t *testing.T) {
	for _, cfg := range []ResolverConfig{
		{Servers: []string{}},
		{Servers: []string{"resolver.example:53"}},
	} {
		if _, err := NewResolver(cfg); err == nil {
			t.Errorf("NewResolver(%+v) succeeded", cfg)
		}
	}
}

func TestParseResolvConfOptions(t *testing.T) {
	rc := parseResolvConf(strings.NewReader("domain example.com\nsearch ns1.svc.cluster.local svc.cluster.local\n" +
		"nameserver 10.96.0.10\noptions ndots:5 timeout:3 attempts:9 rotate ndots:x\n"))
	if got, want := rc.search, []string{"ns1.svc.cluster.local", "svc.cluster.local"}; !slices.Equal(got, want) {
		t.Errorf("search = %q, want %q", got, want)
	}
	if rc.ndots != 5 || rc.timeout != 3*time.Second || rc.attempts != 5 {
		t.Errorf("ndots %d timeout %v attempts %d, want 5, 3s and 5 (the cap)", rc.ndots, rc.timeout, rc.attempts)
	}
	rc = parseResolvConf(strings.NewReader("search a.example\ndomain b.example\n"))
	if !slices.Equal(rc.search, []string{"b.example"}) {
		t.Errorf("the last of search and domain wins: %q", rc.search)
	}
}

func TestParseHosts(t *testing.T) {
	h := parseHosts(strings.NewReader("# comment\n127.0.0.1\tlocalhost\n::ffff:10.0.0.1 mapped.\nbogus name\nfe80::1%eth0 zoned\n10.0.0.2 a A b\n"))
	want := map[string][]netip.Addr{
		"localhost": {netip.MustParseAddr("127.0.0.1")},
		"mapped":    {netip.MustParseAddr("10.0.0.1")},
		"a":         {netip.MustParseAddr("10.0.0.2")},
		"b":         {netip.MustParseAddr("10.0.0.2")},
	}
	if len(h) != len(want) {
		t.Errorf("parseHosts = %v, want %v", h, want)
	}
	for k, v := range want {
		if !slices.Equal(h[k], v) {
			t.Errorf("hosts[%q] = %v, want %v", k, h[k], v)
		}
	}
}

// FuzzResolverAnswer: whatever a server answers, the resolver returns only addresses of the type
// it asked for and a TTL no longer than a day.
func FuzzResolverAnswer(f *testing.F) {
	for _, rrs := range [][]string{
		{"x.example. 30 IN CNAME y.example.", "y.example. 60 IN A 192.0.2.1", "y.example. 60 IN AAAA 2001:db8::1"},
		{"x.example. 4294967295 IN A 192.0.2.1"},
	} {
		m := new(dns.Msg)
		m.SetQuestion("x.example.", dns.TypeA)
		for _, s := range rrs {
			rr, _ := dns.NewRR(s)
			m.Answer = append(m.Answer, rr)
		}
		m.Ns = append(m.Ns, &dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300}, Minttl: 60})
		b, _ := m.Pack()
		f.Add(b, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, v4 bool) {
		m := new(dns.Msg)
		if m.Unpack(b) != nil {
			return
		}
		qtype := dns.TypeAAAA
		if v4 {
			qtype = dns.TypeA
		}
		addrs, ttl := answerOf(m, qtype)
		if ttl < 0 || ttl > maxCacheTTL {
			t.Fatalf("TTL %v", ttl)
		}
		for _, a := range addrs {
			if !a.IsValid() || a.Is4() != v4 {
				t.Fatalf("address %v for a query of type %s", a, dns.TypeToString[qtype])
			}
		}
	})
}

// TestResolverClose: Close ends a query in flight (its lookup fails at once) and waits for it;
// later lookups fail but for answers still cached.
func TestResolverClose(t *testing.T) {
	z := startZone(t, "kept.example. 60 IN A 192.0.2.12", "stuck.example. 60 IN A 192.0.2.13")
	r, _ := newTestResolver(t, ResolverConfig{Servers: []string{z.addr}, IPv4Only: true, Timeout: time.Minute})
	mustLookup(t, r, "kept.example.", "192.0.2.12")
	z.holdAnswers()
	failed := make(chan error, 1)
	go func() {
		_, err := lookup(t, r, "stuck.example.")
		failed <- err
	}()
	z.waitQueries(t, 2) // kept's and stuck's
	start := time.Now()
	r.Close()
	if err := <-failed; err == nil {
		t.Error("the lookup in flight succeeded after Close")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Close took %v: it did not end the query (timeout 1 minute)", d)
	}
	mustLookup(t, r, "kept.example.", "192.0.2.12")
	if _, err := lookup(t, r, "other.example."); !errors.Is(err, errResolverClosed) {
		t.Errorf("lookup after Close: %v, want %v", err, errResolverClosed)
	}
}
