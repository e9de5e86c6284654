package dns

import (
	"context"
	"log/slog"
	"net"
	"net/netip"

	"github.com/miekg/dns"
)

// protocol is the transport a query came over.
type protocol uint8

const (
	protoUDP protocol = iota
	protoTCP
)

func (p protocol) String() string {
	if p == protoTCP {
		return "tcp"
	}
	return "udp"
}

// serve answers one query: from the mesh when the name is a mesh name,
// else by forwarding it.
func (s *Server) serve(w dns.ResponseWriter, r *dns.Msg, proto protocol) {
	if len(r.Question) != 1 { // acceptQuery lets only one-question queries through
		s.reply(w, r, errorReply(r, dns.RcodeFormatError), proto)
		return
	}
	q := &r.Question[0]
	src := remoteIP(w.RemoteAddr())
	snap := s.store.Snapshot()
	client := snap.WorkloadByAddr(s.network, src)
	var ns string
	switch {
	case s.clientNS != nil:
		ns = s.clientNS(src)
	case client != nil:
		ns = client.Namespace
	}
	series := s.metrics.series(q.Qtype, proto, client)
	series.requests.Inc()

	if (q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA) && q.Qclass == dns.ClassINET {
		if resp := s.answer(snap, r, ns); resp != nil {
			if s.log.Enabled(context.Background(), slog.LevelDebug) {
				s.log.Debug("dns query", "src", src, "namespace", ns, "query", dns.TypeToString[q.Qtype], "domain", q.Name, "result", "success", "endpoints", len(resp.Answer))
			}
			s.reply(w, r, resp, proto)
			return
		}
	}
	s.forwardAndReply(w, r, proto, series, src, ns)
}

// remoteIP returns the IP of a client address without allocating.
func remoteIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// udpLimit is the largest UDP answer the client of r accepts: its EDNS0
// payload size, at least 512 bytes.
func udpLimit(r *dns.Msg) int {
	if opt := r.IsEdns0(); opt != nil && int(opt.UDPSize()) > dns.MinMsgSize {
		return int(opt.UDPSize())
	}
	return dns.MinMsgSize
}

// reply writes resp to the client of r, cut to fit the client's limit
// with TC set when it came over UDP.
func (s *Server) reply(w dns.ResponseWriter, r, resp *dns.Msg, proto protocol) {
	limit := dns.MaxMsgSize
	if proto == protoUDP {
		limit = udpLimit(r)
	}
	resp.Truncate(limit)
	if err := w.WriteMsg(resp); err != nil && s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("dns: write answer", "error", err)
	}
}

// newReply starts the answer to r: same id, opcode, question and RD/CD
// flags, recursion available, and an EDNS0 record when r had one.
func newReply(r *dns.Msg, rcode int) *dns.Msg {
	m := &dns.Msg{
		MsgHdr: dns.MsgHdr{
			Id:                 r.Id,
			Response:           true,
			Opcode:             r.Opcode,
			RecursionDesired:   r.RecursionDesired,
			CheckingDisabled:   r.CheckingDisabled,
			RecursionAvailable: true,
			Rcode:              rcode,
		},
		Question: r.Question,
	}
	if opt := r.IsEdns0(); opt != nil {
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(max(opt.UDPSize(), dns.MinMsgSize))
		o.SetDo(opt.Do())
		m.Extra = []dns.RR{o}
	}
	return m
}

// errorReply is an answer to r carrying only rcode.
func errorReply(r *dns.Msg, rcode int) *dns.Msg {
	return newReply(r, rcode)
}
