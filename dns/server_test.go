package dns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"github.com/ztunnel-go/ztunnel/internal/syncbuf"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/workload"
)

const (
	nw1 = "nw1"
	nw2 = "nw2"
)

func na(network, ip string) workload.NetworkAddress {
	return workload.NetworkAddress{Network: network, Address: netip.MustParseAddr(ip)}
}

func addrs(ips ...string) []netip.Addr {
	out := make([]netip.Addr, len(ips))
	for i, ip := range ips {
		out[i] = netip.MustParseAddr(ip)
	}
	return out
}

// kubeService is a Kubernetes service <name>.<ns>.svc.cluster.local.
func kubeService(name, ns string, vips ...workload.NetworkAddress) *workload.Service {
	return &workload.Service{Name: name, Namespace: ns, Hostname: name + "." + ns + ".svc.cluster.local", VIPs: vips}
}

// externalService is a ServiceEntry-like service with hostname host.
func externalService(host, ns string, vips ...workload.NetworkAddress) *workload.Service {
	return &workload.Service{Name: host, Namespace: ns, Hostname: host, VIPs: vips}
}

func endpointOf(uid, name, ns string, ips []netip.Addr, services ...*workload.Service) *workload.Workload {
	w := &workload.Workload{UID: uid, Name: name, Namespace: ns, Network: nw1, WorkloadIPs: ips, Capacity: 1}
	for _, s := range services {
		w.Services = append(w.Services, s.NamespacedHostname())
	}
	return w
}

// testStore is the mesh of ztunnel's own DNS server tests (src/dns/server.rs),
// plus a headless service with 100 endpoints and the client workload
// (127.0.0.1 in ns1, canonical name "client").
func testStore(t testing.TB) *workload.Store {
	t.Helper()
	nslocal := kubeService("nslocal", "ns2", na(nw1, "10.10.10.240"))
	nslocal.Visibility = workload.NamespaceVisible
	nslocalSame := kubeService("nslocalsame", "ns1", na(nw1, "10.10.10.241"))
	nslocalSame.Visibility = workload.NamespaceVisible
	canonicalSvc := externalService("canonical.svc", "ns3", na(nw1, "10.10.10.141"))
	canonicalSvc.Canonical = true
	canonicalLocal := externalService("canonical.with.local", "ns2", na(nw1, "10.10.10.151"))
	canonicalLocal.Canonical = true
	details := kubeService("details", "ns2", na(nw1, "11.11.11.11"), na(nw1, "12.12.12.12"), na(nw1, "13.13.13.13"), na(nw1, "14.14.14.14"))
	details.Hostname = "details.ns2.svc.cluster.remote"
	headless := kubeService("headless", "ns1")
	headlessExt := externalService("headless.example.com", "ns1")
	headless6 := kubeService("headless-ipv6", "ns1")
	headless6.IPFamilies = workload.IPFamilyIPv6
	big := kubeService("big", "ns1")

	services := []*workload.Service{
		externalService("www.google.com", "ns1", na(nw1, "1.1.1.1")),
		kubeService("productpage", "ns1", na(nw1, "9.9.9.9")),
		kubeService("example", "ns2", na(nw1, "10.10.10.10")),
		nslocal, nslocalSame,
		externalService("everywhere.io", "ns2", na(nw1, "10.10.10.110")),
		externalService("preferred.io", "ns2", na(nw1, "10.10.10.210")),
		externalService("everywhere.io", "preferred-ns", na(nw1, "10.10.10.111")),
		externalService("preferred.io", "preferred-ns", na(nw1, "10.10.10.211")),
		externalService("everywhere.io", "ns1", na(nw1, "10.10.10.112")),
		externalService("canonical.svc", "ns2", na(nw1, "10.10.10.140")),
		canonicalSvc,
		externalService("canonical.with.local", "ns1", na(nw1, "10.10.10.150")),
		canonicalLocal,
		details,
		externalService("ipv4.localhost", "ns1", na(nw1, "2.2.2.2")),
		externalService("ipv6.localhost", "ns1", na(nw1, "2001:db8::ff00:42:8329")),
		externalService("dual.localhost", "ns1", na(nw1, "2.2.2.2"), na(nw1, "2001:db8::ff00:42:8329")),
		externalService("*.wildcard", "ns1", na(nw1, "10.10.10.10")),
		externalService("*.b.wildcard", "ns1", na(nw1, "11.11.11.11")),
		externalService("*.svc.mesh.company.net", "ns1", na(nw1, "10.1.2.3")),
		kubeService("nw2-only", "ns1", na(nw2, "20.20.20.20")),
		kubeService("both-networks", "ns1", na(nw1, "21.21.21.21"), na(nw2, "22.22.22.22")),
		headless, headlessExt, headless6, big,
	}
	workloads := []*workload.Workload{
		{UID: "client", Name: "client", Namespace: "ns1", Network: nw1, WorkloadIPs: addrs("127.0.0.1"), CanonicalName: "client", CanonicalRevision: "v1", Capacity: 1},
		endpointOf("headless0", "headless0", "ns1", addrs("30.30.30.30", "2001:db8::30"), headless),
		endpointOf("headless1", "headless1", "ns1", addrs("31.31.31.31", "2001:db8::31"), headless),
		endpointOf("headless-external", "headless-external", "ns1", addrs("32.32.32.32", "2001:db8::32"), headlessExt),
		endpointOf("headless2", "headless2", "ns1", addrs("33.33.33.33", "2001:db8::33"), headless6),
	}
	for i := range 100 {
		workloads = append(workloads, endpointOf(fmt.Sprintf("big%d", i), fmt.Sprintf("big%d", i), "ns1",
			addrs(fmt.Sprintf("10.200.%d.%d", i/250, 1+i%250)), big))
	}
	st := workload.NewStore()
	if err := st.Apply(workload.Update{Workloads: workloads, Services: services}); err != nil {
		t.Fatalf("store: %v", err)
	}
	return st
}

