package admin

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// profilePeriod returns the period (nanoseconds between samples) of a gzipped pprof profile:
// the Profile message's field 12.
func profilePeriod(t *testing.T, body []byte) int64 {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("not a gzipped profile: %v", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad profile: %v", protowire.ParseError(n))
		}
		b = b[n:]
		if num == 12 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				t.Fatal(protowire.ParseError(n))
			}
			return int64(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			t.Fatalf("bad profile: %v", protowire.ParseError(n))
		}
		b = b[n:]
	}
	t.Fatal("the profile has no period")
	return 0
}

// TestProfileParameters: /debug/pprof/profile takes ztunnel's seconds and frequency, refuses
// values out of range with ztunnel's texts, and samples at the frequency asked for.
func TestProfileParameters(t *testing.T) {
	h := (&Server{}).AdminHandler()
	for _, c := range []struct{ query, want string }{
		{"seconds=0", "invalid seconds value; expected 1-300\n"},
		{"seconds=301", "invalid seconds value; expected 1-300\n"},
		{"seconds=ten", "invalid seconds value; expected 1-300\n"},
		{"frequency=0", "invalid frequency value; expected 1-1000\n"},
		{"seconds=1&frequency=1001", "invalid frequency value; expected 1-1000\n"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/profile?"+c.query, nil))
		if rec.Code != http.StatusBadRequest || rec.Body.String() != c.want {
			t.Errorf("?%s: %d %q, want 400 %q", c.query, rec.Code, rec.Body.String(), c.want)
		}
	}
	for _, c := range []struct {
		query  string
		period int64
	}{
		{"seconds=1", 10_000_000},              // 100 Hz, the default
		{"seconds=1&frequency=500", 2_000_000}, // 500 Hz
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/profile?"+c.query, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("?%s: %d %s", c.query, rec.Code, rec.Body.String())
		}
		if got := profilePeriod(t, rec.Body.Bytes()); got != c.period {
			t.Errorf("?%s: a profile sampled every %d ns, want %d", c.query, got, c.period)
		}
	}
}
