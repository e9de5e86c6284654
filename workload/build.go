package workload

import (
	"errors"
	"maps"
	"net/netip"
	"slices"

	"github.com/ztunnel-go/ztunnel/policy"
)

// builder derives the next Snapshot from a base one. It is owned by the
// single writer inside Store.applyLocked and discarded afterwards.
type builder struct {
	base *Snapshot

	workloads *shardWriter[string, *Workload]
	byAddr    *shardWriter[addrKey, []*Workload]
	byName    *shardWriter[nameKey, []*Workload]
	services  *shardWriter[string, *Service]
	byVIP     *shardWriter[addrKey, []*Service]
	byHost    *shardWriter[string, []*Service]
	eps       *shardWriter[string, endpointSet]

	epsOwned map[string]bool     // service keys whose endpointSet is a private copy
	touched  map[string]struct{} // service keys whose endpoints changed
	upserted map[string]bool     // service keys (re)built from a resource of this update

	cidrServices map[string]*Service // private copy of base.cidr.services once dirty; nil while clean
}

func newBuilder(base *Snapshot) *builder {
	return &builder{
		base:      base,
		workloads: newShardWriter(base.workloads),
		byAddr:    newShardWriter(base.byAddr),
		byName:    newShardWriter(base.byName),
		services:  newShardWriter(base.services),
		byVIP:     newShardWriter(base.byVIP),
		byHost:    newShardWriter(base.byHost),
		eps:       newShardWriter(base.eps),
		epsOwned:  make(map[string]bool),
		touched:   make(map[string]struct{}),
		upserted:  make(map[string]bool),
	}
}

// build applies u on top of base. It returns nil for the snapshot when u
// holds nothing that could be applied.
func build(base *Snapshot, u Update) (*Snapshot, error) {
	var errs []error
	workloads := make([]*Workload, 0, len(u.Workloads))
	for _, w := range u.Workloads {
		if err := validateWorkload(w); err != nil {
			errs = append(errs, err)
			continue
		}
		workloads = append(workloads, w)
	}
	services := make([]*Service, 0, len(u.Services))
	for _, s := range u.Services {
		if err := validateService(s); err != nil {
			errs = append(errs, err)
			continue
		}
		services = append(services, s)
	}
	policies := make([]*policy.Authorization, 0, len(u.Policies))
	for _, p := range u.Policies {
		if err := validatePolicy(p); err != nil {
			errs = append(errs, err)
			continue
		}
		policies = append(policies, p)
	}
	err := errors.Join(errs...)
	if len(workloads)+len(services)+len(policies)+len(u.RemoveWorkloads)+len(u.RemoveServices)+len(u.RemovePolicies) == 0 {
		return nil, err
	}

	b := newBuilder(base)
	for _, uid := range u.RemoveWorkloads {
		b.removeWorkload(uid)
	}
	for _, w := range workloads {
		normalizeWorkload(w)
		b.insertWorkload(w)
	}
	for _, key := range u.RemoveServices {
		b.removeService(key)
	}
	for _, s := range services {
		normalizeService(s)
		s.own = s.Endpoints
		key := s.Key()
		s.Endpoints = b.endpointsFor(s, key)
		b.insertService(s, key)
		b.upserted[key] = true
	}
	for key := range b.touched {
		if b.upserted[key] {
			continue
		}
		cur, ok := b.services.get(key, hashString(key))
		if !ok {
			continue // endpoints wait for their service
		}
		next := *cur
		next.Endpoints = b.endpointsFor(&next, key)
		b.insertService(&next, key)
	}

	next := &Snapshot{
		workloads: b.workloads.finish(),
		byAddr:    b.byAddr.finish(),
		byName:    b.byName.finish(),
		services:  b.services.finish(),
		byVIP:     b.byVIP.finish(),
		byHost:    b.byHost.finish(),
		eps:       b.eps.finish(),
		cidr:      base.cidr,
		policies:  base.policies,
	}
	if b.cidrServices != nil {
		next.cidr = newCIDRIndex(b.cidrServices)
	}
	if len(policies) > 0 || len(u.RemovePolicies) > 0 {
		next.policies = base.policies.With(policies, u.RemovePolicies)
	}
	return next, err
}

