// Package metrics holds ztunnel's Prometheus metrics: Istio's standard TCP metrics with the
// standard source_*/destination_* labels, and the build info. Counters are resolved once per
// distinct label set and cached (cache.go), so opening a connection is one map lookup and the
// data path only does atomic adds.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ztunnel-go/ztunnel/internal/boundedmap"
)

// Values of the enumerated labels, as Istio writes them.
const (
	ReporterSource      = "source"
	ReporterDestination = "destination"

	FlagNone        = "-"
	FlagDeny        = "DENY"
	FlagConnect     = "CONNECT"
	FlagTLSFailure  = "TLS_FAILURE"
	FlagH2Handshake = "H2_HANDSHAKE_FAILURE"
	FlagIdentity    = "IDENTITY_ERROR"
	FlagCertRevoked = "CERT_REVOKED" // ended because a reloaded revocation list revoked the peer
	// FlagNetworkPolicy: the TCP connect to an HBONE peer's 15008 timed out, as when a
	// NetworkPolicy drops it.
	FlagNetworkPolicy = "NETWORK_POLICY"

	SecurityMutualTLS = "mutual_tls"
	Unknown           = "unknown"
)

// labelNames is the order of Labels' fields; it must match Labels.values.
var labelNames = []string{
	"reporter",
	"source_workload", "source_canonical_service", "source_canonical_revision",
	"source_workload_namespace", "source_principal", "source_app", "source_version", "source_cluster",
	"destination_service", "destination_service_namespace", "destination_service_name",
	"destination_workload", "destination_canonical_service", "destination_canonical_revision",
	"destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
	"destination_cluster",
	"request_protocol", "response_flags", "connection_security_policy",
}

// Labels is the standard Istio label set of one connection. Empty values are reported as
// "unknown", as Istio does.
type Labels struct {
	Reporter string

	SourceWorkload, SourceCanonicalService, SourceCanonicalRevision    string
	SourceWorkloadNamespace, SourcePrincipal, SourceApp, SourceVersion string
	SourceCluster                                                      string

	DestinationService, DestinationServiceNamespace, DestinationServiceName        string
	DestinationWorkload, DestinationCanonicalService, DestinationCanonicalRevision string
	DestinationWorkloadNamespace, DestinationPrincipal, DestinationApp             string
	DestinationVersion, DestinationCluster                                         string

	RequestProtocol          string // "tcp" when empty
	ResponseFlags            string // "-" when empty
	ConnectionSecurityPolicy string // "unknown" when empty
}

func orUnknown(s string) string {
	if s == "" {
		return Unknown
	}
	return s
}

// normalized returns l with the defaults of empty values applied: the label values exactly as
// they are exported, so two Labels that name the same series are equal.
func (l *Labels) normalized() Labels {
	n := Labels{
		Reporter:       orUnknown(l.Reporter),
		SourceWorkload: orUnknown(l.SourceWorkload), SourceCanonicalService: orUnknown(l.SourceCanonicalService),
		SourceCanonicalRevision: orUnknown(l.SourceCanonicalRevision), SourceWorkloadNamespace: orUnknown(l.SourceWorkloadNamespace),
		SourcePrincipal: orUnknown(l.SourcePrincipal), SourceApp: orUnknown(l.SourceApp),
		SourceVersion: orUnknown(l.SourceVersion), SourceCluster: orUnknown(l.SourceCluster),
		DestinationService: orUnknown(l.DestinationService), DestinationServiceNamespace: orUnknown(l.DestinationServiceNamespace),
		DestinationServiceName: orUnknown(l.DestinationServiceName), DestinationWorkload: orUnknown(l.DestinationWorkload),
		DestinationCanonicalService: orUnknown(l.DestinationCanonicalService), DestinationCanonicalRevision: orUnknown(l.DestinationCanonicalRevision),
		DestinationWorkloadNamespace: orUnknown(l.DestinationWorkloadNamespace), DestinationPrincipal: orUnknown(l.DestinationPrincipal),
		DestinationApp: orUnknown(l.DestinationApp), DestinationVersion: orUnknown(l.DestinationVersion),
		DestinationCluster:       orUnknown(l.DestinationCluster),
		RequestProtocol:          l.RequestProtocol,
		ResponseFlags:            normFlags(l.ResponseFlags),
		ConnectionSecurityPolicy: orUnknown(l.ConnectionSecurityPolicy),
	}
	if n.RequestProtocol == "" {
		n.RequestProtocol = "tcp"
	}
	return n
}

