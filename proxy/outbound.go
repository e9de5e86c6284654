package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/netutil"
	"github.com/ztunnel-go/ztunnel/tls/certs"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	tlsrec "github.com/ztunnel-go/ztunnel/tls/record"
	"github.com/ztunnel-go/ztunnel/workload"
)

// route is where an outbound connection goes.
type route struct {
	// dst is the address the app asked for (original destination).
	dst netip.AddrPort
	// target is where the bytes must arrive: the chosen endpoint's ip:targetPort, or dst. It is
	// the CONNECT authority when the route is HBONE.
	target netip.AddrPort
	// hbone is true when target is reached through an HBONE tunnel to hboneAddr.
	hbone     bool
	hboneAddr netip.AddrPort
	// expected are the identities the HBONE peer may present; expected[0] is dstW's own.
	expected []identity.ID
	// waypoint is true when hboneAddr is the waypoint in front of dst (then target == dst and
	// dstW is the waypoint workload).
	waypoint bool
	// lookup, when not empty, is the hostname of dstW, a workload known by hostname only: its
	// address is looked up when the connection is made (see lookupTarget), and until then
	// target (hboneAddr for a waypoint) holds only the port.
	lookup string
	// passthrough is true when dst is the VIP of a service whose load balancer passes
	// connections through to the original destination: target == dst, connected directly, and
	// dstW and dstSvc are nil, as ztunnel reports it.
	passthrough bool
	// double is true when the destination is on another network, reached through that
	// network's gateway with double HBONE (see viaGateway): hboneAddr and expected are the
	// gateway's, and inside the tunnel to it a second mTLS session and CONNECT go to the final
	// destination, which must present one of final. Both requests name authority, the service's
	// hostname:port; target is not used (invalid).
	double    bool
	authority string
	final     []identity.ID

	// dstW is the workload the connection reaches (the waypoint when there is one); dstSvc the
	// service the app addressed, waypoint or not.
	dstW   *workload.Workload
	dstSvc *workload.Service
}

// errNoHealthyEndpoint is returned for a service VIP with no usable endpoint, or without the
// port asked for.
var errNoHealthyEndpoint = errors.New("no healthy upstream")

// errUnknownWaypoint is returned when a waypoint cannot be resolved (findGateway).
var errUnknownWaypoint = errors.New("unknown waypoint")

// resolve picks the route for a connection from src (whose identity is srcID and workload srcW,
// nil when unknown) to dst, as ztunnel's build_request does:
//   - a service VIP whose service has a waypoint goes to the waypoint, always;
//   - a service VIP whose load balancer is in passthrough mode goes to dst itself, directly;
//   - any other service VIP goes to one of its healthy endpoints (service port mapped to the
//     endpoint's target port, see pickEndpoint for which), whatever waypoint that endpoint has,
//     at the endpoint's address of dst's family (see pickIP);
//   - a workload address whose workload has a waypoint goes to the waypoint, unless the
//     connection comes from that waypoint itself (identity and address both match);
//   - a mesh workload speaking HBONE is tunnelled, one speaking TCP and any other address are
//     connected directly.
//
// Where services share a VIP, the client's namespace (srcID's) chooses among them, and a
// service visible only in another namespace is not there for it (workload.ServiceByVIPFrom).
//
// To a waypoint, the route is always HBONE, the authority stays dst and the peer must present
// the waypoint workload's identity (or its service's subjectAltNames).
func (p *Proxy) resolve(snap *workload.Snapshot, src netip.Addr, srcID identity.ID, srcW *workload.Workload, dst netip.AddrPort) (route, error) {
	rt := route{dst: dst, target: dst}
	network := p.cfg.Network
	ns := srcID.Namespace
	if srcW == nil {
		srcW = p.anon
	}
	if svc := snap.ServiceByVIPFrom(network, dst.Addr(), ns); svc != nil {
		rt.dstSvc = svc
		if gw := serviceWaypoint(svc); gw != nil {
			return rt, p.viaWaypoint(snap, &rt, gw, ns, srcW)
		}
		if lb := svc.LoadBalancer; lb != nil && lb.Mode == workload.LBPassthrough {
			rt.dstSvc, rt.passthrough = nil, true
			return rt, nil
		}
		w, port, err := pickEndpoint(snap, svc, dst.Port(), false, srcW)
		if err != nil {
			return rt, fmt.Errorf("%w: %s", err, dst) // ztunnel's words: the address, not the service
		}
		rt.dstW = w
		if w.Network != network {
			return rt, p.viaGateway(snap, &rt, w, svc, ns, srcW)
		}
		ip := pickIP(w, dst.Addr(), svc.IPFamilies)
		switch {
		case ip.IsValid():
		case w.Hostname != "":
			rt.lookup = w.Hostname
		default:
			return rt, fmt.Errorf("service %s: endpoint %s has no address of the service's families (%v)", svc.Hostname, w.Name, svc.IPFamilies)
		}
		rt.target = netip.AddrPortFrom(ip, port)
	} else if w := snap.WorkloadByAddr(network, dst.Addr()); w != nil {
		rt.dstW = w
		if w.Waypoint != nil && !fromWaypoint(snap, w.Waypoint, src, srcID) {
			return rt, p.viaWaypoint(snap, &rt, w.Waypoint, ns, srcW)
		}
	}
	if w := rt.dstW; w != nil && w.Protocol == workload.ProtocolHBONE {
		rt.hbone = true
		rt.hboneAddr = netip.AddrPortFrom(rt.target.Addr(), p.cfg.Ports.RemoteHBONE)
		rt.expected = withSANs([]identity.ID{w.Identity()}, rt.dstSvc)
	}
	return rt, nil
}

