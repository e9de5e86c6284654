package dns

import (
	"net"
	"testing"

	"github.com/miekg/dns"
)

func benchServer(tb testing.TB) *Server {
	tb.Helper()
	s, err := NewServer(baseConfig(tb, "127.0.0.1:1"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// TestLookupAllocs pins the allocation budget of a mesh answer: resolving
// the name (aliases, search domains, wildcards) allocates nothing; the
// answer costs the reply message, its answer slice and one slab each of
// records and address bytes.
func TestLookupAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector (sync.Pool drops items)")
	}
	s := benchServer(t)
	snap := s.store.Snapshot()
	cases := []struct {
		host string
		max  float64 // allocations of the whole answer
	}{
		{"productpage.ns1.svc.cluster.local.", 4},
		{"productpage.", 4},
		{"foo.svc.mesh.company.net.", 4},
		{"headless.ns1.svc.cluster.local.", 4},
		{"big.ns1.svc.cluster.local.", 4},
		{"not.in.the.mesh.example.org.", 0},
	}
	for _, c := range cases {
		sc := new(scratch)
		name, _ := normalize(sc, c.host)
		if n := testing.AllocsPerRun(100, func() {
			sc := scratchPool.Get().(*scratch)
			s.find(snap, sc, name, "ns1")
			s.putScratch(sc)
		}); n != 0 {
			t.Errorf("find(%s): %v allocations, want 0", c.host, n)
		}
		r := new(dns.Msg).SetQuestion(c.host, dns.TypeA)
		if n := testing.AllocsPerRun(100, func() { s.answer(snap, r, "ns1") }); n > c.max {
			t.Errorf("answer(%s): %v allocations, want at most %v", c.host, n, c.max)
		}
	}
}

// BenchmarkLookup serves a mesh-service A query end to end in process
// (client and namespace lookup, metrics, name resolution, the answer and
// its truncation check), without the socket write.
func BenchmarkLookup(b *testing.B) {
	s := benchServer(b)
	r := new(dns.Msg).SetQuestion("productpage.ns1.svc.cluster.local.", dns.TypeA)
	w := &captureWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}}
	b.ReportAllocs()
	for b.Loop() {
		s.serve(w, r, protoUDP)
	}
	if len(w.written.Answer) != 1 {
		b.Fatalf("answer %v", w.written.Answer)
	}
}

// BenchmarkLookupShortName is BenchmarkLookup for a short name found
// through namespace expansion.
func BenchmarkLookupShortName(b *testing.B) {
	s := benchServer(b)
	r := new(dns.Msg).SetQuestion("productpage.", dns.TypeA)
	w := &captureWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}}
	b.ReportAllocs()
	for b.Loop() {
		s.serve(w, r, protoUDP)
	}
}