// upstream is a test resolver: known names get A records, others NXDOMAIN.
// Like a real server it cuts UDP answers to the query's limit with TC set.
type upstream struct {
	addr    string // "127.0.0.1:port", UDP and TCP
	records map[string][]string
	queries atomic.Int64 // every query seen
	tcp     atomic.Int64 // queries seen over TCP
}

func startUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{records: map[string][]string{
		"www.bing.com.":    {"1.1.1.1"},
		"www.example.org.": {"93.184.216.34"},
	}}
	var many []string
	for i := range 100 {
		many = append(many, fmt.Sprintf("198.51.%d.%d", i/200, 1+i%200))
	}
	u.records["many.example.org."] = many

	// UDP and TCP on one port, retried when the UDP port is taken for TCP (as the server does).
	var lc net.ListenConfig
	pc, ln, err := listenPair(context.Background(), &lc, netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	u.addr = pc.LocalAddr().String()
	serveUpstream(t, u, pc, ln)
	return u
}

// serveUpstream serves u on pc and ln until t ends.
func serveUpstream(t testing.TB, u *upstream, pc net.PacketConn, ln net.Listener) {
	t.Helper()
	var wg sync.WaitGroup
	servers := []*dns.Server{
		{PacketConn: pc, Handler: u.handler(false)},
		{Listener: ln, Handler: u.handler(true)},
	}
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv.ActivateAndServe()
		}()
		<-started
	}
	t.Cleanup(func() {
		for _, srv := range servers {
			srv.Shutdown()
		}
		wg.Wait()
	})
}

func (u *upstream) handler(tcp bool) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		u.queries.Add(1)
		if tcp {
			u.tcp.Add(1)
		}
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		ips, ok := u.records[strings.ToLower(q.Name)]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, ip := range ips {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ip)})
			}
		}
		if !tcp {
			m.Truncate(udpLimit(r))
		}
		w.WriteMsg(m)
	}
}

// closedPort returns a local UDP address nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := pc.LocalAddr().String()
	pc.Close()
	return a
}