// withSANs appends the parseable subjectAltNames of svc (nil: none) that ids lacks.
func withSANs(ids []identity.ID, svc *workload.Service) []identity.ID {
	if svc == nil {
		return ids
	}
	for _, san := range svc.SubjectAltNames {
		if id, err := identity.Parse(san); err == nil && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// serviceWaypoint returns the waypoint of svc: one of its weighted waypoints drawn by weight,
// else its single waypoint, else nil.
func serviceWaypoint(svc *workload.Service) *workload.GatewayAddress {
	var total uint64
	for _, ww := range svc.WeightedWaypoints {
		total += uint64(ww.Weight)
	}
	if total > 0 {
		n := rand.Uint64N(total)
		for i := range svc.WeightedWaypoints {
			ww := &svc.WeightedWaypoints[i]
			if n < uint64(ww.Weight) {
				return &ww.Destination
			}
			n -= uint64(ww.Weight)
		}
	}
	return svc.Waypoint
}

// viaWaypoint points rt at the waypoint gw: HBONE to the waypoint workload's address, with the
// authority left at the original destination. rt.dstSvc is kept (the service the app asked
// for); rt.dstW becomes the waypoint, which is what the metrics and the access log name. ns is
// the client's namespace and srcW its workload (see findGateway).
func (p *Proxy) viaWaypoint(snap *workload.Snapshot, rt *route, gw *workload.GatewayAddress, ns string, srcW *workload.Workload) error {
	w, addr, svc, ok := findGateway(snap, gw, rt.dst.Addr(), ns, srcW, true)
	if !ok {
		// ztunnel's words, whatever kept it from an address of the waypoint.
		return fmt.Errorf("%w: waypoint %s not found", errUnknownWaypoint, gatewayName(gw.Destination))
	}
	if w.Network != p.cfg.Network {
		// Through its network's gateway, to the waypoint; what it must present is its service's
		// subjectAltNames.
		rt.dstW = w
		return p.viaGateway(snap, rt, w, svc, ns, srcW)
	}
	if !addr.Addr().IsValid() && w.Hostname == "" {
		return fmt.Errorf("waypoint %s: workload %s has no address", gw.Destination, w.Name)
	}
	rt.dstW = w
	rt.waypoint = true
	rt.target = rt.dst
	rt.hbone = true
	rt.hboneAddr = addr
	if !addr.Addr().IsValid() {
		rt.lookup = w.Hostname
	}
	rt.expected = withSANs([]identity.ID{w.Identity()}, svc)
	return nil
}

// findGateway resolves gw, a waypoint's (waypoint true) or a network gateway's address, to the
// workload behind it and the address to dial on it; ok is false when it names nothing known,
// a service without a usable endpoint, or a workload without an address. svc is the gateway's service when gw led to
// one (its subjectAltNames are accepted too), else nil.
//   - network/IP: a service VIP there is load-balanced on port hboneMtlsPort; otherwise the
//     workload at that address, on hboneMtlsPort.
//   - namespace/hostname: the service of that name, load-balanced on port hboneMtlsPort (its
//     target port is dialed); otherwise the workload with that hostname, on hboneMtlsPort.
//
// A waypoint's service is load-balanced as ztunnel's Waypoint resolution does (pickEndpoint's
// waypoint), a network gateway's as any service. A gateway workload known by hostname only
// gives addr with the port alone: its address is looked up when the connection is made, as for
// any such workload. So does a waypoint on another network, reached through its own network's
// gateway (see viaGateway).
//
// orig is the destination the app asked for: the gateway address of the same family is
// preferred when the gateway is named by hostname. ns, the client's namespace, chooses among
// services sharing the gateway's VIP, as for any destination, and srcW, the client's workload,
// is what the gateway service's routing preferences compare with.
func findGateway(snap *workload.Snapshot, gw *workload.GatewayAddress, orig netip.Addr, ns string, srcW *workload.Workload, waypoint bool) (w *workload.Workload, addr netip.AddrPort, svc *workload.Service, ok bool) {
	port := gw.HBONEMTLSPort
	var err error
	switch d := gw.Destination; {
	case d.Address != nil:
		orig = d.Address.Address
		if svc = snap.ServiceByVIPFrom(d.Address.Network, d.Address.Address, ns); svc != nil {
			w, port, err = pickEndpoint(snap, svc, port, waypoint, srcW)
		} else {
			w = snap.WorkloadByAddr(d.Address.Network, d.Address.Address)
		}
	case d.Hostname != nil:
		if svc = snap.ServiceByName(*d.Hostname); svc != nil {
			w, port, err = pickEndpoint(snap, svc, port, waypoint, srcW)
		} else {
			w = workloadByHostname(snap, *d.Hostname)
		}
	}
	if err != nil || w == nil {
		return nil, addr, nil, false
	}
	families := workload.IPFamilyAutomatic
	if svc != nil {
		families = svc.IPFamilies
	}
	ip := pickIP(w, orig, families)
	if !ip.IsValid() && w.Hostname == "" && w.NetworkGateway == nil {
		return nil, addr, nil, false // no address, and none to look up
	}
	return w, netip.AddrPortFrom(ip, port), svc, true
}

// errUnknownGateway is returned when a network gateway cannot be resolved (findGateway).
var errUnknownGateway = errors.New("unknown network gateway")

// gatewayName is how an unknown waypoint's or network gateway's error names it: by its
// hostname, else by its network/address.
func gatewayName(d workload.GatewayDestination) string {
	if d.Hostname != nil {
		return d.Hostname.Hostname
	}
	return d.String()
}

// viaGateway points rt at up, a workload on another network (a service's endpoint, or the
// waypoint in front of it), through that network's gateway, as ztunnel does: double HBONE. The
// outer tunnel goes to the gateway (up's NetworkGateway, resolved by findGateway) and must
// reach the gateway workload's identity or its service's subjectAltNames; the inner one, which
// the gateway forwards without looking inside, must reach an identity among the
// subjectAltNames of upSvc (up's service: the addressed service, or the waypoint's), since the
// gateway, not this proxy, picks the workload there. Both CONNECTs name the addressed service
// rt.dstSvc by hostname, with the port the app asked for. rt.dstW becomes the gateway workload,
// which the metrics and the access log name until the inner answer's baggage names the
// destination. ns and srcW are the client's, as for findGateway.
func (p *Proxy) viaGateway(snap *workload.Snapshot, rt *route, up *workload.Workload, upSvc *workload.Service, ns string, srcW *workload.Workload) error {
	svc := rt.dstSvc
	if svc == nil {
		// Only services are reachable on other networks (their workloads' addresses are not
		// looked up there); ztunnel treats this as a bug of its own or istiod's.
		return fmt.Errorf("workload %s on network %q is not addressed through a service", up.Name, up.Network)
	}
	gw := up.NetworkGateway
	if gw == nil {
		return fmt.Errorf("workload %s is on network %q, which has no network gateway", up.Name, up.Network)
	}
	var final []identity.ID
	if upSvc != nil {
		final = withSANs(nil, upSvc)
	}
	if len(final) == 0 {
		name := svc.Hostname
		if upSvc != nil {
			name = upSvc.Hostname
		}
		return fmt.Errorf("service %s lists no subjectAltNames: what answers behind network %q's gateway cannot be verified", name, up.Network)
	}
	w, addr, gwSvc, ok := findGateway(snap, gw, rt.dst.Addr(), ns, srcW, false)
	if !ok {
		return fmt.Errorf("%w: network gateway %s not found", errUnknownGateway, gatewayName(gw.Destination))
	}
	rt.dstW = w
	rt.double, rt.hbone = true, true
	rt.hboneAddr = addr
	if !addr.Addr().IsValid() {
		rt.lookup = w.Hostname
	}
	rt.expected = withSANs([]identity.ID{w.Identity()}, gwSvc)
	rt.final = final
	rt.authority = net.JoinHostPort(svc.Hostname, strconv.Itoa(int(rt.dst.Port())))
	rt.target = netip.AddrPort{}
	return nil
}

// workloadByHostname scans the workloads for one with that namespace and hostname (ztunnel's
// uncommon fallback for a gateway named by hostname that is no service; allocates).
func workloadByHostname(snap *workload.Snapshot, n workload.NamespacedHostname) *workload.Workload {
	for _, w := range snap.Workloads() {
		if w.Hostname == n.Hostname && w.Namespace == n.Namespace {
			return w
		}
	}
	return nil
}

// pickIP returns want when w has it; else, of w's addresses that families allows, the first of
// want's family, else the first; else the zero Addr.
func pickIP(w *workload.Workload, want netip.Addr, families workload.IPFamily) netip.Addr {
	if slices.Contains(w.WorkloadIPs, want) {
		return want
	}
	var first netip.Addr
	for _, ip := range w.WorkloadIPs {
		switch {
		case families == workload.IPFamilyIPv4 && !ip.Is4(), families == workload.IPFamilyIPv6 && ip.Is4():
			continue
		case ip.Is4() == want.Is4():
			return ip
		case !first.IsValid():
			first = ip
		}
	}
	return first
}

// fromWaypoint reports whether the connection from src with identity srcID comes from one of the
// workloads behind the waypoint gw (its identity and one of its addresses both match). Such a
// connection has been through the waypoint already and goes straight to its destination.
func fromWaypoint(snap *workload.Snapshot, gw *workload.GatewayAddress, src netip.Addr, srcID identity.ID) bool {
	if srcID.IsZero() {
		return false
	}
	is := func(w *workload.Workload) bool {
		return w != nil && w.Identity() == srcID && slices.Contains(w.WorkloadIPs, src)
	}
	var svc *workload.Service
	switch d := gw.Destination; {
	case d.Address != nil:
		if w := snap.WorkloadByAddr(d.Address.Network, d.Address.Address); w != nil {
			return is(w)
		}
		svc = snap.ServiceByVIP(d.Address.Network, d.Address.Address)
	case d.Hostname != nil:
		if svc = snap.ServiceByName(*d.Hostname); svc == nil {
			return is(workloadByHostname(snap, *d.Hostname))
		}
	}
	if svc == nil {
		return false
	}
	for uid := range svc.Endpoints {
		if is(snap.WorkloadByUID(uid)) {
			return true
		}
	}
	return false
}

// pickEndpoint chooses one of svc's endpoints as ztunnel's load balancer does and maps the
// service port to its target port. The snapshot already left out the unhealthy endpoints unless
// the service's load balancer allows them.
//   - Under a load balancer in Strict or Failover mode (Kubernetes' trafficDistribution
//     PreferClose, Istio's locality failover), only the endpoints that share the most of the
//     routing preferences with the client's workload src are candidates (see localityRank);
//     Strict also drops every endpoint that does not share them all. A nil src is a client
//     whose locality is unknown: every field empty.
//   - Among the candidates, an endpoint is drawn with a probability proportional to its
//     workload's capacity (1 unless istiod says otherwise).
//
// The service must list svcPort, as ztunnel requires: an endpoint's own mapping of a port the
// service does not list is not used. For a waypoint's service (waypoint true), an endpoint with
// an application tunnel is exempt: it is reached on svcPort itself when no mapping knows the
// port.
func pickEndpoint(snap *workload.Snapshot, svc *workload.Service, svcPort uint16, waypoint bool, src *workload.Workload) (*workload.Workload, uint16, error) {
	_, listed := svc.Ports[svcPort]
	if !listed && !waypoint {
		return nil, 0, errNoHealthyEndpoint
	}
	if src == nil {
		src = &noWorkload
	}
	// Two passes and no candidate list, so that a connection allocates nothing here: the first
	// finds the best rank and the candidates' total capacity, the second draws among them. The
	// passes may see the endpoints in different orders; a draw by cumulative capacity is fair in
	// any order.
	best, weight := -1, uint64(0)
	for _, ep := range svc.Endpoints {
		w, _, rank, ok := endpointCandidate(snap, svc, ep, svcPort, listed, waypoint, src)
		switch {
		case !ok || rank < best:
		case rank > best:
			best, weight = rank, uint64(w.Capacity)
		default:
			weight += uint64(w.Capacity)
		}
	}
	if weight == 0 {
		return nil, 0, errNoHealthyEndpoint
	}
	n := rand.Uint64N(weight)
	var last *workload.Workload
	var lastPort uint16
	for _, ep := range svc.Endpoints {
		w, port, rank, ok := endpointCandidate(snap, svc, ep, svcPort, listed, waypoint, src)
		if !ok || rank != best || w.Capacity == 0 {
			continue
		}
		if n < uint64(w.Capacity) {
			return w, port, nil
		}
		n -= uint64(w.Capacity)
		last, lastPort = w, port
	}
	return last, lastPort, nil // not reached: n is below the candidates' total capacity
}

// endpointCandidate returns ep's workload, its target port for svcPort and its rank under svc's
// load balancer (0 without routing preferences); ok is false when ep cannot be picked: no
// workload, nothing to connect to, no port, or outside a Strict load balancer's preferences.
// listed tells whether svc lists svcPort.
func endpointCandidate(snap *workload.Snapshot, svc *workload.Service, ep *workload.Endpoint, svcPort uint16, listed, waypoint bool, src *workload.Workload) (w *workload.Workload, port uint16, rank int, ok bool) {
	w = snap.WorkloadByUID(ep.WorkloadUID)
	if w == nil {
		return nil, 0, 0, false
	}
	if !workloadIP(w).IsValid() && w.Hostname == "" && (w.Network == src.Network || w.NetworkGateway == nil) {
		// Nothing to connect to. A workload of another network is reached through its gateway,
		// without an address; one of the client's own network never is, although istiod,
		// which sends every client the same workloads, may give it a gateway.
		return nil, 0, 0, false
	}
	if !listed && w.ApplicationTunnel == nil {
		return nil, 0, 0, false // a waypoint endpoint (see pickEndpoint)
	}
	port, ok = svc.TargetPort(ep, svcPort)
	if !ok && waypoint && w.ApplicationTunnel != nil && w.ApplicationTunnel.Port != 0 {
		port, ok = svcPort, true
	}
	if !ok {
		return nil, 0, 0, false
	}
	if lb := svc.LoadBalancer; lb != nil && lb.Mode != workload.LBStandard {
		if rank, ok = localityRank(lb, src, w); !ok {
			return nil, 0, 0, false
		}
	}
	return w, port, rank, true
}

// noWorkload stands for a client whose workload is unknown to pickEndpoint's callers that give
// none: no locality, network, node or cluster. Never modified. (The proxy's own routing uses
// Proxy.anon, which is on the proxy's network.)
var noWorkload workload.Workload

// localityRank scores endpoint w against the client's workload src under lb's routing
// preferences, as ztunnel does: the preferences are compared in order and the rank is the
// number matched before the first that does not match. When Network is the first preference,
// an endpoint in another network skips it (and the rank counts the other scopes from there),
// while one in the client's network ranks above every endpoint elsewhere. ok is false when lb
// is Strict and w does not match every preference.
func localityRank(lb *workload.LoadBalancer, src, w *workload.Workload) (rank int, ok bool) {
	prefs := lb.RoutingPreferences
	networkFirst := len(prefs) > 0 && prefs[0] == workload.ScopeNetwork
	adjust := 0
	for _, scope := range prefs {
		var match bool
		switch scope {
		case workload.ScopeRegion:
			match = src.Locality.Region == w.Locality.Region
		case workload.ScopeZone:
			match = src.Locality.Zone == w.Locality.Zone
		case workload.ScopeSubzone:
			match = src.Locality.Subzone == w.Locality.Subzone
		case workload.ScopeNode:
			match = src.Node == w.Node
		case workload.ScopeCluster:
			match = src.ClusterID == w.ClusterID
		case workload.ScopeNetwork:
			match = src.Network == w.Network
			if networkFirst {
				if !match {
					continue
				}
				adjust = len(prefs) - 1
			}
		}
		if !match {
			break
		}
		rank++
	}
	if lb.Mode == workload.LBStrict && rank != len(prefs) {
		return 0, false
	}
	return rank + adjust, true
}

// lookupTarget looks up rt.lookup, the hostname of the workload rt goes to, and completes
// rt.target and the tunnel's address (for a waypoint, the tunnel's address only) with one of its
// addresses, as ztunnel's on-demand DNS does: drawn at random among those of the original
// destination's family, else among the others. The lookup is counted in
// istio_on_demand_dns_total with rec's source labels.
func (p *Proxy) lookupTarget(rt *route, rec *record) error {
	p.cfg.Metrics.OnDemandDNS(rec.labels(metrics.ReporterSource), rt.lookup)
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ConnectTimeout)
	addrs, err := p.cfg.LookupHost(ctx, rt.lookup)
	cancel()
	if err != nil {
		return fmt.Errorf("on-demand DNS lookup of %s: %w", rt.lookup, err)
	}
	same := 0 // addrs[:same] are of the destination's family
	for i, a := range addrs {
		a = a.Unmap()
		addrs[i] = a
		if a.Is4() == rt.dst.Addr().Is4() {
			addrs[same], addrs[i] = a, addrs[same]
			same++
		}
	}
	var ip netip.Addr
	switch {
	case same > 0:
		ip = addrs[rand.IntN(same)]
	case len(addrs) > 0:
		ip = addrs[rand.IntN(len(addrs))]
	default:
		return fmt.Errorf("on-demand DNS lookup of %s: no addresses", rt.lookup)
	}
	if rt.waypoint || rt.double {
		rt.hboneAddr = netip.AddrPortFrom(ip, rt.hboneAddr.Port()) // target stays as it is
		return nil
	}
	rt.target = netip.AddrPortFrom(ip, rt.target.Port())
	if rt.hbone {
		rt.hboneAddr = netip.AddrPortFrom(ip, rt.hboneAddr.Port())
	}
	return nil
}

// workloadIP returns the workload's first address (the one HBONE reaches).
func workloadIP(w *workload.Workload) netip.Addr {
	if len(w.WorkloadIPs) == 0 {
		return netip.Addr{}
	}
	return w.WorkloadIPs[0]
}

// handleOutbound serves one connection captured on 15001.
func (p *Proxy) handleOutbound(c net.Conn, st *connState) {
	dst, ok := p.originalDst(c, "outbound")
	if !ok {
		return
	}
	p.outbound(c, addrPort(c.RemoteAddr()), dst, st)
}

// originalDst returns where the redirected connection c was headed before the capture
// (SO_ORIGINAL_DST). When that cannot be read, it logs why as listener, closes c and reports
// false.
func (p *Proxy) originalDst(c net.Conn, listener string) (netip.AddrPort, bool) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return netip.AddrPort{}, false
	}
	dst, err := netutil.OriginalDst(tc)
	if err != nil {
		p.log.Warn(listener+": no original destination", "src", c.RemoteAddr().String(), "err", err)
		c.Close()
		return netip.AddrPort{}, false
	}
	return dst, true
}

