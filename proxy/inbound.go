package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/internal/boundedmap"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/tls/certs"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	tlsrec "github.com/ztunnel-go/ztunnel/tls/record"
	"github.com/ztunnel-go/ztunnel/workload"
)

// peerInfo is what the HBONE handler knows of the connection a stream arrived on; it travels
// in the context ServeConn gives every stream.
type peerInfo struct {
	id     identity.ID    // verified client identity
	local  netip.AddrPort // the address the client dialed (pod IP:15008)
	remote netip.AddrPort // the client's address
}

type peerKey struct{}

// handleInboundHBONE terminates mTLS on a connection accepted on 15008 and serves its streams.
func (p *Proxy) handleInboundHBONE(c net.Conn, st *connState) {
	// As in dialHBONE: tls/record after crypto/tls's handshake, the write
	// buffer for when crypto/tls keeps the connection.
	gen, crl := p.crlGeneration()
	ctx, cancel := context.WithTimeout(p.handshakes, p.cfg.HandshakeTimeout)
	tc, cs, err := tlsrec.Handshake(ctx, hbone.NewWriteBuffer(c), p.serverTLS(), true)
	cancel()
	if err != nil {
		if errors.Is(err, certs.ErrRevoked) {
			p.cfg.Metrics.CRLRejected(metrics.ReporterDestination)
		}
		if p.handshakes.Err() == nil { // not cut short by a drain
			earlyDeny(p.access, addrPort(c.RemoteAddr()), addrPort(c.LocalAddr()), true, tlsHandshakeError(err))
		}
		c.Close()
		return
	}
	peer, err := certs.PeerID(cs)
	if err != nil {
		p.log.Warn("inbound: peer has no usable identity", "src", c.RemoteAddr().String(), "err", err)
		tc.Close()
		return
	}
	if crl {
		if p.trackTunnel(tc, p.localID(c.LocalAddr()), cs.PeerCertificates, metrics.ReporterDestination, gen) {
			p.log.Debug("inbound: peer certificate revoked by the reloaded revocation lists", "src", c.RemoteAddr().String())
			tc.Close()
			return
		}
	}
	ctx = context.WithValue(context.Background(), peerKey{}, peerInfo{
		id: peer, local: addrPort(c.LocalAddr()), remote: addrPort(c.RemoteAddr()),
	})
	// Serve returns once the connection's read loop parks (the peer went
	// quiet): this goroutine (the accept worker) is free, and the connection
	// holds none while idle. The connection keeps its job (its socket count,
	// its connection-limit slot, its place in p.wg) until it ends.
	st.kept = true
	p.server.Serve(ctx, tc, func(err error) {
		if err := benign(err); err != nil {
			p.log.Debug("inbound: HBONE connection ended", "src", c.RemoteAddr().String(), "err", err)
		}
		if crl {
			p.untrackTunnel(tc)
		}
		tc.Close()
		st.end()
	})
}

