package config

import (
	"log/slog"
	"maps"
	"testing"
)

func TestParseLogLevel(t *testing.T) {
	tests := []struct {
		in          string
		wantDefault slog.Level
		wantTargets map[string]slog.Level
		wantErr     bool
	}{
		{in: "info", wantDefault: slog.LevelInfo},
		{in: "debug", wantDefault: slog.LevelDebug},
		{in: "warn", wantDefault: slog.LevelWarn},
		{in: "error", wantDefault: slog.LevelError},
		{in: "trace", wantDefault: LevelTrace},
		{in: "off", wantDefault: LevelOff},
		{in: "INFO", wantDefault: slog.LevelInfo},
		{in: "3", wantDefault: slog.LevelInfo},
		{in: "5", wantDefault: LevelTrace},
		{in: "0", wantDefault: LevelOff},
		{in: "info,access=debug,xds=trace", wantDefault: slog.LevelInfo,
			wantTargets: map[string]slog.Level{"access": slog.LevelDebug, "xds": LevelTrace}},
		{in: " info , access = debug ", wantDefault: slog.LevelInfo,
			wantTargets: map[string]slog.Level{"access": slog.LevelDebug}},
		{in: "xds=debug", wantDefault: LevelOff, wantTargets: map[string]slog.Level{"xds": slog.LevelDebug}},
		{in: "ztunnel::proxy", wantDefault: LevelOff, wantTargets: map[string]slog.Level{"ztunnel::proxy": LevelTrace}},
		{in: "info,xds=debug,xds=warn,debug", wantDefault: slog.LevelDebug, wantTargets: map[string]slog.Level{"xds": slog.LevelWarn}},
		{in: "=warn", wantDefault: slog.LevelWarn},
		{in: "info,,", wantDefault: slog.LevelInfo},
		{in: "", wantDefault: LevelOff},
		{in: "xds=verbose", wantErr: true},
		{in: "xds=", wantErr: true},
		{in: "xds=6", wantErr: true},
		{in: "xds[{a}]=info", wantErr: true},
		{in: "a b", wantErr: true},
		{in: "info,a=b=c", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseLogLevel(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseLogLevel(%q) = %+v, want error", tt.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseLogLevel(%q): %v", tt.in, err)
			continue
		}
		if got.Default != tt.wantDefault || !maps.Equal(got.Targets, tt.wantTargets) {
			t.Errorf("ParseLogLevel(%q) = %v %v; want %v %v", tt.in, got.Default, got.Targets, tt.wantDefault, tt.wantTargets)
		}
	}
}

func TestLogLevelLookup(t *testing.T) {
	l, err := ParseLogLevel("warn,ztunnel=info,ztunnel::proxy=debug,access=trace")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		target string
		want   slog.Level
	}{
		{"xds", slog.LevelWarn},
		{"ztunnel", slog.LevelInfo},
		{"ztunnel::xds", slog.LevelInfo},
		{"ztunnel::proxy::inbound", slog.LevelDebug},
		{"access", LevelTrace},
	}
	for _, tt := range tests {
		if got := l.Level(tt.target); got != tt.want {
			t.Errorf("Level(%q) = %v, want %v", tt.target, got, tt.want)
		}
	}
	if l.Enabled("xds", slog.LevelInfo) {
		t.Error("xds info enabled under warn")
	}
	if !l.Enabled("access", LevelTrace) {
		t.Error("access trace disabled")
	}
	off, _ := ParseLogLevel("off")
	if off.Enabled("x", slog.LevelError+100) {
		t.Error("off lets records through")
	}
	var zero LogLevel
	if !zero.Enabled("x", slog.LevelInfo) || zero.Enabled("x", slog.LevelDebug) {
		t.Error("zero LogLevel is not info")
	}
}

func TestLogLevelString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"info", "info"},
		{"xds=trace,info,access=debug", "info,access=debug,xds=trace"},
		{"xds=warn", "off,xds=warn"},
		{"1", "error"},
	}
	for _, tt := range tests {
		l, err := ParseLogLevel(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.String(); got != tt.want {
			t.Errorf("ParseLogLevel(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
		back, err := ParseLogLevel(l.String())
		if err != nil || back.Default != l.Default || !maps.Equal(back.Targets, l.Targets) {
			t.Errorf("round trip of %q: %+v, %v", tt.in, back, err)
		}
	}
}

func FuzzParseLogLevel(f *testing.F) {
	for _, s := range []string{"info", "info,access=debug,xds=trace", "off", "=warn", "a[b]=c", "5", "xds", ",,", "a=b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLogLevel(s)
		if err != nil {
			return
		}
		// What parses renders to something that parses to the same filter.
		back, err := ParseLogLevel(l.String())
		if err != nil {
			t.Fatalf("ParseLogLevel(%q).String() = %q does not parse: %v", s, l.String(), err)
		}
		if back.Default != l.Default || !maps.Equal(back.Targets, l.Targets) {
			t.Fatalf("round trip of %q: got %+v, want %+v", s, back, l)
		}
	})
}
