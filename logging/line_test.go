package logging

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// lineFields writes the same fields through a Line and returns, for the slog path, the
// attributes LogAttrs would take.
func lineFields(ln *Line, src, dst *netip.AddrPort) {
	ln.Any("src.addr", src)
	ln.Str("src.workload", "sleep")
	ln.Str("src.namespace", "default")
	ln.Str("src.identity", "spiffe://cluster.local/ns/default/sa/sleep")
	ln.Any("dst.addr", dst)
	ln.Any("dst.hbone_addr", dst)
	ln.Str("dst.service", "echo.default.svc.cluster.local")
	ln.Str("dst.workload", "echo")
	ln.Str("dst.namespace", "default")
	ln.Str("dst.identity", "spiffe://cluster.local/ns/default/sa/echo")
	ln.Str("direction", "outbound")
	ln.Int("bytes_sent", 12)
	ln.Int("bytes_recv", -3400)
	ln.Millis("duration", 1499*time.Microsecond)
	ln.Str("error", "a \"quoted\"\n\tfailure é \x01")
}

func sameAttrs(src, dst *netip.AddrPort) []slog.Attr {
	return []slog.Attr{
		slog.Any("src.addr", src),
		slog.String("src.workload", "sleep"),
		slog.String("src.namespace", "default"),
		slog.String("src.identity", "spiffe://cluster.local/ns/default/sa/sleep"),
		slog.Any("dst.addr", dst),
		slog.Any("dst.hbone_addr", dst),
		slog.String("dst.service", "echo.default.svc.cluster.local"),
		slog.String("dst.workload", "echo"),
		slog.String("dst.namespace", "default"),
		slog.String("dst.identity", "spiffe://cluster.local/ns/default/sa/echo"),
		slog.String("direction", "outbound"),
		slog.Int64("bytes_sent", 12),
		slog.Int64("bytes_recv", -3400),
		slog.String("duration", "1ms"),
		slog.String("error", "a \"quoted\"\n\tfailure é \x01"),
	}
}

// TestLineMatchesHandle: a Line writes the bytes Handle writes for the same fields, in both
// formats, with the handler's own attributes, and under any other handler (slog's) the line
// that handler writes for them.
func TestLineMatchesHandle(t *testing.T) {
	src := netip.MustParseAddrPort("10.244.0.2:40312")
	dst := netip.MustParseAddrPort("[fd00::3]:15008")
	for _, f := range []Format{Text, JSON} {
		for _, with := range []bool{false, true} {
			var viaLine, viaHandle bytes.Buffer
			lineLog := fixedOutput(&viaLine, f, "info").Logger("access")
			handleLog := fixedOutput(&viaHandle, f, "info").Logger("access")
			if with {
				lineLog = lineLog.With("node", "n1")
				handleLog = handleLog.With("node", "n1")
			}
			for i := 0; i < 2; i++ { // the second line reuses the pooled Line
				ln := Begin(lineLog, slog.LevelError, "connection complete")
				lineFields(ln, &src, &dst)
				if err := ln.End(); err != nil {
					t.Fatal(err)
				}
				handleLog.LogAttrs(context.Background(), slog.LevelError, "connection complete", sameAttrs(&src, &dst)...)
			}
			if viaLine.String() != viaHandle.String() {
				t.Errorf("format %d, handler attrs %v:\nline:   %q\nhandle: %q", f, with, viaLine.String(), viaHandle.String())
			}
		}
	}

	// Another handler gets the fields as attributes. slog's handlers stamp their own time.
	var viaLine, viaHandle bytes.Buffer
	strip := func(s string) string {
		_, rest, _ := strings.Cut(s, " ") // "time=... "
		return rest
	}
	ln := Begin(slog.New(slog.NewTextHandler(&viaLine, nil)), slog.LevelInfo, "connection complete")
	lineFields(ln, &src, &dst)
	ln.End()
	slog.New(slog.NewTextHandler(&viaHandle, nil)).LogAttrs(context.Background(), slog.LevelInfo,
		"connection complete", sameAttrs(&src, &dst)...)
	if a, b := strip(viaLine.String()), strip(viaHandle.String()); a != b || a == "" {
		t.Errorf("slog text handler:\nline:   %q\nhandle: %q", a, b)
	}

	// A grouped handler of ours takes the attribute path too: the keys get the group's prefix.
	var grouped bytes.Buffer
	ln = Begin(fixedOutput(&grouped, Text, "info").Logger("access").WithGroup("g"), slog.LevelInfo, "m")
	ln.Int("n", 1)
	ln.End()
	if want := "2026-01-02T03:04:05.123456Z\tinfo\taccess\tm\tg.n=1\n"; grouped.String() != want {
		t.Errorf("grouped: %q, want %q", grouped.String(), want)
	}
}

// TestLineDisabled: below the scope's level Begin returns nil and writes nothing.
func TestLineDisabled(t *testing.T) {
	var buf bytes.Buffer
	if ln := Begin(fixedOutput(&buf, Text, "warn").Logger("access"), slog.LevelInfo, "m"); ln != nil {
		t.Fatal("Begin returned a line below the level")
	}
	if ln := Begin(fixedOutput(&buf, Text, "warn,access=info").Logger("access"), slog.LevelInfo, "m"); ln == nil {
		t.Fatal("Begin returned no line at the scope's own level")
	} else {
		ln.End()
	}
	if !strings.HasSuffix(buf.String(), "\tinfo\taccess\tm\n") {
		t.Errorf("wrote %q", buf.String())
	}
}

// TestLongLineAllocs: a fifteen-field access log line through a Line allocates nothing, in both
// formats (through LogAttrs the same fields allocate slog's attribute overflow: BenchmarkLine).
func TestLongLineAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("SKIPPED: sync.Pool drops items at random under the race detector")
	}
	src := netip.MustParseAddrPort("10.244.0.2:40312")
	dst := netip.MustParseAddrPort("[fd00::3]:15008")
	checkNoAllocs(t, func(log *slog.Logger) {
		ln := Begin(log, slog.LevelInfo, "connection complete")
		lineFields(ln, &src, &dst)
		ln.End()
	})
}

// BenchmarkLine is BenchmarkAccessLine's fifteen-field line through a Line and through
// LogAttrs.
func BenchmarkLine(b *testing.B) {
	src := netip.MustParseAddrPort("10.244.0.2:40312")
	dst := netip.MustParseAddrPort("[fd00::3]:15008")
	var buf bytes.Buffer
	log := fixedOutput(&buf, Text, "info").Logger("access")
	b.Run("line", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			ln := Begin(log, slog.LevelInfo, "connection complete")
			lineFields(ln, &src, &dst)
			ln.End()
		}
	})
	b.Run("logattrs", func(b *testing.B) {
		b.ReportAllocs()
		attrs := sameAttrs(&src, &dst)
		for b.Loop() {
			buf.Reset()
			log.LogAttrs(context.Background(), slog.LevelInfo, "connection complete", attrs...)
		}
	})
}
