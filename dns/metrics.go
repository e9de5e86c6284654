package dns

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztunnel-go/ztunnel/workload"
)

// Label names of every istio_dns_* metric (ztunnel's DnsLabels).
var labelNames = []string{"request_query_type", "request_protocol", "source_canonical_service", "source_canonical_revision"}

// unknown is the value of a label whose value is not known.
const unknown = "unknown"

// queryTypes maps record types to their lower-case names ("a", "aaaa"),
// computed once so that labelling a query does not allocate.
var queryTypes = func() map[uint16]string {
	m := make(map[uint16]string, len(dns.TypeToString))
	for t, name := range dns.TypeToString {
		m[t] = strings.ToLower(name)
	}
	return m
}()

// metrics holds the istio_dns_* families and a cache of resolved series,
// so that a query costs one map lookup under a read lock and atomic adds.
type metrics struct {
	requests         *prometheus.CounterVec   // immutable after newMetrics
	upstreamRequests *prometheus.CounterVec   // immutable after newMetrics
	upstreamFailures *prometheus.CounterVec   // immutable after newMetrics
	upstreamDuration *prometheus.HistogramVec // immutable after newMetrics

	mu    sync.RWMutex
	cache map[seriesKey]*series // guarded by mu; grows with the distinct label sets seen
}

type seriesKey struct {
	qtype    string
	proto    protocol
	service  string
	revision string
}

// series is the resolved metrics of one label set. The upstream series
// are resolved on the first forwarded query, so that a label set only
// ever answered from the mesh shows no upstream series (as in ztunnel).
type series struct {
	m        *metrics
	lv       []string           // immutable label values
	requests prometheus.Counter // immutable

	once             sync.Once // resolves the fields below
	upstreamRequests prometheus.Counter
	upstreamFailures prometheus.Counter
	upstreamDuration prometheus.Observer
}

// upstream returns s after resolving its upstream series.
func (s *series) upstream() *series {
	s.once.Do(func() {
		s.upstreamRequests = s.m.upstreamRequests.WithLabelValues(s.lv...)
		s.upstreamFailures = s.m.upstreamFailures.WithLabelValues(s.lv...)
		s.upstreamDuration = s.m.upstreamDuration.WithLabelValues(s.lv...)
	})
	return s
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_dns_requests_total",
			Help: "Total number of DNS requests (unstable)",
		}, labelNames),
		upstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_dns_upstream_requests_total",
			Help: "Total number of DNS requests forwarded to upstream (unstable)",
		}, labelNames),
		upstreamFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_dns_upstream_failures_total",
			Help: "Total number of DNS requests that failed to forward upstream (unstable)",
		}, labelNames),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_dns_upstream_request_duration_seconds",
			Help:    "Total time in seconds Istio takes to get DNS response from upstream (unstable)",
			Buckets: []float64{0.0005, 0.001, 0.01, 0.1, 1, 5},
		}, labelNames),
		cache: make(map[seriesKey]*series),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.upstreamRequests, err = register(reg, m.upstreamRequests); err != nil {
		return nil, err
	}
	if m.upstreamFailures, err = register(reg, m.upstreamFailures); err != nil {
		return nil, err
	}
	if m.upstreamDuration, err = register(reg, m.upstreamDuration); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name (the servers of several pods share one registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	var zero C
	return zero, fmt.Errorf("dns: register metrics: %w", err)
}

// series returns the metrics of a query of type qtype over proto from
// client (nil when unknown).
func (m *metrics) series(qtype uint16, proto protocol, client *workload.Workload) *series {
	k := seriesKey{qtype: queryTypes[qtype], proto: proto, service: unknown, revision: unknown}
	if k.qtype == "" {
		k.qtype = unknown // bounds the label values a client can create
	}
	if client != nil {
		if client.CanonicalName != "" {
			k.service = client.CanonicalName
		}
		if client.CanonicalRevision != "" {
			k.revision = client.CanonicalRevision
		}
	}
	m.mu.RLock()
	s := m.cache[k]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = m.cache[k]; s != nil {
		return s
	}
	lv := []string{k.qtype, k.proto.String(), k.service, k.revision}
	s = &series{m: m, lv: lv, requests: m.requests.WithLabelValues(lv...)}
	m.cache[k] = s
	return s
}