// serveHBONE handles one CONNECT stream: validate the authority, find the destination workload,
// enforce policy, connect to the app and relay.
//
// The authority is an ip:port, or a service's hostname:port: the inner request of double HBONE,
// which a client on another network sends through its network gateway. Then the service port
// is mapped to the workload's target port, as ztunnel does, and the client's address (the
// gateway's) says nothing of the client when the request's x-forwarded-network names another
// network. An ip:port is normally the workload's own; another address is allowed, as by
// ztunnel, when the workload takes an application tunnel (it is told the address) or is the
// waypoint of the workload or service at that address (a "sandwiched" waypoint). Either way the
// connection goes to the workload, on the authority's port, or on its application tunnel's
// (appTunnel).
func (p *Proxy) serveHBONE(s *hbone.Stream, req *hbone.Request) {
	pi, _ := s.Context().Value(peerKey{}).(peerInfo)
	// A request refused before its destination is resolved is not counted (earlyDeny).
	target, host, ok := parseAuthority(req.Authority)
	if !ok {
		s.Reject(http.StatusBadRequest)
		earlyDeny(p.access, pi.remote, pi.local, true, fmt.Errorf("no valid authority pseudo header: %s", req.Authority))
		return
	}
	snap := p.cfg.Store.Snapshot()
	authority := target // what the client asked for, for an application tunnel's PROXY header
	if host == "" {
		if target.Addr() != pi.local.Addr() {
			if snap = p.tunnelAllowed(snap, pi.local.Addr(), target.Addr()); snap == nil {
				// The tunnel must end at the workload the client connected to.
				s.Reject(http.StatusBadRequest)
				earlyDeny(p.access, pi.remote, pi.local, true, fmt.Errorf("ip mismatch: %s != %s", pi.local.Addr(), target.Addr()))
				return
			}
			target = netip.AddrPortFrom(pi.local.Addr(), target.Port())
		}
		if p.isIllegalPort(target.Port()) {
			// A tunnel to the proxy's own ports would come straight back in.
			s.Reject(http.StatusServiceUnavailable)
			earlyDeny(p.access, pi.remote, pi.local, true, errSelfCall)
			return
		}
	}
	st := &connState{p: p} // its job: a place in p.wg from relayInbound on
	rec := &st.rec
	*rec = record{
		start: now(), flags: flagInbound, src: packAddr(pi.remote), dst: packAddr(pi.local), hboneAddr: packAddr(authority),
		srcID: identOf(pi.id), mtls: true,
	}
	if origin := req.Header.Get(forwardedNetworkHeader); origin == "" || strings.EqualFold(origin, p.cfg.Network) {
		rec.srcW = snap.WorkloadByAddr(p.cfg.Network, pi.remote.Addr())
		if rec.srcW != nil && rec.srcW.Identity() != pi.id {
			rec.srcW = nil // the address says one thing, the certificate another: trust the certificate
		}
	}
	if rec.srcW == nil && p.cfg.Baggage {
		rec.srcW = baggageWorkload(req.Header)
	}
	rec.dstW = snap.WorkloadByAddr(p.cfg.Network, pi.local.Addr())
	if rec.dstW == nil {
		s.Reject(http.StatusServiceUnavailable)
		earlyDeny(p.access, pi.remote, pi.local, true, fmt.Errorf("unknown destination workload %s", pi.local.Addr()))
		return
	}
	rec.dstID = identOf(rec.dstW.Identity())
	if host != "" {
		var err error
		rec.dstSvc, target, err = p.hostnameTarget(snap, rec.dstW, pi.local.Addr(), host, authority.Port())
		if rec.dstSvc != nil {
			// Logged as the client named it, once it names a known service.
			rec.noted().authority = hostAuthority(rec.dstSvc.Hostname + ":" + strconv.Itoa(int(authority.Port())))
		}
		if err != nil {
			s.Reject(http.StatusServiceUnavailable)
			earlyDeny(p.access, pi.remote, pi.local, true, err)
			return
		}
	}
	tun, err := p.appTunnel(rec.dstW, rec.dstSvc, target, authority)
	if err != nil {
		s.Reject(http.StatusServiceUnavailable)
		earlyDeny(p.access, pi.remote, pi.local, true, err)
		return
	}
	// Policy sees the connection as ztunnel's does: to the workload's address, on the port
	// dialed (a localhost application tunnel's address is not the workload's).
	rec.port = tun.dial.Port()
	fwd := forwardedHost(req.Header.Get("forwarded"))
	rec.dstSvc = inboundService(snap, rec.dstW, rec.dstSvc, fwd, tun.dial.Port())
	switch { // the dump's originalDst, as ztunnel's (Connections)
	case fwd == "":
	case rec.dstSvc != nil && rec.dstSvc.Hostname == fwd:
		rec.flags |= flagHostNamed
	default:
		rec.noted().forwarded = strings.Clone(fwd) // not the whole header's string
	}
	rec.open(p.cfg.Metrics, p.access)

	pt, pc := rec.policyInputs()
	if d := snap.Policies().Evaluate(pt, &pc); !d.Allow {
		s.Reject(http.StatusUnauthorized)
		rec.finish(p.access, policyRejection(d.Reason), metrics.FlagDeny, 0, 0)
		return
	}

	ctx := connectDeadline(p.cfg.ConnectTimeout)
	var app net.Conn
	if tun.localhost {
		app, err = p.dialUpstream(ctx, netip.AddrPort{}, tun.dial)
	} else {
		app, err = p.dialApp(ctx, pi.remote.Addr(), tun.dial)
	}
	if err != nil {
		err = connectionFailed(err)
	} else if tun.proxy.IsValid() {
		if herr := writeProxyHeader(ctx, app, pi.remote, tun.proxy, pi.id); herr != nil {
			app.Close()
			err = ioError(herr)
		}
	}
	if err != nil {
		s.Reject(http.StatusServiceUnavailable)
		rec.finish(p.access, err, metrics.FlagConnect, 0, 0)
		return
	}
	if p.cfg.Baggage {
		err = s.RespondWith(http.StatusOK, hbone.Header{{Name: baggageHeader, Value: rec.dstW.Baggage()}})
	} else {
		err = s.Respond(http.StatusOK)
	}
	if err != nil {
		app.Close()
		rec.finish(p.access, err, metrics.FlagConnect, 0, 0)
		return
	}
	s.Detach()
	p.wg.Add(1) // the 15008 connection's job is live while this handler runs: p.wg is not zero
	p.relayInbound(st, s, app)
}

