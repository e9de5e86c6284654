package proxy

import (
	"net/netip"
	"slices"
)

// Connections is a proxy's live connections in ztunnel's /config_dump shape: the
// "connections" of a pod's "workloadState" entry in shared mode. Tools read it to map what an
// application dialed to where its bytes went (a service's VIP to the endpoint chosen).
type Connections struct {
	Inbound  []InboundConnection  `json:"inbound"`
	Outbound []OutboundConnection `json:"outbound"`
}

// InboundConnection is one connection to a workload of the proxy.
type InboundConnection struct {
	Src netip.AddrPort `json:"src"`
	// OriginalDst is the host a waypoint or gateway named in the request's Forwarded header;
	// null without one.
	OriginalDst *string `json:"originalDst"`
	// ActualDst is the workload's address and the port the bytes are relayed to.
	ActualDst netip.AddrPort `json:"actualDst"`
	Protocol  string         `json:"protocol"` // "HBONE" or "TCP" (plaintext)
}

// OutboundConnection is one connection from a workload of the proxy.
type OutboundConnection struct {
	Src         netip.AddrPort `json:"src"`
	OriginalDst netip.AddrPort `json:"originalDst"` // where the client connected
	// ActualDst is where the proxy connected: the endpoint, or a tunnel's ip:15008 (a
	// workload's, a waypoint's or a network gateway's).
	ActualDst netip.AddrPort `json:"actualDst"`
	Protocol  string         `json:"protocol"` // "TCP", "HBONE" or "DOUBLEHBONE"
}

// Connections lists the connections the proxy relays, sorted by source. A connection still
// connecting is not listed yet. Safe for concurrent use; it holds the tracker's mutex while
// it copies.
func (p *Proxy) Connections() Connections {
	out := Connections{Inbound: []InboundConnection{}, Outbound: []OutboundConnection{}}
	t := p.conns
	t.mu.Lock()
	for _, c := range t.conns {
		if !c.relaying { // its record may still be written
			continue
		}
		r := &c.rec
		if r.inbound() {
			ic := InboundConnection{Src: r.src.AddrPort(), ActualDst: r.inboundDst(), Protocol: "TCP"}
			if r.mtls {
				ic.Protocol = "HBONE"
			}
			switch {
			case r.flags&flagHostNamed != 0:
				ic.OriginalDst = &r.dstSvc.Hostname
			case r.note != nil && r.note.forwarded != "":
				ic.OriginalDst = &r.note.forwarded
			}
			out.Inbound = append(out.Inbound, ic)
			continue
		}
		oc := OutboundConnection{Src: r.src.AddrPort(), OriginalDst: r.dialedDst().AddrPort(),
			ActualDst: r.dst.AddrPort(), Protocol: "TCP"}
		switch {
		case r.note != nil && r.note.authority.IsValid():
			oc.Protocol = "DOUBLEHBONE" // the only outbound connection with a hostname authority
		case r.mtls:
			oc.Protocol = "HBONE"
		}
		out.Outbound = append(out.Outbound, oc)
	}
	t.mu.Unlock()
	slices.SortFunc(out.Inbound, func(a, b InboundConnection) int { return a.Src.Compare(b.Src) })
	slices.SortFunc(out.Outbound, func(a, b OutboundConnection) int { return a.Src.Compare(b.Src) })
	return out
}

// impliedDst is the destination an outbound connection's client dialed as the record
// shows it without a note: the tunnel's authority (the workload, or what a waypoint is asked
// for), else where the bytes go. The outbound handler keeps the real one in the note when
// they differ.
func (r *record) impliedDst() addr {
	if r.hboneAddr.fam != 0 {
		return r.hboneAddr
	}
	return r.dst
}

// dialedDst is where an outbound connection's client connected: the service VIP the record
// keeps, or the note's address, when the outbound handler kept one; else impliedDst.
func (r *record) dialedDst() addr {
	if a, ok := r.dialedVIP(); ok {
		return a
	}
	if r.note != nil && r.note.origDst.fam != 0 {
		return r.note.origDst
	}
	return r.impliedDst()
}
