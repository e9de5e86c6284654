package dns

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"unsafe"

	"github.com/miekg/dns"

	"github.com/ztunnel-go/ztunnel/workload"
)

// maxName bounds the names this package builds (a query name plus a
// namespace and the cluster domain); longer ones are never mesh names.
const maxName = 512

// scratch is the per-query working memory of a lookup, pooled so that a
// lookup allocates nothing of its own.
type scratch struct {
	name  [maxName]byte // the query name, lower case, without the trailing dot
	cand  [maxName]byte // the candidate hostname being built
	wild  [maxName]byte // the wildcard form being tried
	addrs []netip.Addr  // addresses of the answer
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// view returns b as a string without copying. The string is only valid
// while b is not modified: it is used for map lookups that keep nothing.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// match is the service a query name resolved to.
type match struct {
	svc *workload.Service
	// stripped is the name left after removing a search domain, when the
	// match came from it (a view into scratch: copy before keeping).
	stripped string
	// wildcard is set when the hostname matched was a wildcard.
	wildcard bool
}

// answer returns the authoritative answer to r from the mesh, or nil when
// the name is not a mesh name (the query is then forwarded).
func (s *Server) answer(snap *workload.Snapshot, r *dns.Msg, ns string) *dns.Msg {
	q := &r.Question[0]
	sc := scratchPool.Get().(*scratch)
	defer s.putScratch(sc)

	name, ok := normalize(sc, q.Name)
	if !ok {
		return nil
	}
	m, ok := s.find(snap, sc, name, ns)
	if !ok {
		return nil
	}
	resp := newReply(r, dns.RcodeSuccess)
	resp.Authoritative = true
	if !s.familyAllowed(m.svc, q.Qtype) {
		return resp
	}
	addrs := s.addresses(snap, sc, m.svc, q.Qtype)
	if len(addrs) == 0 {
		return resp
	}
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })

	owner := q.Name
	n := len(addrs)
	if m.stripped != "" && !m.wildcard {
		target := dns.Fqdn(m.stripped) // copies out of scratch
		resp.Answer = make([]dns.RR, 0, n+1)
		resp.Answer = append(resp.Answer, &dns.CNAME{
			Hdr:    dns.RR_Header{Name: owner, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: TTL},
			Target: target,
		})
		owner = target
	} else {
		resp.Answer = make([]dns.RR, 0, n)
	}
	hdr := dns.RR_Header{Name: owner, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: TTL}
	// One slab of records and one of address bytes, whatever the count.
	if q.Qtype == dns.TypeA {
		recs := make([]dns.A, n)
		ips := make([]byte, 4*n)
		for i, a := range addrs {
			b := a.As4()
			ip := ips[4*i : 4*i+4 : 4*i+4]
			copy(ip, b[:])
			recs[i] = dns.A{Hdr: hdr, A: ip}
			resp.Answer = append(resp.Answer, &recs[i])
		}
	} else {
		recs := make([]dns.AAAA, n)
		ips := make([]byte, 16*n)
		for i, a := range addrs {
			b := a.As16()
			ip := ips[16*i : 16*i+16 : 16*i+16]
			copy(ip, b[:])
			recs[i] = dns.AAAA{Hdr: hdr, AAAA: ip}
			resp.Answer = append(resp.Answer, &recs[i])
		}
	}
	return resp
}

func (s *Server) putScratch(sc *scratch) {
	if cap(sc.addrs) > s.scratchMax {
		sc.addrs = nil
	}
	sc.addrs = sc.addrs[:0]
	scratchPool.Put(sc)
}

