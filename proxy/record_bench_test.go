package proxy

import (
	"errors"
	"io"
	"net/netip"
	"testing"

	"github.com/ztunnel-go/ztunnel/config"
	"github.com/ztunnel-go/ztunnel/logging"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	"github.com/ztunnel-go/ztunnel/workload"
)

// Record fixtures: a client workload calling a service backed by a server workload, the pair
// every connection of the harness's S3 has.
var (
	recSrcW = &workload.Workload{
		Name: "sleep-7d9f8c6b5-x2k4q", Namespace: "default", WorkloadName: "sleep",
		CanonicalName: "sleep", CanonicalRevision: "v1", ClusterID: "Kubernetes",
	}
	recDstW = &workload.Workload{
		Name: "echo-5f6d7c8b9-abcde", Namespace: "default", WorkloadName: "echo",
		CanonicalName: "echo", CanonicalRevision: "v2", ClusterID: "Kubernetes",
	}
	recSvc = &workload.Service{Name: "echo", Namespace: "default", Hostname: "echo.default.svc.cluster.local"}
	recSrc = identity.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "sleep"}
	recDst = identity.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "echo"}
)

// newTestRecord returns the record of one HBONE connection in the given direction, as
// outbound.go and inbound.go fill it.
func newTestRecord(direction string) *record {
	r := &record{
		start: now(),
		src:   packAddr(netip.MustParseAddrPort("10.244.0.2:40312")),
		dst:   packAddr(netip.MustParseAddrPort("10.244.0.3:8080")),
		srcW:  recSrcW, dstW: recDstW, dstSvc: recSvc,
		srcID: identOf(recSrc), dstID: identOf(recDst), mtls: true,
	}
	if direction == "inbound" {
		r.flags = flagInbound
	}
	if direction == "outbound" {
		r.hboneAddr = packAddr(netip.MustParseAddrPort("10.244.0.3:15008"))
	}
	return r
}

func accessLogger(w io.Writer, f logging.Format, level string) *logging.Output {
	lvl, err := config.ParseLogLevel(level)
	if err != nil {
		panic(err)
	}
	return logging.NewOutput(w, f, lvl)
}

// BenchmarkRecordOpenFinish is the per-connection telemetry of one proxy leg: open (metric
// series), one periodic flush, finish (close counters and the access log line at info, as
// under RUST_LOG=info, written to io.Discard).
func BenchmarkRecordOpenFinish(b *testing.B) {
	reg := metrics.New("ztunnel", "bench")
	for _, c := range []struct {
		name   string
		level  string
		format logging.Format
		err    error
	}{
		{"text", "info", logging.Text, nil},
		{"json", "info", logging.JSON, nil},
		{"nolog", "warn", logging.Text, nil},
		{"error", "info", logging.Text, errors.New("connection reset by peer")},
	} {
		b.Run(c.name, func(b *testing.B) {
			log := accessLogger(io.Discard, c.format, c.level).Logger("access")
			b.ReportAllocs()
			for b.Loop() {
				r := newTestRecord("inbound")
				r.open(reg, log)
				r.toServer.Add(1)
				r.toClient.Add(1)
				r.flush()
				r.finish(log, c.err, metrics.FlagNone, 1, 1)
			}
		})
	}
}
