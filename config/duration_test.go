package config

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "5m", want: 5 * time.Minute},
		{in: "10s", want: 10 * time.Second},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "500ms", want: 500 * time.Millisecond},
		{in: "1.5s", want: 1500 * time.Millisecond},
		{in: "2h45m30.5s", want: 2*time.Hour + 45*time.Minute + 30500*time.Millisecond},
		{in: "30", want: 30 * time.Second},
		{in: "0", want: 0},
		{in: "1d", want: 24 * time.Hour},
		{in: "1w", want: 7 * 24 * time.Hour},
		{in: "1mon", want: 30 * 24 * time.Hour},
		{in: "1y", want: 365 * 24 * time.Hour},
		{in: "3m+31", want: 211 * time.Second},
		{in: "3m + 31", want: 211 * time.Second},
		{in: "1m*10", want: 10 * time.Minute},
		{in: "1m * 10", want: 10 * time.Minute},
		{in: "1m 30s", want: 90 * time.Second},
		{in: "5 minutes", want: 5 * time.Minute},
		{in: "1 Hour", want: time.Hour},
		{in: "2SEC", want: 2 * time.Second},
		{in: "10us", want: 10 * time.Microsecond},
		{in: "10µs", want: 10 * time.Microsecond},
		{in: "7ns", want: 7},
		{in: " 4s ", want: 4 * time.Second},
		{in: "2562047h", want: 2562047 * time.Hour},
		{in: "", wantErr: true},
		{in: "   ", wantErr: true},
		{in: "abc", wantErr: true},
		{in: "-5s", wantErr: true},
		{in: "5x", wantErr: true},
		{in: "5s+", wantErr: true},
		{in: "1m*", wantErr: true},
		{in: "1m*x", wantErr: true},
		{in: ".s", wantErr: true},
		{in: "3000000h", wantErr: true},
		{in: "99999999999999999999", wantErr: true},
		{in: "1y*1000", wantErr: true},
		{in: "5s,", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseDuration(%q) = %v, want error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

// TestParseDurationGoSyntax checks that whatever Go's parser accepts without
// a sign, ours accepts with the same result.
func TestParseDurationGoSyntax(t *testing.T) {
	for _, s := range []string{"1h2m3s4ms5us6ns", "0.5h", "1.000000001s", "300ms", "1.5m", "72h3m0.5s",
		// Fractions finer than a nanosecond of the unit: Go truncates the
		// product, it does not drop the digits (found by FuzzParseDuration).
		".00000000002m", "0.0000000000017h", "1.9999999999999999999999s", "0.33333333333333333333h"} {
		want, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseDuration(s)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"5m", "1h30m", "500ms", "3m+31", "1m*10", "1 day", "1.5s", "-1s", "", "1y*99999", "10µs"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && d < 0 {
			t.Fatalf("ParseDuration(%q) = %v, negative", s, d)
		}
		// Anything Go accepts without a sign must parse the same here.
		if want, gerr := time.ParseDuration(s); gerr == nil && want >= 0 && len(s) > 0 && s[0] != '+' && s[0] != '-' {
			if err != nil || d != want {
				t.Fatalf("ParseDuration(%q) = %v, %v; Go says %v", s, d, err, want)
			}
		}
	})
}