func normFlags(f string) string {
	if f == "" {
		return FlagNone
	}
	return f
}

// values returns the label values of l, which must be normalized, in labelNames order.
func (l *Labels) values() []string {
	return []string{
		l.Reporter,
		l.SourceWorkload, l.SourceCanonicalService, l.SourceCanonicalRevision,
		l.SourceWorkloadNamespace, l.SourcePrincipal, l.SourceApp, l.SourceVersion, l.SourceCluster,
		l.DestinationService, l.DestinationServiceNamespace, l.DestinationServiceName,
		l.DestinationWorkload, l.DestinationCanonicalService, l.DestinationCanonicalRevision,
		l.DestinationWorkloadNamespace, l.DestinationPrincipal, l.DestinationApp, l.DestinationVersion,
		l.DestinationCluster,
		l.RequestProtocol, l.ResponseFlags, l.ConnectionSecurityPolicy,
	}
}

// Registry owns the process's metrics. Immutable after New, except the series cache (guarded
// by its own lock).
type Registry struct {
	reg *prometheus.Registry

	opened   *prometheus.CounterVec
	closed   *prometheus.CounterVec
	failed   *prometheus.CounterVec
	received *prometheus.CounterVec
	sent     *prometheus.CounterVec

	socketsOutbound prometheus.Gauge // istio_tcp_sockets_open{reporter="source"}
	socketsInbound  prometheus.Gauge // istio_tcp_sockets_open{reporter="destination"}

	onDemandDNS *prometheus.CounterVec // istio_on_demand_dns_total, onDemandDNSLabels

	crlRejections *prometheus.CounterVec // istio_crl_policy_rejections_total{reporter}

	cache     *boundedmap.Map[Labels, *series] // normalized label sets to their series (cache.go)
	newSeries func(Labels) *series             // r.makeSeries, bound once
}

// New creates the registry with the go_* and process_* metrics (runtime.go) and istio_build,
// whose tag is istioVersion: the Istio release the process is deployed as, not its own
// build's version (as ztunnel's).
func New(component, istioVersion string) *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	r.cache = boundedmap.New[Labels, *series](defaultCacheSize)
	r.newSeries = r.makeSeries
	counter := func(name, help string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labelNames)
		r.reg.MustRegister(c)
		return c
	}
	r.opened = counter("istio_tcp_connections_opened_total", "The total number of TCP connections opened.")
	r.closed = counter("istio_tcp_connections_closed_total", "The total number of TCP connections closed.")
	r.failed = counter("istio_tcp_connections_failed_total", "The total number of TCP connections that failed to establish.")
	r.received = counter("istio_tcp_received_bytes_total", "The size of total bytes received during request in case of a TCP connection.")
	r.sent = counter("istio_tcp_sent_bytes_total", "The size of total bytes sent during response in case of a TCP connection.")
	sockets := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "istio_tcp_sockets_open",
		Help: "The current number of open TCP sockets."}, []string{"reporter"})
	r.reg.MustRegister(sockets)
	r.socketsOutbound = sockets.WithLabelValues(ReporterSource)
	r.socketsInbound = sockets.WithLabelValues(ReporterDestination)
	r.onDemandDNS = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_on_demand_dns_total",
		Help: "DNS lookups made to connect to workloads known by hostname only (unstable)."}, onDemandDNSLabels)
	r.reg.MustRegister(r.onDemandDNS)
	r.crlRejections = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_crl_policy_rejections_total",
		Help: "The total number of connections rejected due to CRL certificate revocation (unstable)."}, []string{"reporter"})
	r.reg.MustRegister(r.crlRejections)
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "istio_build", Help: "Istio component build info."},
		[]string{"component", "tag"})
	build.WithLabelValues(component, istioVersion).Set(1)
	r.reg.MustRegister(build, newRuntimeCollector())
	return r
}

