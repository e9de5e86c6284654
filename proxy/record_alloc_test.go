package proxy

import (
	"io"
	"testing"

	"github.com/ztunnel-go/ztunnel/logging"
	"github.com/ztunnel-go/ztunnel/metrics"
)

// TestRecordAllocs is the allocation budget of one connection's telemetry once its label set
// is cached: open, a flush and finish. What is left is the record itself and its two SPIFFE
// ID strings; an access log line (text or JSON) adds slog's attribute overflow slice and the
// duration string. Before the series cache and the handler's allocation-free path these were
// 6 and 25.
func TestRecordAllocs(t *testing.T) {
	if recordRace {
		t.Skip("allocation counts differ under the race detector")
	}
	reg := metrics.New("ztunnel", "test")
	for _, tc := range []struct {
		name   string
		level  string
		format logging.Format
		budget float64
	}{
		{"no access log", "warn", logging.Text, 3},
		{"text access log", "info", logging.Text, 5},
		{"json access log", "info", logging.JSON, 5},
	} {
		log := accessLogger(io.Discard, tc.format, tc.level).Logger("access")
		run := func() {
			r := newTestRecord("outbound")
			r.open(reg)
			r.toServer.Add(1)
			r.flush()
			r.finish(log, nil, metrics.FlagNone, 1, 1)
		}
		run() // resolve the series
		if got := testing.AllocsPerRun(200, run); got > tc.budget {
			t.Errorf("%s: %v allocations per record, budget %v", tc.name, got, tc.budget)
		}
	}
}
