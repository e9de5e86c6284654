package proxy

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/ztunnel-go/ztunnel/tls/identity"
	"github.com/ztunnel-go/ztunnel/workload"
)

// Inbound HBONE to a workload that is not simply an app behind a port: a waypoint (or gateway)
// in the mesh, "sandwiched" between ztunnels, is sent CONNECTs whose authority is the address of
// what it fronts, and one with an application tunnel (istiod's ApplicationTunnel, from
// ambient.istio.io/waypoint-inbound-binding) takes its connections on a port of its own,
// behind a PROXY protocol header that tells it what the client asked for.

// tunnelAllowed reports whether a CONNECT that arrived at local may name hbone, another
// address, as ztunnel's validate_destination does: yes when local's workload takes an
// application tunnel (the address reaches it in the PROXY header; the app decides), or when the
// workload or service at hbone (on the proxy's network) has local's workload as its waypoint.
// When hbone names nothing known and on-demand lookups are on, it asks the control plane once.
// It returns the snapshot it decided on (the caller continues with it; it may be newer than
// snap), nil for no.
func (p *Proxy) tunnelAllowed(snap *workload.Snapshot, local, hbone netip.Addr) *workload.Snapshot {
	w := snap.WorkloadByAddr(p.cfg.Network, local)
	if w == nil {
		return nil
	}
	if w.ApplicationTunnel != nil {
		return snap
	}
	ok, known := p.isWaypointOf(snap, w, local, hbone)
	if !known && p.cfg.OnDemand != nil {
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ConnectTimeout)
		err := p.cfg.OnDemand(ctx, p.cfg.Network, hbone)
		cancel()
		if err == nil {
			snap = p.cfg.Store.Snapshot()
			if w = snap.WorkloadByAddr(p.cfg.Network, local); w == nil {
				return nil
			}
			ok, _ = p.isWaypointOf(snap, w, local, hbone)
		}
	}
	if !ok {
		return nil
	}
	return snap
}

// isWaypointOf reports whether w, the workload at local, is the waypoint of the workload at
// hbone or, when no workload is there, of the service with that VIP (ztunnel looks workloads
// up first): the waypoint named by address or hostname is a service w is an endpoint of, or a
// workload with the address local. known is false when nothing is at hbone.
func (p *Proxy) isWaypointOf(snap *workload.Snapshot, w *workload.Workload, local, hbone netip.Addr) (ok, known bool) {
	var gw *workload.GatewayAddress
	if t := snap.WorkloadByAddr(p.cfg.Network, hbone); t != nil {
		gw = t.Waypoint
	} else if svc := snap.ServiceByVIP(p.cfg.Network, hbone); svc != nil {
		gw = svc.Waypoint
	} else {
		return false, false
	}
	if gw == nil {
		return false, true
	}
	var wpSvc *workload.Service
	switch d := gw.Destination; {
	case d.Address != nil:
		if wp := snap.WorkloadByAddr(d.Address.Network, d.Address.Address); wp != nil {
			return slices.Contains(wp.WorkloadIPs, local), true
		}
		wpSvc = snap.ServiceByVIP(d.Address.Network, d.Address.Address)
	case d.Hostname != nil:
		if wpSvc = snap.ServiceByName(*d.Hostname); wpSvc == nil {
			if wp := workloadByHostname(snap, *d.Hostname); wp != nil {
				return slices.Contains(wp.WorkloadIPs, local), true
			}
		}
	}
	if wpSvc == nil {
		return false, true
	}
	_, ok = wpSvc.Endpoints[w.UID]
	return ok, true
}

// inboundTunnel is where an inbound HBONE connection goes.
type inboundTunnel struct {
	dial      netip.AddrPort // the address dialed
	localhost bool           // dial is a loopback address, dialed from loopback
	// proxy, when valid, is the destination a PROXY protocol header names before the client's
	// bytes: what the client asked for.
	proxy netip.AddrPort
}