// outbound proxies client (already accepted, from src) to dst. It owns client, and hands it
// and st to the relay (see relay) once connected.
func (p *Proxy) outbound(client net.Conn, src, dst netip.AddrPort, st *connState) {
	defer func() {
		if !st.kept {
			client.Close()
		}
	}()
	rec := &st.rec
	rec.start, rec.src, rec.dst = now(), packAddr(src), packAddr(dst)
	if p.isOwnPort(dst) || dst == addrPort(client.LocalAddr()) {
		earlyDeny(p.access, src, dst, false, errSelfCall)
		return
	}
	snap := p.cfg.Store.Snapshot()
	rec.srcW = snap.WorkloadByAddr(p.cfg.Network, src.Addr())
	srcID := p.cfg.Self
	if rec.srcW != nil {
		srcID = rec.srcW.Identity()
	}
	rec.srcID = identOf(srcID)
	rt, err := p.resolve(snap, src.Addr(), srcID, rec.srcW, dst)
	if err == nil && rt.dstW == nil && rt.dstSvc == nil && !rt.passthrough && p.cfg.OnDemand != nil {
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ConnectTimeout)
		if derr := p.cfg.OnDemand(ctx, p.cfg.Network, dst.Addr()); derr != nil {
			p.log.Debug("on-demand lookup failed", "dst", dst.String(), "err", derr)
		}
		cancel()
		snap = p.cfg.Store.Snapshot()
		rt, err = p.resolve(snap, src.Addr(), srcID, rec.srcW, dst)
	}
	if err == nil && rt.lookup != "" {
		err = p.lookupTarget(&rt, rec)
	}
	if err != nil {
		// Nowhere to go: not counted, as by ztunnel (earlyDeny).
		earlyDeny(p.access, src, dst, false, err)
		return
	}
	rec.dstW, rec.dstSvc = rt.dstW, rt.dstSvc
	if rt.hbone {
		// As ztunnel logs it: dst.addr is where the bytes went (ip:15008), dst.hbone_addr the
		// authority inside the tunnel (the original destination when going to a waypoint, the
		// service's hostname:port through a network gateway), and dst.identity the identity of
		// the workload reached (the waypoint's, the gateway's).
		rec.mtls = true
		rec.dst = packAddr(rt.hboneAddr)
		rec.hboneAddr = packAddr(rt.target)
		if rt.double {
			rec.noted().authority = hostAuthority(rt.authority)
		}
		rec.dstID = identOf(rt.expected[0])
	} else {
		rec.dst = packAddr(rt.target) // where the bytes go: a service's endpoint, not its VIP
	}
	// Where the client connected, when the record does not show it otherwise, for the dump
	// (Connections): a service's VIP in the flags and the port; anything else (through a
	// network gateway) in the note.
	if orig := packAddr(dst); orig != rec.impliedDst() && !rec.setDialedVIP(dst) {
		rec.noted().origDst = orig
	}
	if rt.hbone && rec.srcID.IsZero() {
		rec.open(p.cfg.Metrics, p.access)
		rec.finish(p.access, errors.New("unknown source workload: no identity for HBONE"), metrics.FlagIdentity, 0, 0)
		return
	}
	if !rt.double {
		// Through a network gateway, the connection is counted once the inner tunnel answered,
		// whose baggage names the destination, as ztunnel counts it.
		rec.open(p.cfg.Metrics, p.access)
	}
	st.closer = client
	p.track(st)
	defer func() {
		if !st.kept {
			p.conns.remove(st)
		}
	}()

	// An Open on a pooled connection with room needs no context or timer (Pool.OpenBy); the
	// other ways to connect make one from the deadline.
	deadline := time.Now().Add(p.cfg.ConnectTimeout)
	var upstream net.Conn
	consumed := 0 // bytes read from the client before it was connected (early data)
	if rt.double {
		upstream, err = p.connectDouble(deadline, &rt, rec, src)
		rec.open(p.cfg.Metrics, p.access)
	} else if rt.hbone {
		req := &hbone.Request{
			Method:    http.MethodConnect,
			Authority: rt.target.String(),
			Header:    requestHeader(src, rt.dstSvc, rec.srcW),
		}
		// To a workload's ztunnel (never a waypoint), the client's bytes go with the request
		// and after it without waiting for the answer (see Config.EarlyData): the relay starts
		// once the request is out, and its completion tells a refused request from a relay
		// error (connState.Ended).
		open := p.cfg.EarlyData && !rt.waypoint
		var early *[earlyMax]byte
		if tc, ok := client.(*net.TCPConn); ok && open {
			early = earlyPool.Get().(*[earlyMax]byte)
			n, rerr := netutil.ReadReady(tc, early[:])
			if rerr != nil {
				// The client reset before it was connected: as if it had during the relay.
				earlyPool.Put(early)
				rec.finish(p.access, relayErr(&netutil.DirError{AToB: true, Err: rerr}), metrics.FlagNone, 0, 0)
				return
			}
			req.Early = early[:n]
			consumed = n
		}
		key := hbone.Key{
			Source:   rec.srcID.URI(),
			Expected: joinIDs(rt.expected),
			Addr:     rt.hboneAddr,
		}
		var s *hbone.Stream
		if open {
			s, err = p.pool.OpenBy(deadline, key, req)
		} else {
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			s, err = p.pool.Connect(ctx, key, req)
			cancel()
		}
		if err == nil {
			upstream = s
			rec.toServer.Add(int64(len(req.Early)))
		}
		if early != nil {
			earlyPool.Put(early) // Connect keeps nothing of it
		}
	} else {
		upstream, err = p.dialUpstream(connectUntil(deadline), netip.AddrPort{}, rt.target)
	}
	if err != nil {
		// A client whose first bytes were read (early data) learns of the failure by a reset,
		// as it does when they stay unread in its socket (the kernel resets then). The relay
		// does the same for a tunnel refused after it started (netutil.Refuser).
		if tc, ok := client.(*net.TCPConn); ok && consumed > 0 {
			tc.SetLinger(0)
		}
		// The line's dst.addr and dst.hbone_addr say where it went (a waypoint, a network
		// gateway); the error says what failed, in ztunnel's words.
		err, flags := outboundFailure(err)
		rec.finish(p.access, err, flags, 0, 0)
		return
	}
	p.relay(st, client, upstream)
}