// normalize writes the query name into sc.name in lower case without the
// trailing dot. ok is false for names that cannot be mesh names: the root,
// escaped characters, or too long.
func normalize(sc *scratch, qname string) (string, bool) {
	qname = strings.TrimSuffix(qname, ".")
	if qname == "" || len(qname) > len(sc.name) {
		return "", false
	}
	for i := 0; i < len(qname); i++ {
		c := qname[i]
		switch {
		case c == '\\':
			return "", false
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		sc.name[i] = c
	}
	return view(sc.name[:len(qname)]), true
}

// find resolves a normalized name for a client in namespace ns, trying in
// order: the name; its Kubernetes expansions; then, for each search domain
// it ends with, the name without it and that name's expansions. Each
// candidate is tried as is and as wildcards (see tryHost).
func (s *Server) find(snap *workload.Snapshot, sc *scratch, name, ns string) (match, bool) {
	if m, ok := s.tryCandidates(snap, sc, name, "", ns); ok {
		return m, true
	}
	// The search list of a pod in ns: <ns>.svc.<domain>, svc.<domain>, <domain>.
	if ns != "" {
		if rest, ok := stripDomain(name, s.svcDomain); ok {
			if stripped, ok := stripDomain(rest, ns); ok {
				if m, ok := s.tryCandidates(snap, sc, stripped, stripped, ns); ok {
					return m, true
				}
			}
		}
	}
	for _, d := range [...]string{s.svcDomain, s.domain} {
		if stripped, ok := stripDomain(name, d); ok {
			if m, ok := s.tryCandidates(snap, sc, stripped, stripped, ns); ok {
				return m, true
			}
		}
	}
	return match{}, false
}

// tryCandidates tries name itself and then the Kubernetes FQDNs it may be
// short for, given the client's namespace ns:
//
//	1 label:            <name>.<ns>.svc.<domain>
//	2 labels:           <name>.svc.<domain>, <name>.<ns>.svc.<domain>
//	3 labels, *.svc:    <name>.<domain>, then <name>.svc.<domain>
//	3 labels otherwise: <name>.svc.<domain>
//	4 labels, *.svc:    <name>.<domain>
//
// (service, service.namespace, service.namespace.svc, and the
// pod.subdomain forms of the same).
func (s *Server) tryCandidates(snap *workload.Snapshot, sc *scratch, name, stripped, ns string) (match, bool) {
	if m, ok := s.tryHost(snap, sc, name, stripped, ns); ok {
		return m, true
	}
	endsSvc := strings.HasSuffix(name, ".svc")
	switch strings.Count(name, ".") + 1 {
	case 1:
		if ns != "" {
			return s.tryHost(snap, sc, s.build(sc, name, ns, s.svcDomain), stripped, ns)
		}
	case 2:
		if m, ok := s.tryHost(snap, sc, s.build(sc, name, s.svcDomain), stripped, ns); ok {
			return m, true
		}
		if ns != "" {
			return s.tryHost(snap, sc, s.build(sc, name, ns, s.svcDomain), stripped, ns)
		}
	case 3:
		if endsSvc {
			if m, ok := s.tryHost(snap, sc, s.build(sc, name, s.domain), stripped, ns); ok {
				return m, true
			}
		}
		return s.tryHost(snap, sc, s.build(sc, name, s.svcDomain), stripped, ns)
	case 4:
		if endsSvc {
			return s.tryHost(snap, sc, s.build(sc, name, s.domain), stripped, ns)
		}
	}
	return match{}, false
}

// build joins labels with dots into sc.cand. It returns "" when the result
// would not fit (no hostname matches "").
func (s *Server) build(sc *scratch, parts ...string) string {
	b := sc.cand[:0]
	for i, p := range parts {
		if len(b)+len(p)+1 > len(sc.cand) {
			return ""
		}
		if i > 0 {
			b = append(b, '.')
		}
		b = append(b, p...)
	}
	return view(b)
}

// tryHost looks host up and then its wildcards of decreasing specificity:
// a.b.c, *.b.c, *.c.
func (s *Server) tryHost(snap *workload.Snapshot, sc *scratch, host, stripped, ns string) (match, bool) {
	if host == "" {
		return match{}, false
	}
	try := host
	base := host
	for {
		if svc := s.pick(snap.ServicesByHostname(try), ns); svc != nil {
			wild := len(try) > 0 && try[0] == '*' && (len(try) == 1 || try[1] == '.')
			return match{svc: svc, stripped: stripped, wildcard: wild}, true
		}
		i := strings.IndexByte(base, '.')
		if i < 0 {
			return match{}, false
		}
		base = base[i+1:]
		b := append(append(sc.wild[:0], '*', '.'), base...)
		try = view(b)
	}
}

// pick chooses among the services of one hostname (one per namespace) the
// one a client in ns resolves: only services with VIPs, or Kubernetes
// headless services (hostname under .svc.<domain>), visible to ns; then
// the one in ns, else the last canonical one, else one in the preferred
// namespace, else the first.
func (s *Server) pick(svcs []*workload.Service, ns string) *workload.Service {
	var first, canonical, preferred *workload.Service
	for _, svc := range svcs {
		if len(svc.VIPs) == 0 && !strings.HasSuffix(svc.Hostname, s.svcSuffix) {
			continue // e.g. a ServiceEntry without addresses: let upstream DNS answer
		}
		if !svc.VisibleTo(ns) {
			continue
		}
		switch {
		case ns != "" && svc.Namespace == ns:
			return svc
		case svc.Canonical:
			canonical = svc
		case s.preferred != "" && svc.Namespace == s.preferred && preferred == nil:
			preferred = svc
		case first == nil:
			first = svc
		}
	}
	switch {
	case canonical != nil:
		return canonical
	case preferred != nil:
		return preferred
	}
	return first
}

// familyAllowed reports whether a service answers records of qtype at all:
// not AAAA with IPv6 disabled, and not the family a single-stack service
// lacks (a headless service's pods may be dual-stack while it is not).
func (s *Server) familyAllowed(svc *workload.Service, qtype uint16) bool {
	if qtype == dns.TypeAAAA && !s.ipv6 {
		return false
	}
	switch svc.IPFamilies {
	case workload.IPFamilyIPv4:
		return qtype == dns.TypeA
	case workload.IPFamilyIPv6:
		return qtype == dns.TypeAAAA
	}
	return true
}

// addresses collects into sc.addrs the addresses of svc of qtype's family:
// its VIPs on our network, or for a headless service the first address of
// that family of each endpoint's workload.
func (s *Server) addresses(snap *workload.Snapshot, sc *scratch, svc *workload.Service, qtype uint16) []netip.Addr {
	want4 := qtype == dns.TypeA
	out := sc.addrs[:0]
	if len(svc.VIPs) == 0 {
		for _, ep := range svc.Endpoints {
			w := snap.WorkloadByUID(ep.WorkloadUID)
			if w == nil {
				continue
			}
			for _, ip := range w.WorkloadIPs {
				if ip.Unmap().Is4() == want4 {
					out = append(out, ip.Unmap())
					break
				}
			}
		}
	} else {
		for _, vip := range svc.VIPs {
			if vip.Network == s.network && vip.Address.Unmap().Is4() == want4 {
				out = append(out, vip.Address.Unmap())
			}
		}
	}
	sc.addrs = out
	return out
}

// stripDomain returns name without the trailing ".domain" when name ends
// with it and has at least one more label.
func stripDomain(name, domain string) (string, bool) {
	if len(name) <= len(domain)+1 || !strings.HasSuffix(name, domain) || name[len(name)-len(domain)-1] != '.' {
		return "", false
	}
	return name[:len(name)-len(domain)-1], true
}
