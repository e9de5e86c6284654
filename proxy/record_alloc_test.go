package proxy

import (
	"io"
	"net/netip"
	"strconv"
	"testing"
	"unsafe"

	"github.com/ztunnel-go/ztunnel/internal/boundedmap"
	"github.com/ztunnel-go/ztunnel/logging"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/policy"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	"github.com/ztunnel-go/ztunnel/workload"
)

// TestRecordAllocs is the allocation budget of one connection's telemetry once its label set
// is cached: open, a flush and finish. What is left is the record itself (its two SPIFFE ID
// strings come from idStrings, shared by every connection of the same identities: they were
// two allocations more). The access log line (text or JSON) adds nothing: it is written through
// a pooled logging.Line. Through a slog.Record it cost two more, the attribute overflow slice
// and the duration string; before the series cache and the handler's allocation-free path
// the budgets were 6 and 25.
func TestRecordAllocs(t *testing.T) {
	if recordRace {
		t.Skip("allocation counts differ under the race detector")
	}
	reg := metrics.New("ztunnel", "test")
	for _, tc := range []struct {
		name   string
		level  string
		format logging.Format
		budget float64
	}{
		{"no access log", "warn", logging.Text, 1},
		{"text access log", "info", logging.Text, 1},
		{"json access log", "info", logging.JSON, 1},
		{"debug access log, with the opened line", "debug", logging.Text, 1},
	} {
		log := accessLogger(io.Discard, tc.format, tc.level).Logger("access")
		run := func() {
			r := newTestRecord("outbound")
			r.open(reg, log)
			r.toServer.Add(1)
			r.flush()
			r.finish(log, nil, metrics.FlagNone, 1, 1)
		}
		run() // resolve the series
		if got := testing.AllocsPerRun(200, run); got > tc.budget {
			t.Errorf("%s: %v allocations per record, budget %v", tc.name, got, tc.budget)
		}
	}
}

// TestIDCache: the shared URI strings are the identities' own, and the cache
// stays bounded however many identities pass.
func TestIDCache(t *testing.T) {
	c := boundedmap.New[identity.ID, *idEntry](maxIDCache)
	for i := range maxIDCache + 10 {
		id := identity.ID{TrustDomain: "cluster.local", Namespace: "ns", ServiceAccount: "sa" + strconv.Itoa(i)}
		e := c.Get(id, newIDEntry)
		if e.id != id || e.uri != id.String() {
			t.Fatalf("get(%v) = %+v, want the identity and %q", id, *e, id.String())
		}
		if again := c.Get(id, newIDEntry); again != e {
			t.Fatalf("second get(%v) made a new entry", id)
		}
		if n := c.Len(); n > maxIDCache {
			t.Fatalf("the cache holds %d identities, more than %d", n, maxIDCache)
		}
	}
}

// TestRecordSize keeps a record (one per connection, for its life, inside its connState) at 160
// bytes: with its identities and their URIs inline it was 360 bytes (a 384-byte allocation)
// until they were shared (ident), then 248 (a 256-byte allocation) while it kept the direction
// as a string and the start as a time.Time, then 216 until its addresses were packed (addr),
// then 184 while its two flags took a word of their own and the late-deny reason was a string,
// and 168 while a mutex of its own guarded the late-deny reason and the flushed counts (the
// tracker's guards them now).
func TestRecordSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("SKIPPED: the size budget is for 64-bit platforms")
	}
	if got := unsafe.Sizeof(record{}); got > 160 {
		t.Errorf("record is %d bytes, want at most 160 (64-bit)", got)
	}
}

// TestConnStateSize keeps what the proxy holds per connection in Go's 192-byte allocation
// class: the record with the job, the tracker's entry and the relay's completion around it. As
// separate objects they were 224 + 32 + 48 + 16 bytes (the last a func bound to the entry);
// together, 256 bytes until the record's three addresses were packed (addr, 20 bytes each
// instead of netip.AddrPort's 32), then 224 until the record shrank to 168 bytes, and 208 while
// it kept the HBONE stream of a connection relayed before its answer and the record had a
// mutex of its own.
func TestConnStateSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("SKIPPED: the size budget is for 64-bit platforms")
	}
	if got := unsafe.Sizeof(connState{}); got > 192 {
		t.Errorf("connState is %d bytes, want at most 192 (64-bit)", got)
	}
}