// startServer starts a Server for cfg on 127.0.0.1 (same random port for
// UDP and TCP) and returns it with that address.
func startServer(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := s.Listen(netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	a := s.Addrs()
	if len(a) != 2 || a[0].(*net.UDPAddr).Port != a[1].(*net.TCPAddr).Port {
		t.Fatalf("Addrs = %v, want one UDP and one TCP address on the same port", a)
	}
	return s, a[0].String()
}

func query(t testing.TB, network, addr, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: 65535}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s query %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	if resp.Id != m.Id {
		t.Fatalf("answer id %d, want %d", resp.Id, m.Id)
	}
	return resp
}

// records renders an answer section as sorted "name TYPE value" strings.
func records(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header()
		var v string
		switch rr := rr.(type) {
		case *dns.A:
			v = rr.A.String()
		case *dns.AAAA:
			v = rr.AAAA.String()
		case *dns.CNAME:
			v = rr.Target
		default:
			v = rr.String()
		}
		out = append(out, h.Name+" "+dns.TypeToString[h.Rrtype]+" "+v)
	}
	slices.Sort(out)
	return out
}

func baseConfig(t testing.TB, up string) Config {
	return Config{
		Store:              testStore(t),
		Network:            nw1,
		Domain:             "cluster.local",
		PreferredNamespace: "preferred-ns",
		Upstreams:          []string{up},
		UpstreamTimeout:    2 * time.Second,
	}
}