// connectDouble opens the tunnel of a route through a network gateway (rt.double), as ztunnel
// does: a pooled HBONE stream to the gateway (the outer tunnel, which the gateway routes by its
// authority, the service's hostname:port), then inside it an mTLS session with the final
// destination as the client's identity, and HBONE over that, whose one CONNECT carries the same
// authority and the client's network (x-forwarded-network). The inner connection is the
// connection's own, never pooled: the gateway picks the workload behind it for each tunnel.
// When the inner answer carries baggage, it names the destination in rec (dstW, and dstID the
// identity the destination presented), as in ztunnel. The returned conn owns both tunnels.
func (p *Proxy) connectDouble(deadline time.Time, rt *route, rec *record, src netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	header := requestHeader(src, rt.dstSvc, rec.srcW)
	key := hbone.Key{Source: rec.srcID.URI(), Expected: joinIDs(rt.expected), Addr: rt.hboneAddr}
	outer, err := p.pool.Connect(ctx, key, &hbone.Request{Method: http.MethodConnect, Authority: rt.authority, Header: header})
	if err != nil {
		return nil, err
	}
	cfg, err := p.cfg.Certs.ClientConfig(ctx, rec.srcID.ID(), rt.final)
	if err != nil {
		outer.Close()
		return nil, err
	}
	gen, crl := p.crlGeneration()
	tc := tls.Client(outer, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		if errors.Is(err, certs.ErrRevoked) {
			p.cfg.Metrics.CRLRejected(metrics.ReporterSource)
		}
		outer.Close()
		return nil, &handshakeError{addr: rt.hboneAddr, err: fmt.Errorf("inner tunnel to %s: %w", rt.authority, err)}
	}
	cs := tc.ConnectionState()
	peer, _ := certs.PeerID(cs) // verified by the handshake
	if crl && p.trackTunnel(tc, rec.srcID.ID(), cs.PeerCertificates, metrics.ReporterSource, gen) {
		tc.Close()
		return nil, &handshakeError{addr: rt.hboneAddr, err: fmt.Errorf("inner tunnel to %s: %w", rt.authority, certs.ErrRevoked)}
	}
	cc, err := hbone.NewClientConn(tc, p.cfg.HBONE)
	if err != nil {
		p.untrackTunnel(tc)
		tc.Close()
		return nil, err
	}
	inner := make(hbone.Header, 0, len(header)+1)
	inner = append(append(inner, header...), hbone.Field{Name: forwardedNetworkHeader, Value: p.cfg.Network})
	var answer hbone.Header
	s, err := cc.Connect(ctx, &hbone.Request{Method: http.MethodConnect, Authority: rt.authority, Header: inner, Response: &answer})
	if err != nil {
		p.untrackTunnel(tc)
		cc.Close()
		return nil, err
	}
	if w := baggageWorkload(answer); w != nil {
		rec.dstW, rec.dstID = w, identOf(peer)
	}
	return &gatewayConn{Stream: s, cc: cc, outer: outer, p: p}, nil
}

