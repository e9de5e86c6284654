package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/tls/certs"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	tlsrec "github.com/ztunnel-go/ztunnel/tls/record"
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
	ctx, cancel := context.WithTimeout(p.handshakes, p.cfg.HandshakeTimeout)
	tc, cs, err := tlsrec.Handshake(ctx, hbone.NewWriteBuffer(c), p.serverTLS(), true)
	cancel()
	if err != nil {
		p.log.Debug("inbound: TLS handshake failed", "src", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	peer, err := certs.PeerID(cs)
	if err != nil {
		p.log.Warn("inbound: peer has no usable identity", "src", c.RemoteAddr().String(), "err", err)
		tc.Close()
		return
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
		tc.Close()
		st.end()
	})
}

// serveHBONE handles one CONNECT stream: validate the authority, find the destination workload,
// enforce policy, connect to the app and relay.
func (p *Proxy) serveHBONE(s *hbone.Stream, req *hbone.Request) {
	pi, _ := s.Context().Value(peerKey{}).(peerInfo)
	target, err := netip.ParseAddrPort(req.Authority)
	if err != nil {
		s.Reject(http.StatusBadRequest)
		return
	}
	target = netip.AddrPortFrom(target.Addr().Unmap(), target.Port())
	if target.Addr() != pi.local.Addr() {
		// The tunnel must end at the workload the client connected to.
		s.Reject(http.StatusBadRequest)
		return
	}
	if p.isIllegalPort(target.Port()) {
		// A tunnel to the proxy's own ports would come straight back in.
		p.log.Debug("inbound: refusing a CONNECT to the proxy's own port", "src", pi.remote.String(), "authority", req.Authority)
		s.Reject(http.StatusServiceUnavailable)
		return
	}
	snap := p.cfg.Store.Snapshot()
	st := &connState{p: p} // its job: a place in p.wg from relayInbound on
	rec := &st.rec
	*rec = record{
		start: now(), inbound: true, src: packAddr(pi.remote), dst: packAddr(pi.local), hboneAddr: packAddr(target),
		srcID: identOf(pi.id), mtls: true,
	}
	rec.srcW = snap.WorkloadByAddr(p.cfg.Network, pi.remote.Addr())
	if rec.srcW != nil && rec.srcW.Identity() != pi.id {
		rec.srcW = nil // the address says one thing, the certificate another: trust the certificate
	}
	rec.dstW = snap.WorkloadByAddr(p.cfg.Network, target.Addr())
	if rec.dstW == nil {
		s.Reject(http.StatusServiceUnavailable)
		rec.open(p.cfg.Metrics)
		rec.finish(p.access, fmt.Errorf("unknown destination workload %s", target.Addr()), metrics.FlagConnect, 0, 0)
		return
	}
	rec.dstID = identOf(rec.dstW.Identity())
	rec.open(p.cfg.Metrics)

	pt, pc := rec.policyInputs()
	if d := snap.Policies().Evaluate(pt, &pc); !d.Allow {
		s.Reject(http.StatusUnauthorized)
		rec.finish(p.access, fmt.Errorf("policy rejection: %s", d.Reason), metrics.FlagDeny, 0, 0)
		return
	}

	app, err := p.dialApp(connectDeadline(p.cfg.ConnectTimeout), pi.remote.Addr(), target)
	if err != nil {
		s.Reject(http.StatusServiceUnavailable)
		rec.finish(p.access, fmt.Errorf("connect to app %s: %w", target, err), metrics.FlagConnect, 0, 0)
		return
	}
	if err := s.Respond(http.StatusOK); err != nil {
		app.Close()
		rec.finish(p.access, err, metrics.FlagConnect, 0, 0)
		return
	}
	s.Detach()
	p.wg.Add(1) // the 15008 connection's job is live while this handler runs: p.wg is not zero
	p.relayInbound(st, s, app)
}

// relayInbound relays an accepted inbound connection to the app while tracking it for drain and
// policy re-evaluation (from st.rec). It takes both connections and st (see relay).
func (p *Proxy) relayInbound(st *connState, client, app net.Conn) {
	st.closer = closePair{client, app}
	p.conns.add(st)
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
		p.log.Warn("inbound plaintext: refusing a connection to the proxy's own port", "src", src.String(), "dst", dst.String())
		c.Close()
		return
	}
	snap := p.cfg.Store.Snapshot()
	rec := &st.rec
	rec.start, rec.inbound, rec.src, rec.dst = now(), true, packAddr(src), packAddr(dst)
	rec.srcW = snap.WorkloadByAddr(p.cfg.Network, src.Addr())
	rec.dstW = snap.WorkloadByAddr(p.cfg.Network, dst.Addr())
	rec.open(p.cfg.Metrics)
	if rec.dstW == nil {
		c.Close()
		rec.finish(p.access, fmt.Errorf("unknown destination workload %s", dst.Addr()), metrics.FlagConnect, 0, 0)
		return
	}
	pt, pc := rec.policyInputs()
	if d := snap.Policies().Evaluate(pt, &pc); !d.Allow {
		c.Close()
		rec.finish(p.access, fmt.Errorf("policy rejection: %s", d.Reason), metrics.FlagDeny, 0, 0)
		return
	}
	app, err := p.dialApp(connectDeadline(p.cfg.ConnectTimeout), src.Addr(), dst)
	if err != nil {
		c.Close()
		rec.finish(p.access, fmt.Errorf("connect to app %s: %w", dst, err), metrics.FlagConnect, 0, 0)
		return
	}
	p.relayInbound(st, c, app)
}

// WatchPolicies re-evaluates live inbound connections whenever the store changes and closes
// those that are now denied. It returns when ctx ends.
func (p *Proxy) WatchPolicies(ctx context.Context) {
	ch, cancel := p.cfg.Store.Subscribe()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			if n := p.conns.reevaluate(p.cfg.Store.Snapshot().Policies()); n > 0 {
				p.log.Info("closed connections denied by updated policy", "count", n)
			}
		}
	}
}
