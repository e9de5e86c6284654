// Package metrics holds ztunnel's Prometheus metrics: Istio's standard TCP metrics with the
// standard source_*/destination_* labels, and the build info. Counters are resolved once per
// connection (when it opens) so the data path only does atomic adds.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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

func (l *Labels) values() []string {
	proto := l.RequestProtocol
	if proto == "" {
		proto = "tcp"
	}
	flags := l.ResponseFlags
	if flags == "" {
		flags = FlagNone
	}
	return []string{
		orUnknown(l.Reporter),
		orUnknown(l.SourceWorkload), orUnknown(l.SourceCanonicalService), orUnknown(l.SourceCanonicalRevision),
		orUnknown(l.SourceWorkloadNamespace), orUnknown(l.SourcePrincipal), orUnknown(l.SourceApp),
		orUnknown(l.SourceVersion), orUnknown(l.SourceCluster),
		orUnknown(l.DestinationService), orUnknown(l.DestinationServiceNamespace), orUnknown(l.DestinationServiceName),
		orUnknown(l.DestinationWorkload), orUnknown(l.DestinationCanonicalService), orUnknown(l.DestinationCanonicalRevision),
		orUnknown(l.DestinationWorkloadNamespace), orUnknown(l.DestinationPrincipal), orUnknown(l.DestinationApp),
		orUnknown(l.DestinationVersion), orUnknown(l.DestinationCluster),
		proto, flags, orUnknown(l.ConnectionSecurityPolicy),
	}
}

// Registry owns the process's metrics. Immutable after New.
type Registry struct {
	reg *prometheus.Registry

	opened   *prometheus.CounterVec
	closed   *prometheus.CounterVec
	failed   *prometheus.CounterVec
	received *prometheus.CounterVec
	sent     *prometheus.CounterVec

	socketsOutbound prometheus.Gauge // istio_tcp_sockets_open{reporter="source"}
	socketsInbound  prometheus.Gauge // istio_tcp_sockets_open{reporter="destination"}
}

// New creates the registry with the process and Go collectors and istio_build.
func New(component, version string) *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
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
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "istio_build", Help: "Istio component build info."},
		[]string{"component", "tag"})
	build.WithLabelValues(component, version).Set(1)
	r.reg.MustRegister(build,
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector())
	return r
}

// Registerer lets other packages (xds, dns) add their own metrics.
func (r *Registry) Registerer() prometheus.Registerer { return r.reg }

// Handler serves the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}

// SocketOpened counts an accepted socket as open until the returned func is called.
func (r *Registry) SocketOpened(reporter string) (closed func()) {
	g := r.socketsOutbound
	if reporter == ReporterDestination {
		g = r.socketsInbound
	}
	g.Inc()
	return g.Dec
}

// Conn is the metrics of one open connection. Byte counts are attributed to the labels the
// connection opened with; the close is counted with its final response flags.
type Conn struct {
	r        *Registry
	labels   Labels
	received prometheus.Counter // client -> server bytes (Istio's "received during request")
	sent     prometheus.Counter // server -> client bytes
}

// Open counts a new connection and resolves its byte counters.
func (r *Registry) Open(l Labels) *Conn {
	vals := l.values()
	r.opened.WithLabelValues(vals...).Inc()
	return &Conn{r: r, labels: l, received: r.received.WithLabelValues(vals...), sent: r.sent.WithLabelValues(vals...)}
}

// AddBytes adds bytes moved since the last call: toServer is the request direction.
func (c *Conn) AddBytes(toServer, toClient int64) {
	if toServer > 0 {
		c.received.Add(float64(toServer))
	}
	if toClient > 0 {
		c.sent.Add(float64(toClient))
	}
}

// Close counts the close with its response flags; a flag other than "-" is also a failure.
func (c *Conn) Close(flags string) {
	l := c.labels
	l.ResponseFlags = flags
	vals := l.values()
	c.r.closed.WithLabelValues(vals...).Inc()
	if flags != "" && flags != FlagNone {
		c.r.failed.WithLabelValues(vals...).Inc()
	}
}