// inboundService is the service an inbound connection to w on port dport is reported against
// (destination_service), as ztunnel's guess_inbound_service picks it: among the candidates (the
// service a CONNECT named by hostname, else the services w is an endpoint of), the one whose
// hostname the client's forwarded header named, else the first with a port that targets dport
// on w (directly or through w's endpoint's own port map); nil when none does. The client's word
// only chooses among w's own services.
func inboundService(snap *workload.Snapshot, w *workload.Workload, named *workload.Service, host string, dport uint16) *workload.Service {
	if named != nil {
		if host == named.Hostname || targets(named, w, dport) {
			return named
		}
		return nil
	}
	if host != "" {
		for _, n := range w.Services {
			if svc := snap.ServiceByName(n); svc != nil && svc.Hostname == host {
				return svc
			}
		}
	}
	for _, n := range w.Services {
		if svc := snap.ServiceByName(n); svc != nil && targets(svc, w, dport) {
			return svc
		}
	}
	return nil
}

// targets reports whether a port of svc targets dport on w.
func targets(svc *workload.Service, w *workload.Workload, dport uint16) bool {
	ep := svc.Endpoints[w.UID]
	for sport, tport := range svc.Ports {
		if tport == dport {
			return true
		}
		if ep != nil {
			if p, ok := ep.Port[sport]; ok && p == dport {
				return true
			}
		}
	}
	return false
}

// forwardedHost returns the host parameter of a forwarded header (RFC 7239; what ztunnel's
// requestHeader writes: for="ip:port";host=name), unquoted, or "" (also for non-ASCII values,
// as ztunnel).
func forwardedHost(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] >= 0x80 {
			return ""
		}
	}
	for part := range strings.SplitSeq(v, ";") {
		if h, ok := strings.CutPrefix(strings.TrimSpace(part), "host="); ok {
			h = strings.TrimPrefix(h, `"`)
			return strings.TrimSuffix(h, `"`)
		}
	}
	return ""
}

// baggageWorkload returns the workload the baggage fields of h describe (workload.FromBaggage),
// nil when there are none: ztunnel's derived source, for a client the store has no record of
// (one behind another network's gateway, or not yet known). Workloads are shared by baggage
// value (baggageWorkloads), so the connections of one client keep one between them.
func baggageWorkload(h hbone.Header) *workload.Workload {
	key, n := "", 0
	for _, f := range h {
		if strings.EqualFold(f.Name, baggageHeader) {
			if n > 0 {
				key += "," // as FromBaggage reads them, several fields are one list
			}
			key += f.Value
			n++
		}
	}
	switch {
	case n == 0:
		return nil
	case len(key) > maxSharedBaggage:
		return workload.FromBaggage(key) // the connection's own: the map keeps no large values
	}
	return baggageWorkloads.Get(key, workload.FromBaggage)
}

// baggageWorkloads holds the workloads made from baggage values, at most maxIDCache of them, so
// that clients that come and go cannot grow it without limit. Entries never change.
var baggageWorkloads = boundedmap.New[string, *workload.Workload](maxIDCache)

// maxSharedBaggage bounds the baggage values baggageWorkloads keeps (a ztunnel's are about 200
// bytes), so that peers sending large distinct values cannot make it hold maxIDCache of them.
const maxSharedBaggage = 1024

// forwardedNetworkHeader names the network a double-HBONE client is on (ztunnel's
// x-forwarded-network), set on the inner request only.
const forwardedNetworkHeader = "x-forwarded-network"

