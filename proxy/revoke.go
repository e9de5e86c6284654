package proxy

import (
	"crypto/x509"
	"io"
	"net"
	"sync"
	"time"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/netutil"
	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// Revocation of live tunnels (CRL_PATH), as ztunnel does it: when the revocation lists change,
// every mTLS connection the proxy holds is judged again, and one whose peer's certificate (or
// one of its issuers) a list now revokes is ended at once, with whatever it carries. An
// accepted tunnel (15008) and a pooled one the proxy made are judged alike, and so is the inner
// tunnel of a connection through another network's gateway; only their ends differ, as in
// ztunnel: an accepted one gets GOAWAY(NO_ERROR) before its close, one the proxy made is cut
// (ztunnel drops its client connection). Each ended tunnel counts once
// in istio_crl_policy_rejections_total, and each connection it carried ends with the response
// flag CERT_REVOKED. A handshake refused for a revoked peer counts in the same counter.
//
// Without revocation lists none of this runs: no tunnel is kept.

// tunnel is an mTLS connection the proxy accepted or made while revocation lists are
// configured: what judging its peer again takes.
type tunnel struct {
	nc       net.Conn            // the TLS connection (tls/record's or crypto/tls's)
	local    identity.ID         // the identity whose roots verified the peer
	peer     []*x509.Certificate // the chain the peer presented, leaf first
	at       time.Time           // when its handshake completed
	reporter string              // metrics.ReporterDestination (accepted) or ReporterSource (made)
	// ended is set by the sweep that ended it (guarded by tunnelSet.mu): later sweeps skip it
	// while its connection winds down, so it is ended and counted once.
	ended bool
}

// tunnelSet is the proxy's live tunnels, by TLS connection. Its owners are the code that made
// each tunnel (trackTunnel) and the end of its connection (untrackTunnel); sweepRevoked reads
// it. The zero value is empty.
type tunnelSet struct {
	mu sync.Mutex
	m  map[net.Conn]*tunnel // guarded by mu
}

// crlGeneration returns the revocation lists' generation (see certs.CRLSet.Generation), to take
// before a handshake and give trackTunnel after it, and whether there are lists at all.
func (p *Proxy) crlGeneration() (uint64, bool) {
	crl := p.cfg.Certs.CRL()
	if crl == nil {
		return 0, false
	}
	return crl.Generation(), true
}

// trackTunnel keeps nc, whose handshake completed (for local, with the peer chain peer) after
// the lists had generation gen, for the sweeps of later reloads. When the lists were reloaded
// since gen, the handshake may have used the older ones, and no sweep may have seen nc yet:
// the peer is judged now, and trackTunnel reports a revoked one, counted and not kept (the
// caller ends nc, which nothing shares yet). Without lists it does nothing.
func (p *Proxy) trackTunnel(nc net.Conn, local identity.ID, peer []*x509.Certificate, reporter string, gen uint64) (revoked bool) {
	crl := p.cfg.Certs.CRL()
	if crl == nil {
		return false
	}
	t := &tunnel{nc: nc, local: local, peer: peer, at: time.Now(), reporter: reporter}
	p.tunnels.mu.Lock()
	if p.tunnels.m == nil {
		p.tunnels.m = make(map[net.Conn]*tunnel)
	}
	p.tunnels.m[nc] = t
	p.tunnels.mu.Unlock()
	if crl.Generation() == gen || !p.judge(t) {
		return false
	}
	p.untrackTunnel(nc)
	p.cfg.Metrics.CRLRejected(reporter)
	return true
}

// untrackTunnel forgets nc; it is called once its connection ended (or was never used).
func (p *Proxy) untrackTunnel(nc net.Conn) {
	p.tunnels.mu.Lock()
	delete(p.tunnels.m, nc)
	p.tunnels.mu.Unlock()
}

// judge reports whether the current lists revoke t's peer. A chain that cannot be judged
// (its local identity has no certificate any more, or it no longer verifies against the
// current roots) is not revoked, as in ztunnel; that is logged.
func (p *Proxy) judge(t *tunnel) bool {
	revoked, err := p.cfg.Certs.Revoked(t.local, t.peer, t.at)
	if err != nil {
		p.log.Warn("revocation lists changed: a connection's peer could not be judged again", "peer", t.peer[0].Subject.String(), "err", err)
	}
	return revoked
}

// sweepRevoked judges every tracked tunnel against the current lists and ends those whose peer
// they revoke: first it marks the connections they carry (so their records end as revoked, not
// as whatever error the end causes), then ends the tunnels and closes those connections. It
// returns how many tunnels it ended.
func (p *Proxy) sweepRevoked() int {
	p.tunnels.mu.Lock()
	all := make([]*tunnel, 0, len(p.tunnels.m))
	for _, t := range p.tunnels.m {
		if !t.ended {
			all = append(all, t)
		}
	}
	p.tunnels.mu.Unlock()
	var ended map[net.Conn]*tunnel
	for _, t := range all {
		if p.judge(t) {
			if ended == nil {
				ended = make(map[net.Conn]*tunnel)
			}
			ended[t.nc] = t
		}
	}
	p.tunnels.mu.Lock()
	for nc, t := range ended {
		if t.ended { // by a sweep that ran alongside
			delete(ended, nc)
		}
		t.ended = true
	}
	p.tunnels.mu.Unlock()
	if len(ended) == 0 {
		return 0
	}
	closers := p.conns.revoke(ended)
	for _, t := range ended {
		p.cfg.Metrics.CRLRejected(t.reporter)
		p.log.Debug("ending a tunnel: its peer's certificate is revoked", "peer", t.peer[0].Subject.String(), "reporter", t.reporter)
		// An accepted tunnel ends as ztunnel's server ends it: GOAWAY(NO_ERROR), then the
		// close. One the proxy made, or one not yet served, is cut (ztunnel drops its client).
		if t.reporter != metrics.ReporterDestination || !p.server.Abort(t.nc, errCertRevoked) {
			endTransport(t.nc)
		}
	}
	for _, c := range closers {
		c.Close()
	}
	return len(ended)
}

// revoke marks the relaying connections carried by a tunnel in ended and returns their
// closers, for the caller to close once the tunnels are ended.
func (t *tracker) revoke(ended map[net.Conn]*tunnel) []io.Closer {
	in := func(c net.Conn) bool {
		_, ok := ended[c]
		return ok
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var closers []io.Closer
	for _, c := range t.conns {
		l, ok := c.closer.(*netutil.Link)
		if !c.relaying || !ok {
			continue
		}
		if carriedBy(l.A(), in) || carriedBy(l.B(), in) {
			c.rec.revoke()
			closers = append(closers, c.closer)
		}
	}
	return closers
}

// carriedBy reports whether c, a leg of a relay, is a stream of a tunnel that in holds: an
// HBONE stream (inbound or pooled outbound), or the inner stream of a connection through a
// network gateway (its inner tunnel, or the pooled one to the gateway).
func carriedBy(c net.Conn, in func(net.Conn) bool) bool {
	switch s := c.(type) {
	case *hbone.Stream:
		return in(s.Transport())
	case *gatewayConn:
		return in(s.Stream.Transport()) || in(s.outer.Transport())
	}
	return false
}

// endTransport ends a tunnel's TLS connection, which its HBONE connection owns, from outside:
// it shuts the socket down (both ways) rather than closing it, so that the HBONE connection,
// parked or not, finds it ended on its next read and ends itself (and its streams) as it does
// when a peer goes away; a closed descriptor would leave a parked read unwoken. A connection
// with no socket of its own (an inner tunnel, over a stream) is closed.
func endTransport(nc net.Conn) {
	for c := nc; c != nil; {
		if tcp, ok := c.(*net.TCPConn); ok {
			tcp.CloseRead()
			tcp.CloseWrite()
			return
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		if inner := u.NetConn(); inner != c {
			c = inner
			continue
		}
		break
	}
	nc.Close()
}