// TestLookup runs ztunnel's DNS lookup cases (src/dns/server.rs) over UDP
// and TCP. The client is found in the store by its address (127.0.0.1 is
// the workload "client" in ns1), as in dedicated mode.
func TestLookup(t *testing.T) {
	up := startUpstream(t)
	_, addr := startServer(t, baseConfig(t, up.addr))

	A, AAAA := dns.TypeA, dns.TypeAAAA
	cases := []struct {
		name  string
		host  string
		qtype uint16
		rcode int
		auth  bool
		want  []string
	}{
		{"unsupported type is forwarded", "productpage.ns1.", dns.TypeNS, dns.RcodeNameError, false, nil},
		{"non-k8s host in the mesh", "www.google.com.", A, 0, true, []string{"www.google.com. A 1.1.1.1"}},
		{"non-k8s host with search domain: CNAME + A", "www.google.com.ns1.svc.cluster.local.", A, 0, true,
			[]string{"www.google.com. A 1.1.1.1", "www.google.com.ns1.svc.cluster.local. CNAME www.google.com."}},
		{"non-k8s host not in the mesh is forwarded", "www.bing.com.", A, 0, false, []string{"www.bing.com. A 1.1.1.1"}},
		{"fqdn", "productpage.ns1.svc.cluster.local.", A, 0, true, []string{"productpage.ns1.svc.cluster.local. A 9.9.9.9"}},
		{"fqdn, upper case", "ProductPage.NS1.svc.cluster.local.", A, 0, true, []string{"ProductPage.NS1.svc.cluster.local. A 9.9.9.9"}},
		{"name.namespace", "productpage.ns1.", A, 0, true, []string{"productpage.ns1. A 9.9.9.9"}},
		{"name.namespace.svc", "productpage.ns1.svc.", A, 0, true, []string{"productpage.ns1.svc. A 9.9.9.9"}},
		{"short name in the client's namespace", "productpage.", A, 0, true, []string{"productpage. A 9.9.9.9"}},
		{"name.namespace with search domain: CNAME + A", "productpage.ns1.ns1.svc.cluster.local.", A, 0, true,
			[]string{"productpage.ns1. A 9.9.9.9", "productpage.ns1.ns1.svc.cluster.local. CNAME productpage.ns1."}},
		{"AAAA of a v4-only service: NOERROR, no records", "productpage.ns1.ns1.svc.cluster.local.", AAAA, 0, true, nil},
		{"other namespace, name.namespace", "example.ns2.", A, 0, true, []string{"example.ns2. A 10.10.10.10"}},
		{"other namespace, fqdn", "example.ns2.svc.cluster.local.", A, 0, true, []string{"example.ns2.svc.cluster.local. A 10.10.10.10"}},
		{"other namespace, short name is forwarded", "example.", A, dns.RcodeNameError, false, nil},
		{"namespace-visible service of another namespace is forwarded", "nslocal.ns2.svc.cluster.local.", A, dns.RcodeNameError, false, nil},
		{"namespace-visible service of the client's namespace", "nslocalsame.ns1.svc.cluster.local.", A, 0, true,
			[]string{"nslocalsame.ns1.svc.cluster.local. A 10.10.10.241"}},
		{"other cluster domain, fqdn", "details.ns2.svc.cluster.remote.", A, 0, true, []string{
			"details.ns2.svc.cluster.remote. A 11.11.11.11", "details.ns2.svc.cluster.remote. A 12.12.12.12",
			"details.ns2.svc.cluster.remote. A 13.13.13.13", "details.ns2.svc.cluster.remote. A 14.14.14.14"}},
		{"other cluster domain, name.namespace is forwarded", "details.ns2.", A, dns.RcodeNameError, false, nil},
		{"dual stack, A", "dual.localhost.", A, 0, true, []string{"dual.localhost. A 2.2.2.2"}},
		{"dual stack, AAAA", "dual.localhost.", AAAA, 0, true, []string{"dual.localhost. AAAA 2001:db8::ff00:42:8329"}},
		{"v6 only, A: no records", "ipv6.localhost.", A, 0, true, nil},
		{"v4 only, AAAA: no records", "ipv4.localhost.", AAAA, 0, true, nil},
		{"wildcard", "foo.wildcard.", A, 0, true, []string{"foo.wildcard. A 10.10.10.10"}},
		{"more specific wildcard", "a.b.wildcard.", A, 0, true, []string{"a.b.wildcard. A 11.11.11.11"}},
		{"wildcard with domain", "foo.svc.mesh.company.net.", A, 0, true, []string{"foo.svc.mesh.company.net. A 10.1.2.3"}},
		{"wildcard, two labels deep", "foo.foons.svc.mesh.company.net.", A, 0, true, []string{"foo.foons.svc.mesh.company.net. A 10.1.2.3"}},
		{"wildcard with search domain: no CNAME", "foo.svc.mesh.company.net.ns1.svc.cluster.local.", A, 0, true,
			[]string{"foo.svc.mesh.company.net.ns1.svc.cluster.local. A 10.1.2.3"}},
		{"no VIP on our network: no records", "nw2-only.ns1.svc.cluster.local.", A, 0, true, nil},
		{"only the VIP on our network", "both-networks.ns1.svc.cluster.local.", A, 0, true, []string{"both-networks.ns1.svc.cluster.local. A 21.21.21.21"}},
		{"headless, A", "headless.ns1.svc.cluster.local.", A, 0, true, []string{
			"headless.ns1.svc.cluster.local. A 30.30.30.30", "headless.ns1.svc.cluster.local. A 31.31.31.31"}},
		{"headless, AAAA", "headless.ns1.svc.cluster.local.", AAAA, 0, true, []string{
			"headless.ns1.svc.cluster.local. AAAA 2001:db8::30", "headless.ns1.svc.cluster.local. AAAA 2001:db8::31"}},
		{"headless v6-only, AAAA", "headless-ipv6.ns1.svc.cluster.local.", AAAA, 0, true, []string{"headless-ipv6.ns1.svc.cluster.local. AAAA 2001:db8::33"}},
		{"headless v6-only, A: no records", "headless-ipv6.ns1.svc.cluster.local.", A, 0, true, nil},
		{"pod hostname of a headless service is forwarded", "headless.pod0.ns1.svc.cluster.local.", A, dns.RcodeNameError, false, nil},
		{"external service without VIPs is forwarded", "headless.example.com.", A, dns.RcodeNameError, false, nil},
		{"preferred namespace", "preferred.io.", A, 0, true, []string{"preferred.io. A 10.10.10.211"}},
		{"client's namespace beats preferred", "everywhere.io.", A, 0, true, []string{"everywhere.io. A 10.10.10.112"}},
		{"canonical beats others", "canonical.svc.", A, 0, true, []string{"canonical.svc. A 10.10.10.141"}},
		{"client's namespace beats canonical", "canonical.with.local.", A, 0, true, []string{"canonical.with.local. A 10.10.10.150"}},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, c := range cases {
			t.Run(network+"/"+c.name, func(t *testing.T) {
				resp := query(t, network, addr, c.host, c.qtype, 0)
				if resp.Rcode != c.rcode {
					t.Fatalf("rcode = %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[c.rcode])
				}
				if resp.Authoritative != c.auth {
					t.Errorf("authoritative = %v, want %v", resp.Authoritative, c.auth)
				}
				if !resp.RecursionAvailable {
					t.Errorf("recursion available not set")
				}
				if got := records(resp.Answer); !slices.Equal(got, c.want) {
					t.Errorf("answer = %q, want %q", got, c.want)
				}
				for _, rr := range resp.Answer {
					if c.auth && rr.Header().Ttl != TTL {
						t.Errorf("ttl of %s = %d, want %d", rr, rr.Header().Ttl, TTL)
					}
				}
			})
		}
	}
}

// TestClientNamespace checks short names expand from the namespace
// ClientNamespace gives, and namespace visibility follows it.
func TestClientNamespace(t *testing.T) {
	up := startUpstream(t)
	cfg := baseConfig(t, up.addr)
	var asked atomic.Value
	cfg.ClientNamespace = func(src netip.Addr) string {
		asked.Store(src)
		return "ns2"
	}
	_, addr := startServer(t, cfg)
	cases := []struct {
		host  string
		rcode int
		want  []string
	}{
		{"example.", 0, []string{"example. A 10.10.10.10"}},
		{"example.ns2.ns2.svc.cluster.local.", 0, []string{"example.ns2. A 10.10.10.10", "example.ns2.ns2.svc.cluster.local. CNAME example.ns2."}},
		{"productpage.", dns.RcodeNameError, nil},
		{"nslocal.ns2.svc.cluster.local.", 0, []string{"nslocal.ns2.svc.cluster.local. A 10.10.10.240"}},
		{"nslocalsame.ns1.svc.cluster.local.", dns.RcodeNameError, nil},
		{"everywhere.io.", 0, []string{"everywhere.io. A 10.10.10.110"}},
	}
	for _, c := range cases {
		resp := query(t, "udp", addr, c.host, dns.TypeA, 0)
		if resp.Rcode != c.rcode {
			t.Errorf("%s: rcode = %s, want %s", c.host, dns.RcodeToString[resp.Rcode], dns.RcodeToString[c.rcode])
		}
		if got := records(resp.Answer); !slices.Equal(got, c.want) {
			t.Errorf("%s: answer = %q, want %q", c.host, got, c.want)
		}
	}
	if got, want := asked.Load(), netip.MustParseAddr("127.0.0.1"); got != want {
		t.Errorf("ClientNamespace asked about %v, want %v", got, want)
	}
}

func TestDisableIPv6(t *testing.T) {
	up := startUpstream(t)
	cfg := baseConfig(t, up.addr)
	cfg.DisableIPv6 = true
	_, addr := startServer(t, cfg)
	for _, host := range []string{"dual.localhost.", "headless.ns1.svc.cluster.local."} {
		resp := query(t, "udp", addr, host, dns.TypeAAAA, 0)
		if resp.Rcode != dns.RcodeSuccess || !resp.Authoritative || len(resp.Answer) != 0 {
			t.Errorf("%s AAAA: rcode %s, aa %v, answer %v; want authoritative NOERROR with no records",
				host, dns.RcodeToString[resp.Rcode], resp.Authoritative, resp.Answer)
		}
	}
}

// TestTruncation checks the TCP fallback: a UDP answer larger than the
// client's limit (512 bytes, or its EDNS0 size) is cut with TC set, and
// the same query over TCP gets everything.
func TestTruncation(t *testing.T) {
	up := startUpstream(t)
	_, addr := startServer(t, baseConfig(t, up.addr))
	cases := []struct {
		name    string
		network string
		host    string
		edns    uint16
		tc      bool
		all     bool // all 100 records
	}{
		{"headless 100 endpoints, udp", "udp", "big.ns1.svc.cluster.local.", 0, true, false},
		{"headless 100 endpoints, udp edns 4096", "udp", "big.ns1.svc.cluster.local.", 4096, false, true},
		{"headless 100 endpoints, udp edns 1232", "udp", "big.ns1.svc.cluster.local.", 1232, true, false},
		{"headless 100 endpoints, tcp", "tcp", "big.ns1.svc.cluster.local.", 0, false, true},
		{"forwarded 100 records, udp", "udp", "many.example.org.", 0, true, false},
		{"forwarded 100 records, tcp", "tcp", "many.example.org.", 0, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := query(t, c.network, addr, c.host, dns.TypeA, c.edns)
			if resp.Truncated != c.tc {
				t.Errorf("TC = %v, want %v", resp.Truncated, c.tc)
			}
			if got := len(resp.Answer); (got == 100) != c.all || got == 0 {
				t.Errorf("%d records, want all 100: %v", got, c.all)
			}
			resp.Compress = true // as it came over the wire
			if b, _ := resp.Pack(); c.network == "udp" && len(b) > max(int(c.edns), 512) {
				t.Errorf("UDP answer of %d bytes exceeds the client's limit", len(b))
			}
			if c.edns > 0 && resp.IsEdns0() == nil {
				t.Errorf("answer has no EDNS0 record, the query had one")
			}
		})
	}
	// The forwarded UDP query was truncated upstream too: it was retried over TCP.
	if up.tcp.Load() < 2 {
		t.Errorf("upstream saw %d TCP queries, want a TCP retry of the truncated UDP answer plus the TCP query", up.tcp.Load())
	}
}

