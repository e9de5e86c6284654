package metrics

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ztunnel-go/ztunnel/internal/boundedmap"
)

func testLabels(reporter, dst string) Labels {
	return Labels{
		Reporter:       reporter,
		SourceWorkload: "sleep", SourceCanonicalService: "sleep", SourceCanonicalRevision: "v1",
		SourceWorkloadNamespace: "default", SourcePrincipal: "spiffe://cluster.local/ns/default/sa/sleep",
		DestinationWorkload: dst, DestinationWorkloadNamespace: "default",
		RequestProtocol: "tcp", ConnectionSecurityPolicy: SecurityMutualTLS,
	}
}

// scrape returns the istio_tcp_* sample lines (no comments) of r.
func scrape(t *testing.T, r *Registry) []string {
	t.Helper()
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var out []string
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, "istio_tcp_") && !strings.HasPrefix(line, "istio_tcp_sockets_open") {
			out = append(out, line)
		}
	}
	return out
}

// sample returns the value of the series of metric whose labels contain all of want, or ""
// when there is no such series.
func sample(lines []string, metric string, want ...string) string {
next:
	for _, l := range lines {
		if !strings.HasPrefix(l, metric+"{") {
			continue
		}
		for _, w := range want {
			if !strings.Contains(l, w) {
				continue next
			}
		}
		return l[strings.LastIndexByte(l, ' ')+1:]
	}
	return ""
}

// TestSeriesAppearWhenUsed checks that resolving series through the cache creates each series
// exactly when the uncached code did: opened and the byte counters at Open, closed at the
// first Close, failed only for flags other than "-".
func TestSeriesAppearWhenUsed(t *testing.T) {
	r := New("ztunnel", "test")
	c := r.Open(testLabels(ReporterSource, "echo"))
	lines := scrape(t, r)
	for _, tc := range []struct {
		metric string
		want   string
	}{
		{"istio_tcp_connections_opened_total", "1"},
		{"istio_tcp_received_bytes_total", "0"},
		{"istio_tcp_sent_bytes_total", "0"},
		{"istio_tcp_connections_closed_total", ""},
		{"istio_tcp_connections_failed_total", ""},
	} {
		if got := sample(lines, tc.metric); got != tc.want {
			t.Errorf("after Open: %s = %q, want %q", tc.metric, got, tc.want)
		}
	}
	c.AddBytes(10, 20)
	c.Close(FlagNone)
	// A second connection of the same labels goes through the cache; this one fails.
	c2 := r.Open(testLabels(ReporterSource, "echo"))
	c2.AddBytes(1, 0)
	c2.Close(FlagConnect)
	lines = scrape(t, r)
	for _, tc := range []struct {
		metric string
		flags  string
		want   string
	}{
		{"istio_tcp_connections_opened_total", "-", "2"},
		{"istio_tcp_connections_opened_total", "CONNECT", ""},
		{"istio_tcp_received_bytes_total", "-", "11"},
		{"istio_tcp_sent_bytes_total", "-", "20"},
		{"istio_tcp_connections_closed_total", "-", "1"},
		{"istio_tcp_connections_closed_total", "CONNECT", "1"},
		{"istio_tcp_connections_failed_total", "-", ""},
		{"istio_tcp_connections_failed_total", "CONNECT", "1"},
		{"istio_tcp_received_bytes_total", "CONNECT", ""},
	} {
		if got := sample(lines, tc.metric, `response_flags="`+tc.flags+`"`); got != tc.want {
			t.Errorf("%s{response_flags=%q} = %q, want %q", tc.metric, tc.flags, got, tc.want)
		}
	}
}

// TestLabelDefaults checks the exported values of empty labels and that labels differing only
// in how an empty value is spelled share one cached series.
func TestLabelDefaults(t *testing.T) {
	r := New("ztunnel", "test")
	r.Open(Labels{}).Close("")
	r.Open(Labels{Reporter: Unknown, RequestProtocol: "tcp", ResponseFlags: FlagNone, SourceApp: Unknown}).Close(FlagNone)
	if n := r.cache.Len(); n != 1 {
		t.Errorf("cached label sets = %d, want 1", n)
	}
	lines := scrape(t, r)
	want := `istio_tcp_connections_closed_total{connection_security_policy="unknown",destination_app="unknown",` +
		`destination_canonical_revision="unknown",destination_canonical_service="unknown",destination_cluster="unknown",` +
		`destination_principal="unknown",destination_service="unknown",destination_service_name="unknown",` +
		`destination_service_namespace="unknown",destination_version="unknown",destination_workload="unknown",` +
		`destination_workload_namespace="unknown",reporter="unknown",request_protocol="tcp",response_flags="-",` +
		`source_app="unknown",source_canonical_revision="unknown",source_canonical_service="unknown",` +
		`source_cluster="unknown",source_principal="unknown",source_version="unknown",source_workload="unknown",` +
		`source_workload_namespace="unknown"} 2`
	found := false
	for _, l := range lines {
		found = found || l == want
	}
	if !found {
		t.Errorf("no line\n%s\nin\n%s", want, strings.Join(lines, "\n"))
	}
}

