package proxy

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/ztunnel-go/ztunnel/logging"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/workload"
)

type recordCase struct {
	name     string
	rec      func() *record
	lateDeny bool
	err      error
	flags    string
	toServer int64
	toClient int64
}

// recordCases are the shapes of record the proxy writes: tunnelled outbound, HBONE inbound,
// plain passthrough without workloads, an inbound source known only by its certificate,
// failures and a late policy denial.
func recordCases() []recordCase {
	passthrough := func() *record {
		r := newTestRecord("outbound")
		r.dstW, r.dstSvc, r.dstID, r.mtls, r.hboneAddr = nil, nil, ident{}, false, addr{}
		r.dst = packAddr(netip.MustParseAddrPort("10.244.0.4:9000"))
		return r
	}
	certOnly := func() *record {
		r := newTestRecord("inbound")
		r.srcW = nil
		return r
	}
	ipv6 := func() *record {
		r := newTestRecord("outbound")
		r.src = packAddr(netip.MustParseAddrPort("[fd00::2]:40312"))
		r.dst = packAddr(netip.MustParseAddrPort("[fd00::3]:8080"))
		r.hboneAddr = packAddr(netip.MustParseAddrPort("[fd00::3]:15008"))
		return r
	}
	// A client through another network's gateway, known by its baggage only, and the
	// destination a double-HBONE tunnel reached, known by its answer's baggage.
	fromBaggage := func() *record {
		r := newTestRecord("inbound")
		r.srcW = workload.FromBaggage("k8s.cluster.name=west,k8s.namespace.name=sleep-ns,k8s.deployment.name=sleep,service.name=sleep-app,service.version=v2,cloud.region=r2")
		return r
	}
	toBaggage := func() *record {
		r := newTestRecord("outbound")
		r.dstW = workload.FromBaggage("k8s.cluster.name=east,k8s.namespace.name=echo-ns,k8s.deployment.name=echo,service.name=echo-app,service.version=v3")
		return r
	}
	return []recordCase{
		{name: "outbound hbone", rec: func() *record { return newTestRecord("outbound") }, flags: metrics.FlagNone, toServer: 12, toClient: 3400},
		{name: "inbound hbone", rec: func() *record { return newTestRecord("inbound") }, flags: metrics.FlagNone, toServer: 12, toClient: 3400},
		{name: "passthrough", rec: passthrough, flags: metrics.FlagNone, toServer: 1, toClient: 1},
		{name: "cert only", rec: certOnly, flags: metrics.FlagNone, toServer: 5, toClient: 0},
		{name: "ipv6", rec: ipv6, flags: metrics.FlagNone, toServer: 7, toClient: 8},
		{name: "connect error", rec: passthrough, err: errors.New(`dial tcp 10.244.0.4:9000: connect: "refused"`), flags: metrics.FlagConnect},
		{name: "error no flags", rec: passthrough, err: errors.New("reset")},
		{name: "tls failure", rec: func() *record { return newTestRecord("outbound") }, err: errors.New("handshake"), flags: metrics.FlagTLSFailure},
		{name: "baggage source", rec: fromBaggage, flags: metrics.FlagNone, toServer: 3, toClient: 4},
		{name: "baggage destination", rec: toBaggage, flags: metrics.FlagNone, toServer: 5, toClient: 6},
		{name: "late deny", rec: func() *record { return newTestRecord("inbound") }, lateDeny: true, flags: metrics.FlagNone, toServer: 9, toClient: 10},
	}
}

