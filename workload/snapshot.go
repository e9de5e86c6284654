package workload

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"github.com/ztunnel-go/ztunnel/policy"
)

// Snapshot is one immutable version of the configuration. All lookups are
// safe for concurrent use, take no locks and do not allocate (except the
// sorted listings meant for dumps). Returned values are shared: callers must
// not modify them.
type Snapshot struct {
	version uint64

	workloads shards[string, *Workload]    // by UID
	byAddr    shards[addrKey, []*Workload] // by network/IP; HostNetwork workloads are not indexed
	byName    shards[nameKey, []*Workload] // by namespace/name
	services  shards[string, *Service]     // by "namespace/hostname"
	byVIP     shards[addrKey, []*Service]  // by exact network/VIP, one per namespace+hostname
	byHost    shards[string, []*Service]   // by hostname, one per namespace
	eps       shards[string, endpointSet]  // workload-derived endpoints by service key; kept while the service is absent
	cidr      *cidrIndex                   // never nil
	policies  *policy.Set                  // never nil
}

// endpointSet maps workload UID to endpoint; immutable once published.
type endpointSet = map[string]*Endpoint

func emptySnapshot(version uint64) *Snapshot {
	return &Snapshot{version: version, cidr: &cidrIndex{}, policies: policy.NewSet()}
}

// Version counts the updates applied to the store; it grows by one with
// each Apply or Replace that changed something.
func (s *Snapshot) Version() uint64 { return s.version }

// Policies returns the authorization policies.
func (s *Snapshot) Policies() *policy.Set { return s.policies }

// WorkloadByUID returns the workload with that UID, or nil.
func (s *Snapshot) WorkloadByUID(uid string) *Workload {
	w, _ := s.workloads.get(uid, hashString(uid))
	return w
}

// WorkloadByAddr returns the workload with IP ip in network, or nil. When
// several claim the address, pods win over other kinds, then HBONE over
// TCP (ztunnel's ranking).
func (s *Snapshot) WorkloadByAddr(network string, ip netip.Addr) *Workload {
	ip = ip.Unmap().WithZone("")
	ws, _ := s.byAddr.get(addrKey{network, ip}, hashAddr(network, ip))
	return bestWorkload(ws)
}

// WorkloadByName returns the workload with that namespace and name (the
// fallback lookup for a pod announced by name), or nil. Ties are ranked as
// in WorkloadByAddr.
func (s *Snapshot) WorkloadByName(namespace, name string) *Workload {
	ws, _ := s.byName.get(nameKey{namespace, name}, hashName(namespace, name))
	return bestWorkload(ws)
}

func bestWorkload(ws []*Workload) *Workload {
	switch len(ws) {
	case 0:
		return nil
	case 1:
		return ws[0]
	}
	var best *Workload
	bestRank := -1
	for _, w := range ws {
		r := 0
		if strings.Contains(w.UID, "//Pod/") {
			r += 2
		}
		if w.Protocol == ProtocolHBONE {
			r++
		}
		if r >= bestRank {
			best, bestRank = w, r
		}
	}
	return best
}

// Service returns the service with key "namespace/hostname", or nil.
func (s *Snapshot) Service(key string) *Service {
	svc, _ := s.services.get(key, hashString(key))
	return svc
}

// ServiceByName returns the service with that namespace and hostname, or nil.
func (s *Snapshot) ServiceByName(n NamespacedHostname) *Service {
	for _, svc := range s.ServicesByHostname(n.Hostname) {
		if svc.Namespace == n.Namespace {
			return svc
		}
	}
	return nil
}

// ServicesByHostname returns the services with that hostname, one per
// namespace, or nil.
func (s *Snapshot) ServicesByHostname(host string) []*Service {
	svcs, _ := s.byHost.get(host, hashString(host))
	return svcs
}

// ServiceByHostFrom returns the service of that hostname a client in
// namespace ns reaches, or nil: among the services of one hostname in
// several namespaces, those not visible to ns are skipped, then ns's own
// wins, else a canonical one, else the first (as ServiceByVIPFrom chooses).
func (s *Snapshot) ServiceByHostFrom(host, ns string) *Service {
	return bestService(s.ServicesByHostname(host), ns)
}

// ServicesByVIP returns every service with exactly that VIP (several
// namespaces may share one), or nil. CIDR VIPs are not consulted.
func (s *Snapshot) ServicesByVIP(network string, ip netip.Addr) []*Service {
	ip = ip.Unmap().WithZone("")
	svcs, _ := s.byVIP.get(addrKey{network, ip}, hashAddr(network, ip))
	return svcs
}

// ServiceByVIP returns the service behind VIP ip in network, or nil, for a
// client whose namespace is unknown: ServiceByVIPFrom with no namespace.
func (s *Snapshot) ServiceByVIP(network string, ip netip.Addr) *Service {
	return s.ServiceByVIPFrom(network, ip, "")
}

