package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"strconv"
	"testing"
)

// TestAddrFormatting checks that addresses, formatted without String, read exactly as their
// String in both formats, including invalid ones and zones that JSON must escape.
func TestAddrFormatting(t *testing.T) {
	ap := netip.MustParseAddrPort("10.0.0.1:4000")
	a6 := netip.MustParseAddr("fd00::1")
	zoned := netip.MustParseAddr("fe80::1").WithZone(`eth"0\x`)
	var nilAP *netip.AddrPort
	for _, tc := range []struct {
		name string
		v    any
		text string // the value as written in the text format
	}{
		{"addrport v4", ap, "10.0.0.1:4000"},
		{"addrport pointer", &ap, "10.0.0.1:4000"},
		{"addrport v6", netip.AddrPortFrom(a6, 15008), "[fd00::1]:15008"},
		{"addrport 4in6", netip.MustParseAddrPort("[::ffff:10.0.0.1]:80"), "[::ffff:10.0.0.1]:80"},
		{"addrport zone", netip.AddrPortFrom(zoned, 1), `[fe80::1%eth"0\x]:1`},
		{"addr v6", a6, "fd00::1"},
		{"addr pointer", &a6, "fd00::1"},
		{"invalid addrport", netip.AddrPort{}, "invalid AddrPort"},
		{"invalid addrport pointer", &netip.AddrPort{}, "invalid AddrPort"},
		{"invalid addr", netip.Addr{}, "invalid IP"},
		{"prefix", netip.MustParsePrefix("10.0.0.0/8"), "10.0.0.0/8"},
		{"other address type", packedAddr{ap}, "10.0.0.1:4000"},
		{"other address type pointer", &packedAddr{ap}, "10.0.0.1:4000"},
		{"other address type invalid", packedAddr{}, "invalid AddrPort"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			fixedOutput(&buf, Text, "info").Logger("s").Info("m", slog.Any("a", tc.v))
			want := "2026-01-02T03:04:05.123456Z\tinfo\ts\tm\ta=" + tc.text + "\n"
			if got := buf.String(); got != want {
				t.Errorf("text: got %q, want %q", got, want)
			}
			buf.Reset()
			fixedOutput(&buf, JSON, "info").Logger("s").Info("m", slog.Any("a", tc.v))
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("not JSON: %v: %s", err, buf.String())
			}
			if got["a"] != tc.text {
				t.Errorf("json: got %q, want %q", got["a"], tc.text)
			}
		})
	}
	// A nil pointer is not an address: it goes the way it went before (its String panics and
	// slog's caller sees that), so only check that appendAddr declines it.
	if _, ok := appendAddr(nil, nilAP); ok {
		t.Error("appendAddr accepted a nil *netip.AddrPort")
	}
	if _, ok := appendAddr(nil, (*packedAddr)(nil)); ok {
		t.Error("appendAddr accepted a nil pointer to an address type")
	}
}

// packedAddr stands for a caller's own address type (the proxy's records pack theirs): it
// implements addrText with value methods, and String.
type packedAddr struct{ ap netip.AddrPort }

func (a packedAddr) IsValid() bool            { return a.ap.IsValid() }
func (a packedAddr) AppendTo(b []byte) []byte { return a.ap.AppendTo(b) }
func (a packedAddr) String() string           { return a.ap.String() }

func TestAppendQuoted(t *testing.T) {
	for _, s := range []string{"", "sleep", "a b", `a"b`, `a\b`, "tab\there", "new\nline", "\x7f", "é", "\xff", "spiffe://cluster.local/ns/default/sa/x"} {
		if got, want := string(appendQuoted(nil, s)), strconv.Quote(s); got != want {
			t.Errorf("appendQuoted(%q) = %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendQuoted(f *testing.F) {
	for _, s := range []string{"", "sleep", `a"b`, "\t", "é", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := string(appendQuoted([]byte("x"), s)), "x"+strconv.Quote(s); got != want {
			t.Fatalf("appendQuoted(%q) = %s, want %s", s, got, want)
		}
	})
}

// TestLineAllocs is the allocation budget of writing a line of at most five attributes (slog
// keeps those inline) with a string, a number and addresses: none.
func TestLineAllocs(t *testing.T) {
	src := netip.MustParseAddrPort("10.0.0.1:4000")
	dst := netip.MustParseAddrPort("[fd00::2]:8080")
	checkNoAllocs(t, func(log *slog.Logger) {
		log.LogAttrs(context.Background(), slog.LevelInfo, "connection complete",
			slog.Any("src.addr", &src), slog.Any("dst.addr", &dst), slog.String("src.workload", "sleep"),
			slog.Int64("bytes_sent", 12), slog.String("direction", "inbound"))
	})
}

// checkNoAllocs fails t when write, given an access logger of either format, allocates.
func checkNoAllocs(t *testing.T, write func(log *slog.Logger)) {
	t.Helper()
	for _, f := range []Format{Text, JSON} {
		var buf bytes.Buffer
		log := fixedOutput(&buf, f, "info").Logger("access")
		got := testing.AllocsPerRun(100, func() {
			buf.Reset()
			write(log)
		})
		if got != 0 {
			t.Errorf("format %d: %v allocations per line, want 0", f, got)
		}
	}
}