// parseAuthority splits a CONNECT authority: an ip:port gives target (unmapped) and host "";
// a hostname:port gives host and target with the port alone. ok is false for anything else.
func parseAuthority(authority string) (target netip.AddrPort, host string, ok bool) {
	if ap, err := netip.ParseAddrPort(authority); err == nil {
		if ap.Addr().Zone() != "" {
			return target, "", false // no pod address has a zone
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), "", true
	}
	h, ps, err := net.SplitHostPort(authority)
	if err != nil || h == "" || strings.ContainsAny(authority, "[]%") {
		return target, "", false
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return target, "", false // an address without brackets, or some other oddity
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || port == 0 {
		return target, "", false
	}
	return netip.AddrPortFrom(netip.Addr{}, uint16(port)), h, true
}

// hostnameTarget resolves a CONNECT to service host on svcPort, received by workload w at
// local: the service of that hostname w's namespace sees, and local on the port w's endpoint
// maps svcPort to, else the service's target port. A named port w's endpoint does not map, or a
// port of the proxy's own, is an error. The errors are in ztunnel's words.
func (p *Proxy) hostnameTarget(snap *workload.Snapshot, w *workload.Workload, local netip.Addr, host string, svcPort uint16) (*workload.Service, netip.AddrPort, error) {
	svc := snap.ServiceByHostFrom(host, w.Namespace)
	if svc == nil {
		return nil, netip.AddrPort{}, fmt.Errorf("no service or workload for hostname: %s", host)
	}
	port, ok := svc.TargetPort(svc.Endpoints[w.UID], svcPort)
	if !ok {
		return svc, netip.AddrPort{}, fmt.Errorf("requested service %s:%d found, but cannot resolve port", host, svcPort)
	}
	if p.isIllegalPort(port) {
		return svc, netip.AddrPort{}, errSelfCall
	}
	return svc, netip.AddrPortFrom(local, port), nil
}

// relayInbound relays an accepted inbound connection to the app while tracking it for drain and
// policy re-evaluation (from st.rec). It takes both connections and st (see relay).
func (p *Proxy) relayInbound(st *connState, client, app net.Conn) {
	st.closer = closePair{client, app}
	p.track(st)
	p.relay(st, client, app)
}

// dialApp connects to the local app, from the client's own IP when OrigSrc is on and the kernel
// allows it, else from the pod's IP.
func (p *Proxy) dialApp(ctx context.Context, client netip.Addr, target netip.AddrPort) (net.Conn, error) {
	if p.cfg.OrigSrc && client.IsValid() && client != target.Addr() {
		c, err := p.dialUpstream(ctx, netip.AddrPortFrom(client, 0), target)
		if err == nil {
			return c, nil
		}
		p.log.Debug("inbound: transparent connect failed, using the pod address", "err", err)
	}
	return p.dialUpstream(ctx, netip.AddrPort{}, target)
}

// handleInboundPlain serves a plaintext connection captured on 15006.
func (p *Proxy) handleInboundPlain(c net.Conn, st *connState) {
	dst, ok := p.originalDst(c, "inbound plaintext")
	if !ok {
		return
	}
	src := addrPort(c.RemoteAddr())
	if p.isOwnPort(dst) || p.isIllegalPort(dst.Port()) || dst == addrPort(c.LocalAddr()) {
		c.Close()
		earlyDeny(p.access, src, dst, true, errSelfCall)
		return
	}
	snap := p.cfg.Store.Snapshot()
	rec := &st.rec
	rec.start, rec.flags, rec.src, rec.dst = now(), flagInbound, packAddr(src), packAddr(dst)
	rec.srcW = snap.WorkloadByAddr(p.cfg.Network, src.Addr())
	rec.dstW = snap.WorkloadByAddr(p.cfg.Network, dst.Addr())
	if rec.dstW == nil {
		c.Close()
		earlyDeny(p.access, src, dst, true, fmt.Errorf("unknown destination workload %s", dst.Addr()))
		return
	}
	rec.dstSvc = inboundService(snap, rec.dstW, nil, "", dst.Port())
	rec.open(p.cfg.Metrics, p.access)
	pt, pc := rec.policyInputs()
	if d := snap.Policies().Evaluate(pt, &pc); !d.Allow {
		c.Close()
		rec.finish(p.access, policyRejection(d.Reason), metrics.FlagDeny, 0, 0)
		return
	}
	app, err := p.dialApp(connectDeadline(p.cfg.ConnectTimeout), src.Addr(), dst)
	if err != nil {
		c.Close()
		rec.finish(p.access, connectionFailed(err), metrics.FlagConnect, 0, 0)
		return
	}
	p.relayInbound(st, c, app)
}

// WatchPolicies re-evaluates live inbound connections whenever the store changes and closes
// those that are now denied; with revocation lists (CRL_PATH), it also ends the tunnels whose
// peer a reload of the lists revokes (revoke.go). Between changes it holds no goroutine: each
// change starts one for its sweep (rerun). stop ends the watch and waits for a sweep in
// progress; call it once.
func (p *Proxy) WatchPolicies() (stop func()) {
	policies := &rerun{fn: func() {
		// One line per connection, as ztunnel writes; the access line's error says only
		// that a policy change closed it.
		for _, d := range p.conns.reevaluate(p.cfg.Store.Snapshot().Policies()) {
			p.log.Info("connection closed because it's no longer allowed after a policy update",
				"src.addr", d.src.String(), "src.identity", d.srcID, "dst.addr", d.dst.String(), "reason", d.reason)
		}
	}}
	cancelStore := p.cfg.Store.OnChange(policies.kick)
	cancelCRL := func() {}
	revoked := &rerun{fn: func() {
		if n := p.sweepRevoked(); n > 0 {
			p.log.Info("ended tunnels whose peer certificate the reloaded revocation lists revoke", "count", n)
		}
	}}
	if crl := p.cfg.Certs.CRL(); crl != nil {
		cancelCRL = crl.OnChange(revoked.kick)
	}
	return func() {
		cancelStore()
		cancelCRL()
		policies.stop()
		revoked.stop()
	}
}
