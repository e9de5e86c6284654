package dns

import (
	"encoding/binary"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// captureWriter is the dns.ResponseWriter of in-process tests: it keeps
// the message written (packed, as the server would send it) or discards it.
type captureWriter struct {
	remote  net.Addr
	pack    bool
	written *dns.Msg
	wire    []byte
}

func (w *captureWriter) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: Port}
}
func (w *captureWriter) RemoteAddr() net.Addr { return w.remote }
func (w *captureWriter) WriteMsg(m *dns.Msg) error {
	w.written = m
	if !w.pack {
		return nil
	}
	b, err := m.Pack()
	w.wire = b
	return err
}
func (w *captureWriter) Write(b []byte) (int, error) { w.wire = b; return len(b), nil }
func (w *captureWriter) Close() error                { return nil }
func (w *captureWriter) TsigStatus() error           { return nil }
func (w *captureWriter) TsigTimersOnly(bool)         {}
func (w *captureWriter) Hijack()                     {}

// serveBytes hands pkt to the server as its UDP loop does (serveWire). It
// returns the header's accept decision (MsgIgnore for a packet too short
// for one) and the query when pkt parses as one.
func serveBytes(s *Server, w *captureWriter, pkt []byte) (dns.MsgAcceptAction, *dns.Msg) {
	if len(pkt) < headerSize {
		return dns.MsgIgnore, nil
	}
	s.serveWire(w, pkt, protoUDP)
	r := new(dns.Msg)
	if r.Unpack(pkt) != nil {
		r = nil
	}
	return acceptQuery(header(pkt)), r
}

// FuzzHandle feeds arbitrary bytes to the server as UDP queries: it must
// never panic, and every answer must pack, carry the query's id and fit
// the client's UDP limit.
func FuzzHandle(f *testing.F) {
	up := startUpstream(f)
	cfg := baseConfig(f, up.addr)
	s, err := NewServer(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })

	for _, q := range []struct {
		name  string
		qtype uint16
		edns  uint16
	}{
		{"productpage.ns1.svc.cluster.local.", dns.TypeA, 0},
		{"productpage.", dns.TypeAAAA, 0},
		{"productpage.ns1.ns1.svc.cluster.local.", dns.TypeA, 1232},
		{"foo.svc.mesh.company.net.ns1.svc.cluster.local.", dns.TypeA, 0},
		{"big.ns1.svc.cluster.local.", dns.TypeA, 0},
		{"headless.ns1.svc.cluster.local.", dns.TypeAAAA, 4096},
		{"www.bing.com.", dns.TypeA, 0},
		{"many.example.org.", dns.TypeA, 0},
		{"a\\.b.wildcard.", dns.TypeA, 0},
		{strings.Repeat("a.", 120), dns.TypeA, 0},
		{".", dns.TypeNS, 0},
	} {
		m := new(dns.Msg).SetQuestion(q.name, q.qtype)
		if q.edns > 0 {
			m.SetEdns0(q.edns, true)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatalf("seed %s: %v", q.name, err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01})
	f.Add([]byte{})

	remote := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		w := &captureWriter{remote: remote, pack: true}
		action, r := serveBytes(s, w, pkt)
		if action == dns.MsgIgnore {
			if w.written != nil {
				t.Fatalf("answered a packet it must drop: %v", w.written)
			}
			return
		}
		if w.written == nil {
			t.Fatalf("no answer (accept decision %d)", action)
		}
		if wantID := binary.BigEndian.Uint16(pkt); w.written.Id != wantID {
			t.Fatalf("answer id %d, query id %d", w.written.Id, wantID)
		}
		if w.wire == nil {
			t.Fatalf("answer does not pack: %v", w.written)
		}
		limit := dns.MinMsgSize // a rejected query's answer carries no records
		if action == dns.MsgAccept && r != nil {
			limit = udpLimit(r)
		}
		if len(w.wire) > limit {
			t.Fatalf("answer of %d bytes, client limit %d", len(w.wire), limit)
		}
	})
}

// FuzzParseResolvConf checks the resolv.conf parser never panics and only
// returns dialable addresses.
func FuzzParseResolvConf(f *testing.F) {
	f.Add("nameserver 10.96.0.10\nsearch ns1.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n")
	f.Add("nameserver fe80::1%eth0\nnameserver 1.1.1.1 # comment\n;nameserver 9.9.9.9\n")
	f.Add("nameserver\nnameserver not-an-ip\n\x00\xff")
	f.Fuzz(func(t *testing.T, conf string) {
		for _, s := range parseResolvConf(strings.NewReader(conf)).servers {
			if _, err := parseUpstream(s); err != nil {
				t.Fatalf("parsed %q, which is not an address: %v", s, err)
			}
		}
	})
}

func TestParseResolvConf(t *testing.T) {
	cases := []struct {
		conf string
		want []string
	}{
		{"nameserver 10.96.0.10\nsearch ns1.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n", []string{"10.96.0.10:53"}},
		{"# generated\nnameserver 1.1.1.1 # primary\n;nameserver 9.9.9.9\nnameserver  fd00::53\n", []string{"1.1.1.1:53", "[fd00::53]:53"}},
		{"nameserver fe80::1%eth0", []string{"[fe80::1%eth0]:53"}},
		{"nameserver\nnameserver bogus\ndomain example.com\n", nil},
	}
	for _, c := range cases {
		got := parseResolvConf(strings.NewReader(c.conf)).servers
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("parseResolvConf(%q) = %q, want %q", c.conf, got, c.want)
		}
	}
}
