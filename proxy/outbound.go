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
	"strings"
	"time"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/netutil"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	"github.com/ztunnel-go/ztunnel/workload"
)

// route is where an outbound connection goes.
type route struct {
	// dst is the address the app asked for (original destination).
	dst netip.AddrPort
	// target is where the bytes must arrive: the chosen endpoint's ip:targetPort, or dst.
	target netip.AddrPort
	// hbone is true when target is reached through an HBONE tunnel to hboneAddr.
	hbone     bool
	hboneAddr netip.AddrPort
	expected  []identity.ID

	dstW   *workload.Workload
	dstSvc *workload.Service
}

// errNoHealthyEndpoint is returned for a service VIP with no usable endpoint.
var errNoHealthyEndpoint = errors.New("no healthy upstream")

// resolve picks the route for a connection to dst: a service VIP goes to one of its healthy
// endpoints (service port mapped to the endpoint's target port), a mesh workload speaking HBONE
// is tunnelled, a mesh workload speaking TCP and any other address are connected directly.
func (p *Proxy) resolve(snap *workload.Snapshot, dst netip.AddrPort) (route, error) {
	rt := route{dst: dst, target: dst}
	network := p.cfg.Network
	if svc := snap.ServiceByVIP(network, dst.Addr()); svc != nil {
		rt.dstSvc = svc
		w, port, err := pickEndpoint(snap, svc, dst.Port())
		if err != nil {
			return rt, fmt.Errorf("service %s: %w", svc.Hostname, err)
		}
		rt.dstW = w
		rt.target = netip.AddrPortFrom(workloadIP(w), port)
	} else if w := snap.WorkloadByAddr(network, dst.Addr()); w != nil {
		rt.dstW = w
	}
	if w := rt.dstW; w != nil && w.Protocol == workload.ProtocolHBONE {
		rt.hbone = true
		rt.hboneAddr = netip.AddrPortFrom(rt.target.Addr(), p.cfg.Ports.RemoteHBONE)
		rt.expected = []identity.ID{w.Identity()}
		if rt.dstSvc != nil {
			for _, san := range rt.dstSvc.SubjectAltNames {
				if id, err := identity.Parse(san); err == nil && !slices.Contains(rt.expected, id) {
					rt.expected = append(rt.expected, id)
				}
			}
		}
	}
	return rt, nil
}

// pickEndpoint chooses one of svc's endpoints at random (the snapshot already left out the
// unhealthy ones unless the service's load balancer allows them) and maps the service port.
func pickEndpoint(snap *workload.Snapshot, svc *workload.Service, svcPort uint16) (*workload.Workload, uint16, error) {
	type cand struct {
		w    *workload.Workload
		port uint16
	}
	var cands []cand
	for _, ep := range svc.Endpoints {
		w := snap.WorkloadByUID(ep.WorkloadUID)
		if w == nil || !workloadIP(w).IsValid() {
			continue
		}
		port, ok := svc.TargetPort(ep, svcPort)
		if !ok {
			continue
		}
		cands = append(cands, cand{w, port})
	}
	if len(cands) == 0 {
		return nil, 0, errNoHealthyEndpoint
	}
	c := cands[rand.IntN(len(cands))]
	return c.w, c.port, nil
}

// workloadIP returns the workload's first address (the one HBONE reaches).
func workloadIP(w *workload.Workload) netip.Addr {
	if len(w.WorkloadIPs) == 0 {
		return netip.Addr{}
	}
	return w.WorkloadIPs[0]
}