// onDemandDNSLabels are istio_on_demand_dns_total's labels: the client's source_* labels and
// the hostname looked up.
var onDemandDNSLabels = []string{
	"source_workload", "source_canonical_service", "source_canonical_revision",
	"source_workload_namespace", "source_principal", "source_app", "source_version", "source_cluster",
	"hostname",
}

// OnDemandDNS counts a DNS lookup of hostname made to connect a client whose labels are l (only
// its source fields are used): the address of a workload istiod knows by hostname only.
func (r *Registry) OnDemandDNS(l Labels, hostname string) {
	n := l.normalized()
	r.onDemandDNS.WithLabelValues(n.SourceWorkload, n.SourceCanonicalService, n.SourceCanonicalRevision,
		n.SourceWorkloadNamespace, n.SourcePrincipal, n.SourceApp, n.SourceVersion, n.SourceCluster,
		orUnknown(hostname)).Inc()
}

// CRLRejected counts an mTLS connection refused at its handshake, or ended later, because the
// revocation lists (CRL_PATH) revoke its peer's certificate: one per TLS connection (an HBONE
// tunnel), whatever it carried. reporter is the side that refused it.
func (r *Registry) CRLRejected(reporter string) { r.crlRejections.WithLabelValues(reporter).Inc() }

// Registerer lets other packages (xds, dns) add their own metrics.
func (r *Registry) Registerer() prometheus.Registerer { return r.reg }

// Handler serves the Prometheus text format, compressed as the request's Accept-Encoding allows.
// Of the encodings ztunnel offers (its HTTP library's: zstd, br, gzip, deflate, preferred in
// that order among equal q-values), zstd and gzip are offered here, in that order; a client that
// accepts neither gets the text uncompressed. Prometheus asks for gzip. The compression is
// compress.go's, promhttp only writes the text.
func (r *Registry) Handler() http.Handler {
	return compressHandler{next: promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{DisableCompression: true})}
}

// SocketOpened counts an accepted socket as open (istio_tcp_sockets_open) until SocketClosed
// is called with the same reporter. Neither allocates.
func (r *Registry) SocketOpened(reporter string) { r.sockets(reporter).Inc() }

// SocketClosed counts a socket SocketOpened counted as closed.
func (r *Registry) SocketClosed(reporter string) { r.sockets(reporter).Dec() }

// sockets is the istio_tcp_sockets_open series of reporter.
func (r *Registry) sockets(reporter string) prometheus.Gauge {
	if reporter == ReporterDestination {
		return r.socketsInbound
	}
	return r.socketsOutbound
}

// Conn is the metrics of one open connection. Byte counts are attributed to the labels the
// connection opened with; the close is counted with its final response flags. The zero Conn
// (never opened) counts nothing. A Conn is a small value meant to live inside its
// connection's own state; its methods may be called from any goroutine.
type Conn struct {
	s *series // the series of the labels the connection opened with; nil in the zero Conn
}

// Open counts a new connection and resolves its byte counters. Connections with equal labels
// share their resolved series, so after the first one Open is one map lookup.
func (r *Registry) Open(l Labels) Conn {
	s := r.series(&l)
	s.openCounters()
	s.opened.Inc()
	return Conn{s: s}
}

// AddBytes adds bytes moved since the last call: toServer is the request direction.
func (c Conn) AddBytes(toServer, toClient int64) {
	if c.s == nil {
		return
	}
	if toServer > 0 {
		c.s.received.Add(float64(toServer))
	}
	if toClient > 0 {
		c.s.sent.Add(float64(toClient))
	}
}

// Close counts the close with its response flags; a flag other than "-" is also a failure.
func (c Conn) Close(flags string) {
	if c.s == nil {
		return
	}
	s := c.s
	if f := normFlags(flags); f != s.key.ResponseFlags {
		l := s.key
		l.ResponseFlags = f
		s = s.reg.series(&l)
	}
	s.closeCounters()
	s.closed.Inc()
	if s.failed != nil {
		s.failed.Inc()
	}
}
