package metrics

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/prometheus/client_golang/prometheus/promhttp/zstd" // for the benchmark's promhttp baseline
)

// TestNegotiateEncoding: the choice promhttp made before compress.go took the compression
// over (its negotiation: offers in order, a strictly higher q wins, "*" matches any, q=0
// refuses), except that a refusal of everything answers uncompressed instead of failing.
func TestNegotiateEncoding(t *testing.T) {
	for _, tc := range []struct {
		accept []string
		want   string
	}{
		{nil, "identity"},
		{[]string{""}, "identity"},
		{[]string{"gzip"}, "gzip"},
		{[]string{"zstd"}, "zstd"},
		{[]string{"gzip, deflate, br, zstd"}, "zstd"}, // curl --compressed
		{[]string{"gzip, deflate"}, "gzip"},           // Go's HTTP client
		{[]string{"zstd;q=0.5, gzip"}, "gzip"},
		{[]string{"zstd;q=0.5, gzip;q=0.4"}, "zstd"},
		{[]string{"gzip;q=0"}, "identity"},
		{[]string{"*"}, "zstd"},
		{[]string{"*;q=0"}, "identity"},
		{[]string{"deflate, br"}, "identity"},
		{[]string{"gzip;level=1, zstd"}, "identity"}, // not a q-value: the rest of the line is dropped
		{[]string{"gzip;level=1", "zstd"}, "zstd"},   // the next line still counts
		{[]string{"zstd;q=2, gzip"}, "identity"},     // an impossible q drops the line's rest
		{[]string{" gzip ; q=0.8 , identity"}, "identity"},
	} {
		if got := negotiateEncoding(tc.accept); got != tc.want {
			t.Errorf("Accept-Encoding %q: %q, want %q", tc.accept, got, tc.want)
		}
	}
}

// serveWith answers one metrics request with Accept-Encoding accept.
func serveWith(h http.Handler, accept string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept-Encoding", accept)
	}
	h.ServeHTTP(rec, req)
	return rec
}

// TestHandlerCompression: each encoding's answer decodes to the metrics text, with the text
// format's content type.
func TestHandlerCompression(t *testing.T) {
	r := New("ztunnel", "test")
	h := r.Handler()
	decode := map[string]func(io.Reader) ([]byte, error){
		"identity": io.ReadAll,
		"gzip": func(rd io.Reader) ([]byte, error) {
			z, err := gzip.NewReader(rd)
			if err != nil {
				return nil, err
			}
			return io.ReadAll(z)
		},
		"zstd": func(rd io.Reader) ([]byte, error) {
			z, err := zstd.NewReader(rd)
			if err != nil {
				return nil, err
			}
			defer z.Close()
			return io.ReadAll(z)
		},
	}
	for enc, dec := range decode {
		rec := serveWith(h, enc)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: status %d", enc, rec.Code)
		}
		wantCE := enc
		if enc == "identity" {
			wantCE = ""
		}
		if got := rec.Header().Get("Content-Encoding"); got != wantCE {
			t.Errorf("%s: Content-Encoding %q", enc, got)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("%s: Content-Type %q", enc, ct)
		}
		body, err := dec(bytes.NewReader(rec.Body.Bytes()))
		if err != nil {
			t.Fatalf("%s: decode: %v", enc, err)
		}
		if !strings.Contains(string(body), `istio_build{component="ztunnel",tag="test"} 1`) || !strings.HasSuffix(string(body), "\n") {
			t.Errorf("%s: the body is not the metrics text:\n%s", enc, body)
		}
	}
}

// TestCompressWriter: an answer written in many small pieces across several gzip chunks
// decodes whole in both encodings, and an error answer goes out as written, uncompressed.
func TestCompressWriter(t *testing.T) {
	var text strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&text, "metric_%d{label=\"value %d\"} %d\n", i%97, i, i)
	}
	want := text.String() // several chunkSize chunks
	long := compressHandler{next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for line := range strings.Lines(want) {
			io.WriteString(w, line)
		}
	})}
	for enc, dec := range map[string]func(io.Reader) (io.Reader, error){
		"gzip": func(rd io.Reader) (io.Reader, error) { return gzip.NewReader(rd) },
		"zstd": func(rd io.Reader) (io.Reader, error) { return zstd.NewReader(rd) },
	} {
		rec := serveWith(long, enc)
		zr, err := dec(rec.Body)
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || string(got) != want {
			t.Errorf("%s: %d of %d bytes back (%v)", enc, len(got), len(want), err)
		}
		if rec.Body.Len() >= len(want)/4 {
			t.Errorf("%s: %d bytes for %d of text: not compressed", enc, rec.Body.Len(), len(want))
		}
	}
	failing := compressHandler{next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "gathering failed", http.StatusInternalServerError)
	})}
	rec := serveWith(failing, "gzip")
	if rec.Code != http.StatusInternalServerError || rec.Header().Get("Content-Encoding") != "" ||
		!strings.Contains(rec.Body.String(), "gathering failed") {
		t.Errorf("error answer: %d, Content-Encoding %q, body %q", rec.Code, rec.Header().Get("Content-Encoding"), rec.Body)
	}
}

// BenchmarkScrape is one scrape in each encoding, ours against promhttp's own compression
// (what Handler used before). Two collections run before each scrape (timer stopped), which
// empties every sync.Pool as the collections between an idle ztunnel's scrapes do: B/op is
// what such a scrape takes from the heap.
//
// The busy variants add 1,000 series of istio_tcp_connections_opened_total (a node's ztunnel
// with many peers) and their byte counters.
func BenchmarkScrape(b *testing.B) {
	r := New("ztunnel", "test")
	busy := New("ztunnel", "test")
	for i := range 1000 {
		c := busy.Open(testLabels(ReporterDestination, fmt.Sprintf("app-%d", i)))
		c.AddBytes(1000, 2000)
	}
	offered := promhttp.HandlerOpts{
		OfferedCompressions: []promhttp.Compression{promhttp.Zstd, promhttp.Gzip, promhttp.Identity},
	}
	theirs, busyTheirs := promhttp.HandlerFor(r.reg, offered), promhttp.HandlerFor(busy.reg, offered)
	for _, c := range []struct {
		name   string
		h      http.Handler
		accept string
	}{
		{"identity", r.Handler(), ""},
		{"gzip", r.Handler(), "gzip"},
		{"zstd", r.Handler(), "zstd"},
		{"promhttp-gzip", theirs, "gzip"},
		{"promhttp-zstd", theirs, "zstd"},
		{"busy-identity", busy.Handler(), ""},
		{"busy-gzip", busy.Handler(), "gzip"},
		{"busy-zstd", busy.Handler(), "zstd"},
		{"busy-promhttp-gzip", busyTheirs, "gzip"},
		{"busy-promhttp-zstd", busyTheirs, "zstd"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var size int
			for b.Loop() {
				b.StopTimer()
				runtime.GC()
				runtime.GC()
				b.StartTimer()
				size = serveWith(c.h, c.accept).Body.Len()
			}
			b.ReportMetric(float64(size), "body-B")
		})
	}
}