// normalizeWorkload puts a validated workload in the store's canonical form.
func normalizeWorkload(w *Workload) {
	if w.WorkloadIPs == nil {
		w.WorkloadIPs = []netip.Addr{}
	}
	for i, ip := range w.WorkloadIPs {
		w.WorkloadIPs[i] = ip.Unmap()
	}
	w.baggage = w.makeBaggage()
}

// normalizeService puts a validated service in the store's canonical form.
func normalizeService(s *Service) {
	if s.VIPs == nil {
		s.VIPs = []NetworkAddress{}
	}
	for i := range s.VIPs {
		s.VIPs[i].Address = s.VIPs[i].Address.Unmap()
	}
	for i, c := range s.CIDRVIPs {
		p := c.CIDR
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		s.CIDRVIPs[i].CIDR = p.Masked()
	}
	if s.Ports == nil {
		s.Ports = map[uint16]uint16{}
	}
	if s.SubjectAltNames == nil {
		s.SubjectAltNames = []string{}
	}
	for uid, ep := range s.Endpoints {
		if ep.WorkloadUID == "" {
			ep.WorkloadUID = uid
		}
	}
}

func (b *builder) removeWorkload(uid string) {
	h := hashString(uid)
	prev, ok := b.workloads.get(uid, h)
	if !ok {
		return
	}
	b.workloads.del(uid, h)
	if prev.NetworkMode != HostNetwork {
		for _, ip := range prev.WorkloadIPs {
			k, kh := addrKey{prev.Network, ip}, hashAddr(prev.Network, ip)
			ws, _ := b.byAddr.get(k, kh)
			if ws = without(ws, prev); len(ws) == 0 {
				b.byAddr.del(k, kh)
			} else {
				b.byAddr.set(k, kh, ws)
			}
		}
	}
	nk, nh := nameKey{prev.Namespace, prev.Name}, hashName(prev.Namespace, prev.Name)
	ws, _ := b.byName.get(nk, nh)
	if ws = without(ws, prev); len(ws) == 0 {
		b.byName.del(nk, nh)
	} else {
		b.byName.set(nk, nh, ws)
	}
	for _, svc := range prev.Services {
		b.setEndpoint(svc.String(), uid, nil)
	}
}

func (b *builder) insertWorkload(w *Workload) {
	b.removeWorkload(w.UID)
	b.workloads.set(w.UID, hashString(w.UID), w)
	if w.NetworkMode != HostNetwork {
		for _, ip := range w.WorkloadIPs {
			k, kh := addrKey{w.Network, ip}, hashAddr(w.Network, ip)
			ws, _ := b.byAddr.get(k, kh)
			b.byAddr.set(k, kh, with(ws, w))
		}
	}
	nk, nh := nameKey{w.Namespace, w.Name}, hashName(w.Namespace, w.Name)
	ws, _ := b.byName.get(nk, nh)
	b.byName.set(nk, nh, with(ws, w))
	for _, svc := range w.Services {
		b.setEndpoint(svc.String(), w.UID, &Endpoint{
			WorkloadUID: w.UID,
			Port:        w.ServicePorts[svc],
			Status:      w.Status,
		})
	}
}

// setEndpoint records (ep != nil) or forgets (ep == nil) the endpoint of
// workload uid in service key, and marks the service for rebuilding.
func (b *builder) setEndpoint(key, uid string, ep *Endpoint) {
	h := hashString(key)
	set, _ := b.eps.get(key, h)
	if ep == nil {
		if _, ok := set[uid]; !ok {
			return
		}
	}
	if !b.epsOwned[key] {
		set = maps.Clone(set)
		if set == nil {
			set = make(endpointSet, 1)
		}
		b.epsOwned[key] = true
	}
	if ep == nil {
		delete(set, uid)
	} else {
		set[uid] = ep
	}
	if len(set) == 0 {
		b.eps.del(key, h)
		delete(b.epsOwned, key)
	} else {
		b.eps.set(key, h, set)
	}
	b.touched[key] = struct{}{}
}