// TestAddrPacking: a packed address gives back the netip.AddrPort it was made from, IPv4,
// IPv6 and IPv4-mapped IPv6 alike, and formats as it does; the zero value stays invalid. Only an
// IPv6 zone is dropped.
func TestAddrPacking(t *testing.T) {
	for _, s := range []string{"10.244.0.3:15008", "[fd00::3]:8080", "[::ffff:10.0.0.1]:80", "0.0.0.0:0", "[::]:1"} {
		ap := netip.MustParseAddrPort(s)
		a := packAddr(ap)
		if got := a.AddrPort(); got != ap || !a.IsValid() {
			t.Errorf("%s: packed and back = %v (valid %v)", s, got, a.IsValid())
		}
		if got := string(a.AppendTo(nil)); got != s || a.String() != s {
			t.Errorf("%s: AppendTo %q, String %q", s, got, a.String())
		}
	}
	if a := packAddr(netip.AddrPort{}); a.IsValid() || a.AddrPort() != (netip.AddrPort{}) || a != (addr{}) {
		t.Errorf("the invalid address packed to %+v", a)
	}
	zoned := netip.AddrPortFrom(netip.MustParseAddr("fe80::1%eth0"), 80)
	if got, want := packAddr(zoned).AddrPort(), netip.MustParseAddrPort("[fe80::1]:80"); got != want {
		t.Errorf("zoned: %v, want %v", got, want)
	}
}

// TestPolicyInputs: policy judges an inbound connection over HBONE by the workload's address
// (the record's dst, the local 15008 address) on the port the connection is relayed to, not by
// the CONNECT authority (a sandwiched waypoint's is a VIP), and by the original destination on
// plaintext, with the verified identity only over HBONE. Re-evaluation reads the same inputs
// from the record, so a connection allowed when it opened is judged alike when policies change.
func TestPolicyInputs(t *testing.T) {
	target := netip.MustParseAddrPort("10.244.0.3:8080")
	hbone := newTestRecord("inbound")
	hbone.dst = packAddr(netip.MustParseAddrPort("10.244.0.3:15008"))
	hbone.hboneAddr = packAddr(netip.MustParseAddrPort("10.96.0.10:80"))
	hbone.port = target.Port()
	plain := newTestRecord("inbound")
	plain.srcID, plain.mtls = ident{}, false

	for _, tc := range []struct {
		name   string
		rec    *record
		wantID identity.ID
	}{
		{"hbone", hbone, recSrc},
		{"plaintext", plain, identity.ID{}},
	} {
		pt, pc := tc.rec.policyInputs()
		if pt.Namespace != recDstW.Namespace {
			t.Errorf("%s: target namespace %q, want %q", tc.name, pt.Namespace, recDstW.Namespace)
		}
		want := policy.Conn{SrcID: tc.wantID, SrcIP: tc.rec.src.AddrPort().Addr(), DstIP: target.Addr(), DstPort: target.Port()}
		if pc != want {
			t.Errorf("%s: conn %+v, want %+v", tc.name, pc, want)
		}
	}
}

// TestDialedVIP: an outbound connection to one of its service's VIPs keeps which one, and the
// port dialed, in the record itself (flags and port), for any of the first vipMax VIPs and
// either family; a VIP past those, or an address the service does not have, is left to the
// note (setDialedVIP reports false).
func TestDialedVIP(t *testing.T) {
	svc := &workload.Service{Name: "s", Namespace: "ns", Hostname: "s.ns.svc.cluster.local"}
	for i := range vipMax + 2 {
		svc.VIPs = append(svc.VIPs, workload.NetworkAddress{Address: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})})
	}
	svc.VIPs[1].Address = netip.MustParseAddr("fd00:96::1")
	for _, tc := range []struct {
		dst  netip.AddrPort
		kept bool
	}{
		{netip.AddrPortFrom(svc.VIPs[0].Address, 80), true},
		{netip.AddrPortFrom(svc.VIPs[1].Address, 443), true},
		{netip.AddrPortFrom(svc.VIPs[vipMax-1].Address, 8080), true},
		{netip.AddrPortFrom(svc.VIPs[vipMax].Address, 80), false},
		{netip.MustParseAddrPort("10.244.0.3:80"), false},
	} {
		r := newTestRecord("outbound")
		r.dstSvc = svc
		if got := r.setDialedVIP(tc.dst); got != tc.kept {
			t.Errorf("%v: setDialedVIP = %v, want %v", tc.dst, got, tc.kept)
			continue
		}
		if !tc.kept {
			if _, ok := r.dialedVIP(); ok || r.port != 0 {
				t.Errorf("%v: a VIP not kept left flags %#x and port %d", tc.dst, r.flags, r.port)
			}
			continue
		}
		if got := r.dialedDst().AddrPort(); got != tc.dst {
			t.Errorf("%v: dialedDst = %v", tc.dst, got)
		}
		if r.inbound() || r.flags&flagHostNamed != 0 {
			t.Errorf("%v: the VIP's bits reached the other flags (%#x)", tc.dst, r.flags)
		}
	}
}