// handleOutbound serves one connection captured on 15001.
func (p *Proxy) handleOutbound(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return
	}
	dst, err := netutil.OriginalDst(tc)
	if err != nil {
		p.log.Warn("outbound: no original destination", "src", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	p.outbound(c, addrPort(c.RemoteAddr()), dst)
}

// outbound proxies client (already accepted, from src) to dst. It owns client.
func (p *Proxy) outbound(client net.Conn, src, dst netip.AddrPort) {
	defer client.Close()
	rec := &record{start: time.Now(), direction: "outbound", src: src, dst: dst}
	if p.isOwnPort(dst) || dst == addrPort(client.LocalAddr()) {
		p.log.Warn("outbound: refusing a connection to the proxy's own port", "src", src.String(), "dst", dst.String())
		return
	}
	snap := p.cfg.Store.Snapshot()
	rec.srcW = snap.WorkloadByAddr(p.cfg.Network, src.Addr())
	rec.srcID = p.cfg.Self
	if rec.srcW != nil {
		rec.srcID = rec.srcW.Identity()
	}
	rt, err := p.resolve(snap, dst)
	if err == nil && rt.dstW == nil && rt.dstSvc == nil && p.cfg.OnDemand != nil {
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ConnectTimeout)
		if derr := p.cfg.OnDemand(ctx, p.cfg.Network, dst.Addr()); derr != nil {
			p.log.Debug("on-demand lookup failed", "dst", dst.String(), "err", derr)
		}
		cancel()
		snap = p.cfg.Store.Snapshot()
		rt, err = p.resolve(snap, dst)
	}
	rec.dstW, rec.dstSvc = rt.dstW, rt.dstSvc
	if rt.hbone {
		// As ztunnel logs it: dst.addr is where the bytes went (ip:15008), dst.hbone_addr the
		// address inside the tunnel.
		rec.mtls = true
		rec.dst = rt.hboneAddr
		rec.hboneAddr = rt.target
		rec.dstID = rt.expected[0]
	}
	rec.open(p.cfg.Metrics)
	if err != nil {
		rec.finish(p.access, err, metrics.FlagConnect, 0, 0)
		return
	}
	tr := &tracked{close: func() { client.Close() }}
	p.conns.add(tr)
	defer p.conns.remove(tr)

	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ConnectTimeout)
	var upstream net.Conn
	if rt.hbone {
		if rec.srcID.IsZero() {
			cancel()
			rec.finish(p.access, errors.New("unknown source workload: no identity for HBONE"), metrics.FlagIdentity, 0, 0)
			return
		}
		upstream, err = p.pool.Connect(ctx, hbone.Key{
			Source:   rec.srcID.String(),
			Expected: joinIDs(rt.expected),
			Addr:     rt.hboneAddr,
		}, &hbone.Request{
			Method:    http.MethodConnect,
			Authority: rt.target.String(),
			Header:    http.Header{"Forwarded": {`for="` + src.String() + `"`}},
		})
	} else {
		upstream, err = p.dialUpstream(ctx, netip.AddrPort{}, rt.target)
	}
	cancel()
	if err != nil {
		flags := metrics.FlagConnect
		var hsErr *handshakeError
		if errors.As(err, &hsErr) {
			flags = metrics.FlagTLSFailure
		}
		rec.finish(p.access, fmt.Errorf("connect %s: %w", rt.target, err), flags, 0, 0)
		return
	}
	p.conns.mu.Lock()
	tr.close = func() { client.Close(); upstream.Close() }
	tr.rec = rec
	p.conns.mu.Unlock()
	toServer, toClient, err := netutil.RelayCounted(client, upstream, &rec.toServer, &rec.toClient)
	upstream.Close()
	rec.finish(p.access, benign(err), metrics.FlagNone, toServer, toClient)
}

// dialUpstream makes a TCP connection carrying the proxy's socket options, from src when valid.
func (p *Proxy) dialUpstream(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
	opts := p.cfg.Socket
	if src.IsValid() {
		opts.Transparent, opts.Freebind = true, true
	}
	d := opts.Dialer(src)
	var c net.Conn
	err := p.inNetns(func() (err error) {
		c, err = d.DialContext(ctx, "tcp", dst.String())
		return err
	})
	return c, err
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
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, &handshakeError{addr: k.Addr, err: err}
	}
	return tc, nil
}

// handshakeError is a failed mTLS handshake with an HBONE peer (response flag TLS_FAILURE).
type handshakeError struct {
	addr netip.AddrPort
	err  error
}

func (e *handshakeError) Error() string {
	return fmt.Sprintf("tls handshake with %s: %v", e.addr, e.err)
}
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