// ServiceByVIPFrom returns the service a client in namespace ns reaches at
// VIP ip in network, or nil, choosing among services that share an address
// as ztunnel does:
//   - an exact VIP first: services not visible to ns are skipped; then a
//     service in ns wins, else a canonical one (the last listed), else the
//     first listed;
//   - else the visible CIDR VIPs containing ip, ranked by being in ns, then
//     by prefix length, then by being canonical (the first listed among
//     equals), so a wide CIDR in the client's namespace beats a narrow one
//     elsewhere.
//
// ns "" (the client's namespace is unknown) filters nothing and prefers no
// namespace.
func (s *Snapshot) ServiceByVIPFrom(network string, ip netip.Addr, ns string) *Service {
	if svc := bestService(s.ServicesByVIP(network, ip), ns); svc != nil {
		return svc
	}
	return s.cidr.lookup(network, ip.Unmap().WithZone(""), ns)
}

// bestService picks among services sharing one exact VIP (see
// ServiceByVIPFrom).
func bestService(svcs []*Service, ns string) *Service {
	var first, canonical *Service
	for _, svc := range svcs {
		if ns != "" {
			if !svc.VisibleTo(ns) {
				continue
			}
			if svc.Namespace == ns {
				return svc
			}
		}
		if svc.Canonical {
			canonical = svc
		} else if first == nil {
			first = svc
		}
	}
	if canonical != nil {
		return canonical
	}
	return first
}

// NumWorkloads returns the number of workloads.
func (s *Snapshot) NumWorkloads() int { return s.workloads.len() }

// NumServices returns the number of services.
func (s *Snapshot) NumServices() int { return s.services.len() }

// Workloads returns every workload sorted by UID (for dumps; allocates).
func (s *Snapshot) Workloads() []*Workload {
	out := make([]*Workload, 0, s.workloads.len())
	s.workloads.each(func(_ string, w *Workload) { out = append(out, w) })
	slices.SortFunc(out, func(a, b *Workload) int { return strings.Compare(a.UID, b.UID) })
	return out
}

// Services returns every service sorted by hostname, then namespace (for
// dumps, as ztunnel orders them; allocates).
func (s *Snapshot) Services() []*Service {
	out := make([]*Service, 0, s.services.len())
	s.services.each(func(_ string, svc *Service) { out = append(out, svc) })
	slices.SortFunc(out, func(a, b *Service) int {
		return cmp.Or(strings.Compare(a.Hostname, b.Hostname), strings.Compare(a.Namespace, b.Namespace))
	})
	return out
}

// cidrIndex answers longest-prefix VIP lookups. Services with CIDR VIPs
// are rare, so the index is rebuilt whole when one of them changes; a
// lookup probes one map per distinct prefix length present.
type cidrIndex struct {
	services map[string]*Service // by key: every service with CIDR VIPs
	lens4    []int               // distinct IPv4 prefix lengths, longest first
	lens6    []int               // distinct IPv6 prefix lengths, longest first
	byPrefix map[cidrKey][]*Service
}

type cidrKey struct {
	network string
	prefix  netip.Prefix
}

func newCIDRIndex(services map[string]*Service) *cidrIndex {
	ix := &cidrIndex{services: services, byPrefix: make(map[cidrKey][]*Service)}
	keys := make([]string, 0, len(services))
	for k := range services {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic order among services sharing a prefix
	seen4, seen6 := map[int]bool{}, map[int]bool{}
	for _, k := range keys {
		svc := services[k]
		for _, c := range svc.CIDRVIPs {
			ck := cidrKey{c.Network, c.CIDR}
			ix.byPrefix[ck] = append(ix.byPrefix[ck], svc)
			if c.CIDR.Addr().Is4() {
				seen4[c.CIDR.Bits()] = true
			} else {
				seen6[c.CIDR.Bits()] = true
			}
		}
	}
	for b := range seen4 {
		ix.lens4 = append(ix.lens4, b)
	}
	for b := range seen6 {
		ix.lens6 = append(ix.lens6, b)
	}
	slices.SortFunc(ix.lens4, func(a, b int) int { return b - a })
	slices.SortFunc(ix.lens6, func(a, b int) int { return b - a })
	return ix
}

// lookup returns the best CIDR VIP service for ip as ServiceByVIPFrom ranks
// them: the distinct prefix lengths are probed longest first, and a service
// replaces the best so far only when it ranks strictly higher, so the first
// listed wins among equals.
func (ix *cidrIndex) lookup(network string, ip netip.Addr, ns string) *Service {
	lens := ix.lens6
	if ip.Is4() {
		lens = ix.lens4
	}
	type rank struct {
		inNS      bool
		bits      int
		canonical bool
	}
	better := func(a, b rank) bool {
		if a.inNS != b.inNS {
			return a.inNS
		}
		if a.bits != b.bits {
			return a.bits > b.bits
		}
		return a.canonical && !b.canonical
	}
	var best *Service
	var bestRank rank
	for _, l := range lens {
		p, err := ip.Prefix(l)
		if err != nil {
			continue
		}
		for _, svc := range ix.byPrefix[cidrKey{network, p}] {
			if ns != "" && !svc.VisibleTo(ns) {
				continue
			}
			r := rank{inNS: ns != "" && svc.Namespace == ns, bits: l, canonical: svc.Canonical}
			if best == nil || better(r, bestRank) {
				best, bestRank = svc, r
			}
		}
		// Shorter prefixes rank lower unless they bring the client's namespace, so the
		// search ends here when that cannot happen any more.
		if best != nil && (ns == "" || bestRank.inNS) {
			return best
		}
	}
	return best
}