// gatewayConn is the inner stream of a connection through a network gateway, which owns the
// inner HBONE connection (and through it the inner TLS session and the outer stream): closing
// it closes them all, and forgets the inner tunnel (revoke.go). The relay uses the stream's
// own methods.
type gatewayConn struct {
	*hbone.Stream
	cc    *hbone.ClientConn
	outer *hbone.Stream // the pooled stream to the gateway the inner tunnel runs over
	p     *Proxy
}

func (g *gatewayConn) Close() error {
	err := g.Stream.Close()
	g.cc.Close()
	g.p.untrackTunnel(g.Stream.Transport())
	return err
}

// earlyMax bounds the early data of one outbound connection (see Config.EarlyData): one DATA
// frame of the smallest size a peer may allow, which a client's first flight (a TLS
// ClientHello, an HTTP request's headers) usually fits.
const earlyMax = 16 << 10

// earlyPool holds *[earlyMax]byte, taken only while an outbound HBONE connection is opened.
var earlyPool = sync.Pool{New: func() any { return new([earlyMax]byte) }}

// requestHeader returns the fields of an outbound CONNECT, as ztunnel sends them: forwarded
// (for="<client ip:port>", with ;host=<hostname> when the app addressed service svc), the
// baggage that describes the client's workload srcW (nil: unknown, then none), which lets the
// server's telemetry name a client it has no record of, and traceparent, a new W3C trace
// context for each connection (version 00, random trace and parent ids, no flags), which
// ztunnel's log lines carry on both sides. The two values made here share one allocation.
func requestHeader(src netip.AddrPort, svc *workload.Service, srcW *workload.Workload) hbone.Header {
	host := ""
	if svc != nil {
		host = svc.Hostname
	}
	var b strings.Builder
	b.Grow(len(`for="[]:65535";host=`) + len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") + len(host) + traceparentLen)
	var buf [64]byte
	b.WriteString(`for="`)
	b.Write(src.AppendTo(buf[:0]))
	b.WriteByte('"')
	if host != "" {
		b.WriteString(";host=")
		b.WriteString(host)
	}
	n := b.Len()
	b.Write(appendTraceparent(buf[:0]))
	values := b.String()
	h := append(make(hbone.Header, 0, 3), hbone.Field{Name: "forwarded", Value: values[:n]}, hbone.Field{Name: traceparentHeader, Value: values[n:]})
	if srcW != nil {
		if bg := srcW.Baggage(); bg != "" {
			h = append(h, hbone.Field{Name: baggageHeader, Value: bg})
		}
	}
	return h
}

// baggageHeader is the W3C baggage header, which ztunnels use to describe the workloads at
// either end of a tunnel (workload.Workload.Baggage).
const baggageHeader = "baggage"

// traceparentHeader is the W3C trace context header; traceparentLen the length of its value.
const (
	traceparentHeader = "traceparent"
	traceparentLen    = len("00-") + 32 + len("-") + 16 + len("-00")
)

// appendTraceparent appends a traceparent value of a new trace: version 00, a random trace
// id and parent id, no flags.
func appendTraceparent(b []byte) []byte {
	b = append(b, "00-"...)
	b = appendHex64(b, rand.Uint64())
	b = appendHex64(b, rand.Uint64())
	b = append(b, '-')
	b = appendHex64(b, rand.Uint64())
	return append(b, "-00"...)
}

// appendHex64 appends v as 16 lower-case hex digits.
func appendHex64(b []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, digits[v>>uint(shift)&0xf])
	}
	return b
}

