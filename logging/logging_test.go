package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/config"
)

func fixedOutput(buf *bytes.Buffer, f Format, level string) *Output {
	lvl, err := config.ParseLogLevel(level)
	if err != nil {
		panic(err)
	}
	o := NewOutput(buf, f, lvl)
	o.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC) }
	return o
}

func TestTextFormat(t *testing.T) {
	var buf bytes.Buffer
	log := fixedOutput(&buf, Text, "info").Logger("access")
	log.Info("connection complete",
		slog.Any("src.addr", netip.MustParseAddrPort("10.0.0.1:4000")),
		slog.String("src.workload", "sleep"),
		slog.Int64("bytes_sent", 12),
		slog.Any("error", errors.New("boom")))
	want := "2026-01-02T03:04:05.123456Z\tinfo\taccess\tconnection complete\t" +
		`src.addr=10.0.0.1:4000 src.workload="sleep" bytes_sent=12 error="boom"` + "\n"
	if got := buf.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestJSONFormat(t *testing.T) {
	var buf bytes.Buffer
	log := fixedOutput(&buf, JSON, "info").Logger("access")
	log.With("direction", "inbound").Info("connection complete",
		slog.Any("dst.addr", netip.MustParseAddrPort("10.0.0.2:15008")),
		slog.String("quote", "a\"b\n"), slog.Int("n", 3))
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v: %s", err, buf.String())
	}
	want := map[string]any{
		"level": "info", "time": "2026-01-02T03:04:05.123456Z", "scope": "access",
		"message": "connection complete", "direction": "inbound", "dst.addr": "10.0.0.2:15008",
		"quote": "a\"b\n", "n": float64(3),
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("extra keys in %v", got)
	}
}

func TestScopeLevels(t *testing.T) {
	var buf bytes.Buffer
	out := fixedOutput(&buf, Text, "warn,access=debug")
	out.Logger("access").Debug("kept")
	out.Logger("xds").Info("dropped")
	out.Logger("xds").Warn("kept too")
	if got := strings.Count(buf.String(), "\n"); got != 2 || strings.Contains(buf.String(), "dropped") {
		t.Fatalf("levels not applied per scope:\n%s", buf.String())
	}
	// Changing the level at run time applies to loggers made before.
	xds := out.Logger("xds")
	lvl, _ := config.ParseLogLevel("debug")
	out.SetLevel(lvl)
	buf.Reset()
	xds.Debug("now visible")
	if !strings.Contains(buf.String(), "now visible") {
		t.Fatal("SetLevel did not reach an existing logger")
	}
}

func TestGroupsFlatten(t *testing.T) {
	var buf bytes.Buffer
	log := fixedOutput(&buf, Text, "info").Logger("x")
	log.WithGroup("src").Info("m", slog.String("addr", "a"), slog.Group("w", slog.String("name", "n")))
	if !strings.Contains(buf.String(), `src.addr="a" src.w.name="n"`) {
		t.Fatalf("groups not flattened to dotted keys: %s", buf.String())
	}
}

func BenchmarkAccessLine(b *testing.B) {
	var buf bytes.Buffer
	log := fixedOutput(&buf, Text, "info").Logger("access")
	src := netip.MustParseAddrPort("10.0.0.1:4000")
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		log.LogAttrs(context.Background(), slog.LevelInfo, "connection complete",
			slog.Any("src.addr", src), slog.String("src.workload", "sleep"), slog.Int64("bytes_sent", 12))
	}
}