// endpointsFor merges a service's own endpoints with those its workloads
// contribute (the latter win), keeping those its health policy accepts.
func (b *builder) endpointsFor(s *Service, key string) map[string]*Endpoint {
	derived, _ := b.eps.get(key, hashString(key))
	out := make(map[string]*Endpoint, len(s.own)+len(derived))
	for uid, ep := range s.own {
		if s.includes(ep.Status) {
			out[uid] = ep
		}
	}
	for uid, ep := range derived {
		if s.includes(ep.Status) {
			out[uid] = ep
		} else {
			delete(out, uid)
		}
	}
	return out
}

func (b *builder) removeService(key string) {
	h := hashString(key)
	prev, ok := b.services.get(key, h)
	if !ok {
		return
	}
	b.services.del(key, h)
	for _, v := range prev.VIPs {
		k, kh := addrKey{v.Network, v.Address}, hashAddr(v.Network, v.Address)
		svcs, _ := b.byVIP.get(k, kh)
		if svcs = withoutService(svcs, prev); len(svcs) == 0 {
			b.byVIP.del(k, kh)
		} else {
			b.byVIP.set(k, kh, svcs)
		}
	}
	hh := hashString(prev.Hostname)
	svcs, _ := b.byHost.get(prev.Hostname, hh)
	if svcs = withoutService(svcs, prev); len(svcs) == 0 {
		b.byHost.del(prev.Hostname, hh)
	} else {
		b.byHost.set(prev.Hostname, hh, svcs)
	}
	if len(prev.CIDRVIPs) > 0 {
		b.cidrWrite()
		delete(b.cidrServices, key)
	}
}

func (b *builder) insertService(s *Service, key string) {
	b.removeService(key)
	b.services.set(key, hashString(key), s)
	for _, v := range s.VIPs {
		k, kh := addrKey{v.Network, v.Address}, hashAddr(v.Network, v.Address)
		svcs, _ := b.byVIP.get(k, kh)
		b.byVIP.set(k, kh, withService(svcs, s))
	}
	hh := hashString(s.Hostname)
	svcs, _ := b.byHost.get(s.Hostname, hh)
	b.byHost.set(s.Hostname, hh, withService(svcs, s))
	if len(s.CIDRVIPs) > 0 {
		b.cidrWrite()
		b.cidrServices[key] = s
	}
}

func (b *builder) cidrWrite() {
	if b.cidrServices == nil {
		b.cidrServices = maps.Clone(b.base.cidr.services)
		if b.cidrServices == nil {
			b.cidrServices = make(map[string]*Service)
		}
	}
}

// The index slices are shared with published snapshots, so these helpers
// always return a fresh slice.

func with(ws []*Workload, w *Workload) []*Workload {
	out := make([]*Workload, len(ws), len(ws)+1)
	copy(out, ws)
	return append(out, w)
}

func without(ws []*Workload, w *Workload) []*Workload {
	return slices.DeleteFunc(slices.Clone(ws), func(x *Workload) bool { return x == w })
}

func sameService(a, b *Service) bool {
	return a.Namespace == b.Namespace && a.Hostname == b.Hostname
}

func withService(svcs []*Service, s *Service) []*Service {
	out := make([]*Service, len(svcs), len(svcs)+1)
	copy(out, svcs)
	for i, x := range out {
		if sameService(x, s) {
			out[i] = s
			return out
		}
	}
	return append(out, s)
}

func withoutService(svcs []*Service, s *Service) []*Service {
	return slices.DeleteFunc(slices.Clone(svcs), func(x *Service) bool { return sameService(x, s) })
}