// dialUpstream makes a TCP connection carrying the proxy's socket options, from src when valid.
func (p *Proxy) dialUpstream(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
	d, laddr := p.dialer, netip.AddrPort{}
	if src.IsValid() {
		d, laddr = p.dialerFrom, netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	}
	// DialTCP takes the addresses as they are: no string to format and no resolver to parse it.
	// Given no local address it binds the zero one; p.dialer's sockets leave the port of that
	// bind to connect (netutil: IP_BIND_ADDRESS_NO_PORT), so it reserves nothing. p.dialerFrom's
	// port is chosen by bind, away from the ports the client itself uses (netutil.SocketOptions.Dialer).
	if p.cfg.Netns == nil { // no closure and no captured variables to allocate
		return asConn(d.DialTCP(ctx, "tcp", laddr, dst))
	}
	var c net.Conn
	err := p.cfg.Netns(func() (err error) {
		c, err = asConn(d.DialTCP(ctx, "tcp", laddr, dst))
		return err
	})
	return c, err
}

// asConn returns a dial's result as a net.Conn, nil (not a typed nil) on error.
func asConn(tc *net.TCPConn, err error) (net.Conn, error) {
	if err != nil {
		return nil, err
	}
	return tc, nil
}

// dialHBONE is the pool's dialer: TCP with the proxy's mark, then the mTLS handshake as the
// source identity, verifying the server is one of the expected identities.
func (p *Proxy) dialHBONE(ctx context.Context, k hbone.Key) (net.Conn, error) {
	src, err := identity.Parse(k.Source)
	if err != nil {
		return nil, err
	}
	expected, err := splitIDs(k.Expected)
	if err != nil {
		return nil, err
	}
	cfg, err := p.cfg.Certs.ClientConfig(ctx, src, expected)
	if err != nil {
		return nil, err
	}
	raw, err := p.dialUpstream(ctx, netip.AddrPort{}, k.Addr)
	if err != nil {
		return nil, err
	}
	// After crypto/tls's handshake, tls/record carries the TLS 1.3 records
	// (fewer copies and syscalls); the write buffer lets the HBONE engine send
	// several records per syscall when crypto/tls keeps the connection.
	gen, crl := p.crlGeneration()
	tc, cs, err := tlsrec.Handshake(ctx, hbone.NewWriteBuffer(raw), cfg, false)
	if err != nil {
		if errors.Is(err, certs.ErrRevoked) {
			p.cfg.Metrics.CRLRejected(metrics.ReporterSource)
		}
		raw.Close()
		return nil, &handshakeError{addr: k.Addr, err: err}
	}
	// The pool reports the connection's end to untrackTunnel (PoolConfig.Closed).
	if crl && p.trackTunnel(tc, src, cs.PeerCertificates, metrics.ReporterSource, gen) {
		tc.Close()
		return nil, &handshakeError{addr: k.Addr, err: certs.ErrRevoked}
	}
	return tc, nil
}

// The record layer writes to the socket under the write buffer itself while
// the buffer passes writes through (it only buffers under crypto/tls).
var _ tlsrec.WriteThrough = (*hbone.WriteBuffer)(nil)

// handshakeError is a failed mTLS handshake with an HBONE peer (response flag TLS_FAILURE).
type handshakeError struct {
	addr netip.AddrPort
	err  error
}

// Error is the handshake's error alone: the access line's dst.addr names the peer.
func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

func joinIDs(ids []identity.ID) string {
	if len(ids) == 1 {
		return ids[0].String()
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

func splitIDs(s string) ([]identity.ID, error) {
	var out []identity.ID
	for part := range strings.SplitSeq(s, ",") {
		id, err := identity.Parse(part)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}

// benign maps the errors of an orderly close to nil.
func benign(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