// TestCacheBound fills a small cache past its bound: it stays bounded and counting stays
// exact for evicted label sets and for connections holding an evicted series.
func TestCacheBound(t *testing.T) {
	r := New("ztunnel", "test")
	r.cache = boundedmap.New[Labels, *series](4)
	held := r.Open(testLabels(ReporterSource, "w0"))
	for i := range 20 {
		r.Open(testLabels(ReporterSource, fmt.Sprintf("w%d", i))).Close(FlagNone)
	}
	if n := r.cache.Len(); n > 4 {
		t.Errorf("cache holds %d label sets, bound 4", n)
	}
	held.AddBytes(5, 0)
	held.Close(FlagNone)
	lines := scrape(t, r)
	for _, tc := range []struct {
		metric, dst, want string
	}{
		{"istio_tcp_connections_opened_total", "w0", "2"},
		{"istio_tcp_connections_closed_total", "w0", "2"},
		{"istio_tcp_received_bytes_total", "w0", "5"},
		{"istio_tcp_connections_opened_total", "w19", "1"},
	} {
		if got := sample(lines, tc.metric, `destination_workload="`+tc.dst+`"`); got != tc.want {
			t.Errorf("%s{destination_workload=%q} = %q, want %q", tc.metric, tc.dst, got, tc.want)
		}
	}
}

// TestConcurrentOpen opens and closes connections of a few label sets from many goroutines
// (run with -race) and checks the totals.
func TestConcurrentOpen(t *testing.T) {
	r := New("ztunnel", "test")
	const workers, per = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				c := r.Open(testLabels(ReporterDestination, fmt.Sprintf("w%d", (w+i)%3)))
				c.AddBytes(1, 2)
				flags := FlagNone
				if i%4 == 0 {
					flags = FlagDeny
				}
				c.Close(flags)
			}
		})
	}
	wg.Wait()
	lines := scrape(t, r)
	var opened, closed, failed, recv int
	for _, l := range lines {
		var n int
		fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &n)
		switch {
		case strings.HasPrefix(l, "istio_tcp_connections_opened_total"):
			opened += n
		case strings.HasPrefix(l, "istio_tcp_connections_closed_total"):
			closed += n
		case strings.HasPrefix(l, "istio_tcp_connections_failed_total"):
			failed += n
		case strings.HasPrefix(l, "istio_tcp_received_bytes_total"):
			recv += n
		}
	}
	total := workers * per
	for _, tc := range []struct {
		name      string
		got, want int
	}{
		{"opened", opened, total}, {"closed", closed, total}, {"failed", failed, total / 4}, {"received", recv, total},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

// TestConnAllocs is the allocation budget of a connection whose label set is cached: Open,
// byte counts and Close allocate nothing (the uncached path built and hashed a 23-value slice
// three times at Open and once more at Close).
func TestConnAllocs(t *testing.T) {
	r := New("ztunnel", "test")
	l := testLabels(ReporterSource, "echo")
	r.Open(l).Close(FlagNone)
	r.Open(l).Close(FlagDeny)
	for _, tc := range []struct {
		name  string
		flags string
	}{
		{"clean close", FlagNone},
		{"failed close", FlagDeny},
	} {
		got := testing.AllocsPerRun(200, func() {
			c := r.Open(l)
			c.AddBytes(1, 1)
			c.Close(tc.flags)
		})
		if got != 0 {
			t.Errorf("%s: %v allocations per connection, want 0", tc.name, got)
		}
	}
	var zero Conn // never opened: counts nothing, does not panic
	zero.AddBytes(1, 1)
	zero.Close(FlagDeny)
}

// TestSocketOpenedAllocs: counting an accepted socket open and closed allocates nothing, and
// each reporter has its own series.
func TestSocketOpenedAllocs(t *testing.T) {
	r := New("ztunnel", "test")
	for _, reporter := range []string{ReporterSource, ReporterDestination} {
		got := testing.AllocsPerRun(200, func() {
			r.SocketOpened(reporter)
			r.SocketClosed(reporter)
		})
		if got != 0 {
			t.Errorf("%s: %v allocations per socket, want 0", reporter, got)
		}
	}
	open := func() (outbound, inbound string) {
		rec := httptest.NewRecorder()
		r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		for _, line := range strings.Split(rec.Body.String(), "\n") {
			if v, ok := strings.CutPrefix(line, `istio_tcp_sockets_open{reporter="source"} `); ok {
				outbound = v
			}
			if v, ok := strings.CutPrefix(line, `istio_tcp_sockets_open{reporter="destination"} `); ok {
				inbound = v
			}
		}
		return outbound, inbound
	}
	r.SocketOpened(ReporterSource)
	r.SocketOpened(ReporterDestination)
	r.SocketClosed(ReporterDestination)
	if o, i := open(); o != "1" || i != "0" {
		t.Errorf("sockets open (source, destination) = %q, %q; want 1, 0", o, i)
	}
	r.SocketClosed(ReporterSource)
	if o, i := open(); o != "0" || i != "0" {
		t.Errorf("sockets open after both closed = %q, %q; want 0, 0", o, i)
	}
}

func BenchmarkConnCached(b *testing.B) {
	r := New("ztunnel", "bench")
	l := testLabels(ReporterSource, "echo")
	b.ReportAllocs()
	for b.Loop() {
		c := r.Open(l)
		c.AddBytes(1, 1)
		c.Close(FlagNone)
	}
}