// appTunnel returns where a CONNECT to w goes: target (w's address, on the port asked for or
// mapped from svc's port), unless w takes an application tunnel (ztunnel's
// find_inbound_upstream). Then its port replaces target's when it has one, and with protocol
// PROXY the connection starts with a PROXY header naming authority, what the client asked for
// (for a service hostname, which the header cannot carry, the service's VIP on the proxy's
// network, IPv4 first, with the port asked for), and goes to w's loopback when
// LOCALHOST_APP_TUNNEL is on, so that only ztunnel reaches the tunnel's port.
func (p *Proxy) appTunnel(w *workload.Workload, svc *workload.Service, target, authority netip.AddrPort) (inboundTunnel, error) {
	t := inboundTunnel{dial: target}
	at := w.ApplicationTunnel
	if at == nil {
		return t, nil
	}
	if at.Port != 0 {
		t.dial = netip.AddrPortFrom(target.Addr(), at.Port)
	}
	if at.Protocol != workload.TunnelProxy {
		return t, nil
	}
	t.proxy = authority
	if !authority.Addr().IsValid() { // a service hostname
		vip, ok := tunnelVIP(svc, p.cfg.Network)
		if !ok {
			return t, fmt.Errorf("service %s has no address for the PROXY header of workload %s's application tunnel", svc.Hostname, w.Name)
		}
		t.proxy = netip.AddrPortFrom(vip, authority.Port())
	}
	if p.cfg.LocalhostAppTunnel {
		lo := netip.IPv6Loopback()
		if t.dial.Addr().Is4() {
			lo = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		t.dial, t.localhost = netip.AddrPortFrom(lo, t.dial.Port()), true
	}
	return t, nil
}

// tunnelVIP picks the VIP of svc a PROXY header names for a CONNECT by hostname, as ztunnel
// does: one on network, IPv4 before IPv6, else any (the last of the best, as Rust's max_by_key).
func tunnelVIP(svc *workload.Service, network string) (netip.Addr, bool) {
	var best netip.Addr
	bestRank := -1
	for _, v := range svc.VIPs {
		rank := 0
		if v.Network == network {
			rank = 1
			if v.Address.Is4() {
				rank = 2
			}
		}
		if rank >= bestRank {
			best, bestRank = v.Address, rank
		}
	}
	return best, bestRank >= 0
}

// PROXY protocol version 2 (haproxy.org/download/2.9/doc/proxy-protocol.txt), as ztunnel writes
// it to an application tunnel.
var proxyV2Sig = [12]byte{0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a}

const (
	proxyV2Proxy    = 0x21 // version 2, command PROXY
	proxyV2TCP4     = 0x11 // AF_INET, SOCK_STREAM
	proxyV2TCP6     = 0x21 // AF_INET6, SOCK_STREAM
	proxyV2PeerTLV  = 0xd0 // ztunnel's TLV: the client's SPIFFE identity (a URI)
	proxyV2MaxIDLen = 4096 // an identity longer than this is left out (a header's TLVs total 64 KiB)
)

// appendProxyHeader appends a PROXY v2 header naming the connection from src to dst (IPv4
// when both are, else IPv6 with IPv4 addresses mapped), with id's SPIFFE URI in ztunnel's TLV
// 0xD0 when id is not zero.
func appendProxyHeader(b []byte, src, dst netip.AddrPort, id identity.ID) []byte {
	var uri string
	if !id.IsZero() {
		if uri = id.String(); len(uri) > proxyV2MaxIDLen {
			uri = ""
		}
	}
	fam, addrLen := byte(proxyV2TCP6), 36
	if src.Addr().Is4() && dst.Addr().Is4() {
		fam, addrLen = proxyV2TCP4, 12
	}
	n := addrLen
	if uri != "" {
		n += 3 + len(uri)
	}
	b = append(b, proxyV2Sig[:]...)
	b = append(b, proxyV2Proxy, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	if fam == proxyV2TCP4 {
		s, d := src.Addr().As4(), dst.Addr().As4()
		b = append(append(b, s[:]...), d[:]...)
	} else {
		s, d := src.Addr().As16(), dst.Addr().As16()
		b = append(append(b, s[:]...), d[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	if uri != "" {
		b = append(b, proxyV2PeerTLV)
		b = binary.BigEndian.AppendUint16(b, uint16(len(uri)))
		b = append(b, uri...)
	}
	return b
}

// writeProxyHeader writes the PROXY header of a connection from src to dst by the client id
// to app, before anything else, by ctx's deadline.
func writeProxyHeader(ctx context.Context, app net.Conn, src, dst netip.AddrPort, id identity.ID) error {
	if dl, ok := ctx.Deadline(); ok {
		app.SetWriteDeadline(dl)
		defer app.SetWriteDeadline(time.Time{})
	}
	var buf [256]byte
	if _, err := app.Write(appendProxyHeader(buf[:0], src, dst, id)); err != nil {
		return fmt.Errorf("PROXY header: %w", err)
	}
	return nil
}