// TestUpstreamDown checks SERVFAIL when no upstream answers, the next
// upstream being tried, and the upstream metrics.
func TestUpstreamDown(t *testing.T) {
	up := startUpstream(t)
	reg := prometheus.NewRegistry()

	cfg := baseConfig(t, closedPort(t))
	cfg.Registerer = reg
	_, addr := startServer(t, cfg)
	for _, network := range []string{"udp", "tcp"} {
		resp := query(t, network, addr, "www.bing.com.", dns.TypeA, 0)
		if resp.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s: rcode = %s, want SERVFAIL", network, dns.RcodeToString[resp.Rcode])
		}
		// Mesh names do not need the upstream.
		resp = query(t, network, addr, "productpage.ns1.", dns.TypeA, 0)
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
			t.Errorf("%s: mesh name: rcode %s, %d records", network, dns.RcodeToString[resp.Rcode], len(resp.Answer))
		}
	}
	labels := map[string]string{"request_query_type": "a", "request_protocol": "udp", "source_canonical_service": "client", "source_canonical_revision": "v1"}
	for _, c := range []struct {
		metric string
		want   float64
	}{
		{"istio_dns_requests_total", 2},
		{"istio_dns_upstream_requests_total", 1},
		{"istio_dns_upstream_failures_total", 1},
		{"istio_dns_upstream_request_duration_seconds", 1},
	} {
		if got := metricValue(t, reg, c.metric, labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.metric, labels, got, c.want)
		}
	}

	// A second server on the same registry (another pod) shares the metrics.
	cfg2 := baseConfig(t, closedPort(t))
	cfg2.Upstreams = append(cfg2.Upstreams, up.addr)
	cfg2.Registerer = reg
	_, addr2 := startServer(t, cfg2)
	if resp := query(t, "udp", addr2, "www.bing.com.", dns.TypeA, 0); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Errorf("second upstream: rcode %s, %d records; want the answer of the upstream that is up", dns.RcodeToString[resp.Rcode], len(resp.Answer))
	}
	if got := metricValue(t, reg, "istio_dns_upstream_requests_total", labels); got != 2 {
		t.Errorf("shared istio_dns_upstream_requests_total = %v, want 2", got)
	}
}

