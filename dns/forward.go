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
	"slices"
	"strconv"
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

// resolvConf is what a resolv.conf sets.
type resolvConf struct {
	servers  []string // "ip:53", in order
	search   []string // the last "search" (or "domain") line's domains
	ndots    int      // options ndots:n; 0 when unset
	timeout  time.Duration
	attempts int
}

// parseResolvConf parses a resolv.conf as the C library does: malformed
// lines and options are skipped, the last "search" or "domain" line wins.
// The DNS proxy uses only the nameservers: the proxy's own search list has
// the proxy's namespace in it, so the proxy derives search domains from each
// client's namespace instead (as ztunnel does in shared mode). The on-demand
// Resolver uses all of it, as ztunnel's does.
func parseResolvConf(r io.Reader) resolvConf {
	var rc resolvConf
	fieldLines(r, "#;", func(f []string) {
		switch f[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(f[1]); err == nil {
				rc.servers = append(rc.servers, netip.AddrPortFrom(a, 53).String())
			}
		case "search":
			rc.search = slices.Clone(f[1:])
		case "domain":
			rc.search = []string{f[1]}
		case "options":
			for _, o := range f[1:] {
				k, v, _ := strings.Cut(o, ":")
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 {
					continue
				}
				switch k {
				case "ndots":
					rc.ndots = min(n, 15) // the C library's cap
				case "timeout":
					rc.timeout = time.Duration(min(n, 30)) * time.Second
				case "attempts":
					rc.attempts = min(n, 5)
				}
			}
		}
	})
	return rc
}

// parseHosts parses a hosts file: each line an address and the names it
// answers for (lower-cased); comments and malformed lines are skipped.
func parseHosts(r io.Reader) map[string][]netip.Addr {
	hosts := map[string][]netip.Addr{}
	fieldLines(r, "#", func(f []string) {
		a, err := netip.ParseAddr(f[0])
		if err != nil || a.Zone() != "" {
			return
		}
		a = a.Unmap()
		for _, name := range f[1:] {
			name = strings.ToLower(strings.TrimSuffix(name, "."))
			if !slices.Contains(hosts[name], a) {
				hosts[name] = append(hosts[name], a)
			}
		}
	})
	return hosts
}

// fieldLines calls fn with the fields of each line of r that has at least
// two once its comment (from the first byte of comment on) is cut off. A
// line longer than 64 KiB ends the scan.
func fieldLines(r io.Reader, comment string, fn func(fields []string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, comment); i >= 0 {
			line = line[:i]
		}
		if f := strings.Fields(line); len(f) >= 2 {
			fn(f)
		}
	}
}
