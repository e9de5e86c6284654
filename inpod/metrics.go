package inpod

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the workload manager's view in Prometheus, under the names the Rust ztunnel
// exports in shared mode (workload_manager_*), which Istio's ztunnel dashboard reads: pods
// whose proxy runs, pods whose proxy failed to start and waits for a retry, and the proxies
// started and stopped since start-up. A nil *Metrics counts nothing.
type Metrics struct {
	active  prometheus.Gauge
	pending prometheus.Gauge
	started prometheus.Counter
	stopped prometheus.Counter
}

// NewMetrics registers the workload manager's metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: "workload_manager_" + name, Help: help})
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "workload_manager_" + name, Help: help})
	}
	m := &Metrics{
		active:  gauge("active_proxy_count", "Pods whose proxy is running (unstable)."),
		pending: gauge("pending_proxy_count", "Pods whose proxy failed to start and is retried (unstable)."),
		started: counter("proxies_started_total", "Pod proxies started (unstable)."),
		stopped: counter("proxies_stopped_total", "Pod proxies stopped, counted once their connections have drained (unstable)."),
	}
	for _, c := range []prometheus.Collector{m.active, m.pending, m.started, m.stopped} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("inpod: register metrics: %w", err)
		}
	}
	return m, nil
}

// setCounts sets the two gauges.
func (m *Metrics) setCounts(active, pending int) {
	if m == nil {
		return
	}
	m.active.Set(float64(active))
	m.pending.Set(float64(pending))
}

// proxyStarted counts a pod proxy that started.
func (m *Metrics) proxyStarted() {
	if m != nil {
		m.started.Inc()
	}
}

// proxyStopped counts a pod proxy that has drained.
func (m *Metrics) proxyStopped() {
	if m != nil {
		m.stopped.Inc()
	}
}