// metricValue returns a counter's value, or a histogram's sample count.
func metricValue(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestMalformed sends broken packets: FORMERR (or NOTIMP) when the header
// parses, nothing otherwise, and the server keeps serving.
func TestMalformed(t *testing.T) {
	up := startUpstream(t)
	_, addr := startServer(t, baseConfig(t, up.addr))

	valid, _ := (&dns.Msg{MsgHdr: dns.MsgHdr{Id: 0x1234, RecursionDesired: true}, Question: []dns.Question{{Name: "productpage.ns1.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}}).Pack()
	hdr := func(id uint16, bits uint16, qd, an, ns, ar uint16) []byte {
		return []byte{byte(id >> 8), byte(id), byte(bits >> 8), byte(bits), byte(qd >> 8), byte(qd), byte(an >> 8), byte(an), byte(ns >> 8), byte(ns), byte(ar >> 8), byte(ar)}
	}
	cases := []struct {
		name  string
		pkt   []byte
		rcode int // -1: no answer
	}{
		{"too short for a header", []byte{0x12, 0x34, 0x01}, -1},
		{"empty", nil, -1},
		{"question cut short", valid[:len(valid)-3], dns.RcodeFormatError},
		{"no question", hdr(7, 0x0100, 0, 0, 0, 0), dns.RcodeFormatError},
		{"two questions", append(hdr(8, 0x0100, 2, 0, 0, 0), valid[12:]...), dns.RcodeFormatError},
		{"answer records in a query", append(hdr(9, 0x0100, 1, 3, 0, 0), valid[12:]...), dns.RcodeFormatError},
		{"label pointing forward", append(hdr(10, 0x0100, 1, 0, 0, 0), 0xc0, 0x20, 0, 1, 0, 1), dns.RcodeFormatError},
		{"update opcode", append(hdr(11, 5<<11, 1, 0, 0, 0), valid[12:]...), dns.RcodeNotImplemented},
		{"a response", append(hdr(12, 0x8180, 1, 0, 0, 0), valid[12:]...), -1},
		{"garbage after a valid query", append(append([]byte{}, valid...), 0xde, 0xad), dns.RcodeSuccess},
	}
	for _, c := range cases {
		for _, network := range []string{"udp", "tcp"} {
			if network == "tcp" && len(c.pkt) == 0 {
				continue // an empty TCP message is just a closed stream
			}
			t.Run(network+"/"+c.name, func(t *testing.T) {
				got, err := exchangeRaw(network, addr, c.pkt)
				if c.rcode < 0 {
					if err == nil {
						t.Fatalf("got an answer (rcode %s), want none", dns.RcodeToString[got.Rcode])
					}
					return
				}
				if err != nil {
					t.Fatalf("no answer: %v", err)
				}
				if got.Rcode != c.rcode {
					t.Errorf("rcode = %s, want %s", dns.RcodeToString[got.Rcode], dns.RcodeToString[c.rcode])
				}
				if wantID := uint16(c.pkt[0])<<8 | uint16(c.pkt[1]); got.Id != wantID {
					t.Errorf("id = %#x, want %#x", got.Id, wantID)
				}
			})
		}
	}
	if resp := query(t, "udp", addr, "productpage.ns1.", dns.TypeA, 0); len(resp.Answer) != 1 {
		t.Errorf("server broken after malformed packets: %v", resp)
	}
}

// exchangeRaw sends pkt and reads one answer (waiting briefly).
func exchangeRaw(network, addr string, pkt []byte) (*dns.Msg, error) {
	c, err := net.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	co := &dns.Conn{Conn: c, UDPSize: 65535}
	c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := co.Write(pkt); err != nil {
		return nil, err
	}
	return co.ReadMsg()
}

// TestConcurrent runs many clients at once over both transports.
func TestConcurrent(t *testing.T) {
	up := startUpstream(t)
	_, addr := startServer(t, baseConfig(t, up.addr))
	type q struct {
		host string
		want []string
	}
	qs := []q{
		{"productpage.ns1.svc.cluster.local.", []string{"productpage.ns1.svc.cluster.local. A 9.9.9.9"}},
		{"productpage.", []string{"productpage. A 9.9.9.9"}},
		{"www.bing.com.", []string{"www.bing.com. A 1.1.1.1"}},
		{"headless.ns1.svc.cluster.local.", []string{"headless.ns1.svc.cluster.local. A 30.30.30.30", "headless.ns1.svc.cluster.local. A 31.31.31.31"}},
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			network := []string{"udp", "tcp"}[g%2]
			c := &dns.Client{Net: network, Timeout: 5 * time.Second}
			for i := range 25 {
				qq := qs[(g+i)%len(qs)]
				m := new(dns.Msg).SetQuestion(qq.host, dns.TypeA)
				resp, _, err := c.Exchange(m, addr)
				if err != nil {
					errs <- fmt.Errorf("%s %s: %w", network, qq.host, err)
					return
				}
				if got := records(resp.Answer); !slices.Equal(got, qq.want) {
					errs <- fmt.Errorf("%s %s: answer %q, want %q", network, qq.host, got, qq.want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestClose checks Close ends forwarding in flight at once and leaves no
// goroutine behind, and that Listen fails after Close.
func TestClose(t *testing.T) {
	// An upstream that never answers.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	base := leakcheck.Baseline()
	cfg := baseConfig(t, silent.LocalAddr().String())
	cfg.UpstreamTimeout = time.Minute
	var logs syncbuf.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs()[0].String()
	done := make(chan error, 1)
	go func() {
		c := &dns.Client{Net: "udp", Timeout: 30 * time.Second}
		_, _, err := c.Exchange(new(dns.Msg).SetQuestion("www.bing.com.", dns.TypeA), addr)
		done <- err
	}()
	// Wait until the query is upstream.
	buf := make([]byte, 512)
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := silent.ReadFrom(buf); err != nil {
		t.Fatalf("query never reached the upstream: %v", err)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v with a forward in flight", d)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Listen(netip.MustParseAddrPort("127.0.0.1:0")); err == nil {
		t.Errorf("Listen after Close succeeded")
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("Close logged an error:\n%s", logs.String())
	}
	// The query in flight is answered (SERVFAIL, its forward cut) before the socket closes.
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the query in flight at Close got no answer: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the query in flight at Close got no answer")
	}
	leakcheck.Wait(t, base)
}

// TestIdleSocketsHoldNoGoroutine: the server's UDP and TCP loops give up their goroutines
// while no query comes (in shared mode every pod has four DNS sockets) and serve the next
// query, on either transport, all the same.
func TestIdleSocketsHoldNoGoroutine(t *testing.T) {
	old := parkAfter
	parkAfter = 20 * time.Millisecond
	defer func() { parkAfter = old }()
	up := startUpstream(t)
	_, addr := startServer(t, baseConfig(t, up.addr))
	serving := func() int {
		return leakcheck.Matching("dns.(*udpLoop).serve") + leakcheck.Matching("dns.(*tcpLoop).serve")
	}
	for _, network := range []string{"udp", "tcp", "udp"} {
		testwait.Until(t, "the quiet DNS loops to park before a query over "+network, 5*time.Second,
			func() bool { return serving() == 0 })
		if resp := query(t, network, addr, "productpage.ns1.", dns.TypeA, 0); len(resp.Answer) != 1 {
			t.Fatalf("%s query after a park: %v", network, resp)
		}
	}
}

func TestNewServerErrors(t *testing.T) {
	st := workload.NewStore()
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no store", Config{Upstreams: []string{"127.0.0.1"}}, "Store is required"},
		{"bad upstream", Config{Store: st, Upstreams: []string{"dns.example.com:53"}}, "want ip or ip:port"},
	} {
		_, err := NewServer(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
	}
	s, err := NewServer(Config{Store: st, Upstreams: []string{"10.0.0.10", "[fd00::a]:5353"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.10:53", "[fd00::a]:5353"}; !slices.Equal(s.upstreams, want) {
		t.Errorf("upstreams = %q, want %q", s.upstreams, want)
	}
	if err := s.Listen(); err == nil {
		t.Errorf("Listen() with no address succeeded")
	}
	s.Close()
}
