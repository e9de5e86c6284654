package admin

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/ztunnel-go/ztunnel/config"
	"github.com/ztunnel-go/ztunnel/logging"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/tls/certs"
	"github.com/ztunnel-go/ztunnel/version"
	"github.com/ztunnel-go/ztunnel/workload"
)

func newServer(t *testing.T) (*Server, *int) {
	t.Helper()
	store := workload.NewStore()
	err := store.Apply(workload.Update{Workloads: []*workload.Workload{{
		UID: "cluster1//v1/Pod/default/app", Name: "app", Namespace: "default", ServiceAccount: "app",
		WorkloadIPs: []netip.Addr{netip.MustParseAddr("10.0.0.5")}, Protocol: workload.ProtocolHBONE, Capacity: 1,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := certs.NewFakeCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	mgr := certs.NewManager(ca, certs.ManagerOptions{})
	t.Cleanup(func() { mgr.Close() })
	lvl, _ := config.ParseLogLevel("info")
	quits := 0
	s := &Server{
		Store: store, Certs: mgr, Config: map[string]any{"proxyMode": "dedicated"},
		Log: logging.NewOutput(io.Discard, logging.Text, lvl), InitialLevel: lvl,
		Metrics: metrics.New("ztunnel", "test"), Ready: NewReadiness(),
		Version:  version.BuildInfo{Version: "test"},
		Shutdown: func() { quits++ },
	}
	return s, &quits
}

func do(t *testing.T, h http.Handler, method, target string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec.Code, rec.Body.String()
}

func TestConfigDumpShape(t *testing.T) {
	s, _ := newServer(t)
	code, body := do(t, s.AdminHandler(), http.MethodGet, "/config_dump")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	var dump map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &dump); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"workloads", "services", "policies", "certificates", "config", "version", "staticConfig"} {
		if _, ok := dump[k]; !ok {
			t.Errorf("config_dump lacks %q", k)
		}
	}
	var ws []map[string]any
	if err := json.Unmarshal(dump["workloads"], &ws); err != nil || len(ws) != 1 {
		t.Fatalf("workloads = %s (%v)", dump["workloads"], err)
	}
	// istioctl reads these keys of each workload.
	for _, k := range []string{"uid", "name", "namespace", "workloadIps", "protocol", "serviceAccount"} {
		if _, ok := ws[0][k]; !ok {
			t.Errorf("workload lacks %q: %v", k, ws[0])
		}
	}
	if ws[0]["protocol"] != "HBONE" || ws[0]["workloadIps"].([]any)[0] != "10.0.0.5" {
		t.Errorf("workload = %v", ws[0])
	}
	var svcs []any
	if err := json.Unmarshal(dump["services"], &svcs); err != nil || svcs == nil {
		t.Errorf("services must be an empty list, not %s", dump["services"])
	}
}

func TestLogging(t *testing.T) {
	s, _ := newServer(t)
	h := s.AdminHandler()
	cases := []struct {
		method, target string
		wantCode       int
		wantBody       string
	}{
		{http.MethodGet, "/logging", 200, "current log level is info"},
		{http.MethodPost, "/logging?level=debug", 200, "current log level is debug"},
		{http.MethodPost, "/logging?level=access:warn", 200, "access=warn"},
		{http.MethodPost, "/logging?level=loud", 400, "Invalid level provided: loud"},
		{http.MethodPost, "/logging?reset", 200, "current log level is info"},
		{http.MethodPut, "/logging", 405, "Invalid HTTP method"},
	}
	for _, c := range cases {
		code, body := do(t, h, c.method, c.target)
		if code != c.wantCode || !strings.Contains(body, c.wantBody) {
			t.Errorf("%s %s = %d %q, want %d containing %q", c.method, c.target, code, body, c.wantCode, c.wantBody)
		}
	}
	// The default stayed debug when only a scope changed.
	s.Log.SetLevel(s.InitialLevel)
	do(t, h, http.MethodPost, "/logging?level=debug")
	do(t, h, http.MethodPost, "/logging?level=xds:error")
	if got := s.Log.Level().String(); !strings.Contains(got, "debug") || !strings.Contains(got, "xds=error") {
		t.Errorf("level after scope change = %q", got)
	}
}

func TestReadiness(t *testing.T) {
	s, _ := newServer(t)
	h := s.ReadinessHandler()
	doneXDS := s.Ready.Register("xds")
	doneProxy := s.Ready.Register("proxy listeners")
	code, body := do(t, h, http.MethodGet, "/healthz/ready")
	if code != 500 || !strings.Contains(body, "proxy listeners, xds") {
		t.Fatalf("not ready = %d %q", code, body)
	}
	doneXDS()
	doneXDS() // idempotent
	doneProxy()
	if code, body := do(t, h, http.MethodGet, "/healthz/ready"); code != 200 || body != "ready\n" {
		t.Fatalf("ready = %d %q", code, body)
	}
}

func TestQuitAndStats(t *testing.T) {
	s, quits := newServer(t)
	if code, _ := do(t, s.AdminHandler(), http.MethodGet, "/quitquitquit"); code != 405 || *quits != 0 {
		t.Fatalf("GET /quitquitquit = %d, quits %d", code, *quits)
	}
	if code, body := do(t, s.AdminHandler(), http.MethodPost, "/quitquitquit"); code != 200 || body != "shutdown now\n" || *quits != 1 {
		t.Fatalf("POST /quitquitquit = %d %q, quits %d", code, body, *quits)
	}
	for _, p := range []string{"/metrics", "/stats/prometheus"} {
		code, body := do(t, s.StatsHandler(), http.MethodGet, p)
		if code != 200 || !strings.Contains(body, `istio_build{component="ztunnel",tag="test"} 1`) {
			t.Errorf("%s = %d, body lacks istio_build", p, code)
		}
	}
	if code, body := do(t, s.AdminHandler(), http.MethodGet, "/"); code != 200 || !strings.Contains(body, "/config_dump") {
		t.Errorf("index = %d %q", code, body)
	}
	if code, _ := do(t, s.AdminHandler(), http.MethodGet, "/debug/pprof/"); code != 200 {
		t.Errorf("pprof index = %d", code)
	}
}

// Prometheus asks for gzip; ztunnel compresses its metrics responses (istio/ztunnel#1979), and
// so does ours: a scrape of thousands of series shrinks several times.
func TestStatsCompressed(t *testing.T) {
	s, _ := newServer(t)
	for _, p := range []string{"/metrics", "/stats/prometheus"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, p, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		s.StatsHandler().ServeHTTP(rec, req)
		if rec.Code != 200 || rec.Header().Get("Content-Encoding") != "gzip" {
			t.Fatalf("%s with Accept-Encoding gzip = %d, Content-Encoding %q", p, rec.Code, rec.Header().Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(rec.Body)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		body, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if !strings.Contains(string(body), `istio_build{component="ztunnel",tag="test"} 1`) {
			t.Errorf("%s: decompressed body lacks istio_build", p)
		}
	}
	// Without the header the body is plain text.
	rec := httptest.NewRecorder()
	s.StatsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if enc := rec.Header().Get("Content-Encoding"); enc != "" || !strings.Contains(rec.Body.String(), "istio_build") {
		t.Errorf("plain scrape: Content-Encoding %q", enc)
	}
}

// TestStatsEncodingChoice: among the encodings a client accepts, the metrics answer picks as
// ztunnel's does (zstd before gzip at equal q-values, a higher q-value first), and a zstd body
// decodes to the metrics.
func TestStatsEncodingChoice(t *testing.T) {
	s, _ := newServer(t)
	for _, tc := range []struct{ accept, want string }{
		{"gzip, deflate, br, zstd", "zstd"}, // curl --compressed
		{"zstd", "zstd"},
		{"gzip", "gzip"},
		{"zstd;q=0.5, gzip", "gzip"},
		{"*", "zstd"},
		{"deflate", ""}, // offered by ztunnel, not here: uncompressed
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept-Encoding", tc.accept)
		s.StatsHandler().ServeHTTP(rec, req)
		if got := rec.Header().Get("Content-Encoding"); rec.Code != 200 || got != tc.want {
			t.Errorf("Accept-Encoding %q: %d, Content-Encoding %q, want 200 %q", tc.accept, rec.Code, got, tc.want)
			continue
		}
		if tc.want != "zstd" {
			continue
		}
		zr, err := zstd.NewReader(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(zr)
		zr.Close()
		if err != nil || !strings.Contains(string(body), `istio_build{component="ztunnel",tag="test"} 1`) {
			t.Errorf("Accept-Encoding %q: the zstd body does not decode to the metrics (%v)", tc.accept, err)
		}
	}
}
