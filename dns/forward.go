package dns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// errNoUpstream is returned when no upstream answered.
var errNoUpstream = errors.New("dns: no upstream resolver answered")

// forwardAndReply forwards r to the upstreams and relays their answer, or
// answers SERVFAIL when none answered.
func (s *Server) forwardAndReply(w dns.ResponseWriter, r *dns.Msg, proto protocol, ser *series, src netip.Addr, ns string) {
	ser = ser.upstream()
	ser.upstreamRequests.Inc()
	start := time.Now()
	resp, err := s.forward(r)
	ser.upstreamDuration.Observe(time.Since(start).Seconds())
	debug := s.log.Enabled(context.Background(), slog.LevelDebug)
	if err != nil {
		ser.upstreamFailures.Inc()
		if debug {
			s.log.Debug("dns query", "src", src, "namespace", ns, "domain", r.Question[0].Name, "result", "forwarding failed", "error", err)
		}
		s.reply(w, r, errorReply(r, dns.RcodeServerFailure), proto)
		return
	}
	if debug {
		s.log.Debug("dns query", "src", src, "namespace", ns, "domain", r.Question[0].Name, "result", "forwarded", "endpoints", len(resp.Answer))
	}
	// As ztunnel: a forwarded answer is never ours to vouch for, and we do
	// recurse for the client.
	resp.Authoritative = false
	resp.RecursionAvailable = true
	s.reply(w, r, resp, proto)
}

// forward sends r to each upstream in turn until one answers. It sends r
// under a fresh message id and gives the answer r's id back.
func (s *Server) forward(r *dns.Msg) (*dns.Msg, error) {
	id := r.Id
	r.Id = dns.Id()
	defer func() { r.Id = id }()
	var errs []error
	for _, up := range s.upstreams {
		resp, err := s.exchange(up, r)
		if err == nil {
			resp.Id = id
			return resp, nil
		}
		if s.ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", errNoUpstream, s.ctx.Err())
		}
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
	}
	return nil, fmt.Errorf("%w: %w", errNoUpstream, errors.Join(errs...))
}

// exchange asks one upstream over UDP, then over TCP when the UDP answer
// is truncated.
func (s *Server) exchange(upstream string, r *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.upTimeout)
	defer cancel()
	resp, err := s.exchangeOver(ctx, "udp", upstream, r)
	if err == nil && resp.Truncated {
		resp, err = s.exchangeOver(ctx, "tcp", upstream, r)
	}
	return resp, err
}

// exchangeOver does one query/answer exchange on a new socket made inside
// the configured namespace with the configured socket options (the mark).
func (s *Server) exchangeOver(ctx context.Context, network, upstream string, r *dns.Msg) (*dns.Msg, error) {
	d := s.socket.Dialer(netip.AddrPort{})
	var c net.Conn
	err := s.inNetns(func() error {
		var err error
		c, err = d.DialContext(ctx, network, upstream)
		return err
	})
	if err != nil {
		return nil, err
	}
	co := &dns.Conn{Conn: c}
	defer co.Close()
	// Read answers as large as the upstream may send (it honours the
	// client's EDNS0 size and sets TC beyond it).
	cl := &dns.Client{Net: network, UDPSize: dns.MaxMsgSize, Timeout: s.upTimeout}
	// Closing (not a deadline, which the exchange resets) ends a read in
	// flight at once when the server closes.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	resp, _, err := cl.ExchangeWithConnContext(ctx, r, co)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", network, err)
	}
	return resp, nil
}

// parseResolvConf returns the nameserver addresses ("ip:53") of a
// resolv.conf. Malformed lines are skipped, as the C library does. The
// search list is not used: the proxy's own resolv.conf has the proxy's
// namespace in it, so the search domains are derived from each client's
// namespace instead (as ztunnel does in shared mode).
func parseResolvConf(r io.Reader) (servers []string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil {
				servers = append(servers, netip.AddrPortFrom(a, 53).String())
			}
		}
	}
	return servers
}