var (
	textTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\t`)
	jsonTime = regexp.MustCompile(`"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"`)
	duration = regexp.MustCompile(`"duration":"\d+ms"|duration="\d+ms"`)
)

// finishAll runs every record case through open and finish and returns the access log with
// the time and duration fields made constant.
func finishAll(t *testing.T, reg *metrics.Registry, f logging.Format) string {
	t.Helper()
	var buf bytes.Buffer
	log := accessLogger(&buf, f, "info").Logger("access")
	for _, c := range recordCases() {
		r := c.rec()
		if c.lateDeny {
			r.deny()
		}
		r.open(reg, log)
		r.toServer.Add(c.toServer / 2)
		r.flush()
		r.finish(log, c.err, c.flags, c.toServer, c.toClient)
	}
	var out strings.Builder
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		line = textTime.ReplaceAllString(line, "TIME\t")
		line = jsonTime.ReplaceAllString(line, `"time":"TIME"`)
		line = duration.ReplaceAllStringFunc(line, func(s string) string {
			if s[0] == '"' {
				return `"duration":"Nms"`
			}
			return `duration="Nms"`
		})
		out.WriteString(line)
	}
	return out.String()
}

// TestRecordAccessLogFormat pins the access log lines of every record shape byte for byte
// (time and duration aside), in both formats.
func TestRecordAccessLogFormat(t *testing.T) {
	for _, c := range []struct {
		format logging.Format
		want   string
	}{
		{logging.Text, wantTextLog},
		{logging.JSON, wantJSONLog},
	} {
		got := finishAll(t, metrics.New("ztunnel", "test"), c.format)
		if got != c.want {
			t.Errorf("format %d:\ngot:\n%s\nwant:\n%s", c.format, got, c.want)
		}
	}
}

// TestRecordMetricsExposition pins the istio_tcp_* series the record cases leave behind, twice
// over (the second round goes through any cached series).
func TestRecordMetricsExposition(t *testing.T) {
	reg := metrics.New("ztunnel", "test")
	finishAll(t, reg, logging.Text)
	finishAll(t, reg, logging.Text)
	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var got strings.Builder
	for _, line := range strings.SplitAfter(rec.Body.String(), "\n") {
		if strings.Contains(line, "istio_tcp_") {
			got.WriteString(line)
		}
	}
	if got.String() != wantExposition {
		t.Errorf("got:\n%s\nwant:\n%s", got.String(), wantExposition)
	}
}

// TestRecordHostAuthority: a connection whose CONNECT authority names a service by hostname
// (double HBONE) logs it as dst.hbone_addr, bare in text as ztunnel writes it, in a JSON string
// otherwise; a late denial shares the record's note with it.
func TestRecordHostAuthority(t *testing.T) {
	const authority = "echo.default.svc.cluster.local:80"
	for _, c := range []struct {
		format logging.Format
		want   string
	}{
		{logging.Text, " dst.hbone_addr=" + authority + " "},
		{logging.JSON, `,"dst.hbone_addr":"` + authority + `",`},
	} {
		for _, lateDeny := range []bool{false, true} {
			var buf bytes.Buffer
			r := newTestRecord("outbound")
			r.hboneAddr = addr{}
			r.noted().authority = authority
			if lateDeny {
				r.deny()
			}
			log := accessLogger(&buf, c.format, "info").Logger("access")
			r.open(metrics.New("ztunnel", "test"), log)
			r.finish(log, nil, metrics.FlagNone, 1, 2)
			line := buf.String()
			if strings.Count(line, "dst.hbone_addr") != 1 || !strings.Contains(line, c.want) {
				t.Errorf("%v, late deny %v: want %q in %s", c.format, lateDeny, c.want, line)
			}
			if lateDeny && !strings.Contains(line, errPolicyChange.Error()) {
				t.Errorf("%v: the late denial is lost: %s", c.format, line)
			}
		}
	}
}

// TestConnectionOpenedLine: with the access log at debug level, a connection's record writes
// ztunnel's "connection opened" line when it opens, with the fields of its "connection complete"
// line known then (everything up to direction), and none at info level.
func TestConnectionOpenedLine(t *testing.T) {
	for _, level := range []string{"debug", "info"} {
		var buf bytes.Buffer
		log := accessLogger(&buf, logging.Text, level).Logger("access")
		r := newTestRecord("outbound")
		r.open(metrics.New("ztunnel", "test"), log)
		r.finish(log, nil, metrics.FlagNone, 1, 2)
		lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
		if level == "info" {
			if len(lines) != 1 || strings.Contains(lines[0], "connection opened") {
				t.Errorf("at info level: %q, want the complete line alone", lines)
			}
			continue
		}
		if len(lines) != 2 {
			t.Fatalf("at debug level: %q, want the opened and the complete line", lines)
		}
		_, opened, _ := strings.Cut(lines[0], "\tdebug\taccess\tconnection opened\t")
		_, complete, _ := strings.Cut(lines[1], "\tinfo\taccess\tconnection complete\t")
		fields, _, _ := strings.Cut(complete, " bytes_sent=")
		if opened == "" || opened != fields || !strings.HasSuffix(opened, `direction="outbound"`) {
			t.Errorf("opened line %q, want the fields %q", lines[0], fields)
		}
	}
}
