package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"time"
)

// Config is ztunnel's configuration. FromEnv fills every field; the comment
// of each field names its variable and default. Config is immutable once
// FromEnv returns it (callers share one *Config read-only), except ProxyArgs,
// which main may set before handing the Config on.
type Config struct {
	// Mode is PROXY_MODE ("shared" or "dedicated"; default shared). The zero
	// value is ModeShared.
	Mode ProxyMode
	// ProxyWorkload is PROXY_WORKLOAD_INFO ("namespace/name/service-account"),
	// the one workload a dedicated-mode proxy serves. It is required in
	// dedicated mode and nil in shared mode (where the variable is ignored).
	ProxyWorkload *WorkloadInfo
	// EnableProxy is ENABLE_PROXY (default true): run the HBONE proxy
	// listeners. With it false only the DNS proxy runs.
	EnableProxy bool

	// Identity of the running ztunnel itself.

	// ClusterID is ISTIO_META_CLUSTER_ID, else CLUSTER_ID (default
	// "Kubernetes"). It is also sent to the CA with the token.
	ClusterID string
	// ClusterDomain is CLUSTER_DOMAIN (default "cluster.local").
	ClusterDomain string
	// TrustDomain is TRUST_DOMAIN (default "cluster.local"), the trust domain
	// of ztunnel's own identity (see Self).
	TrustDomain string
	// Network is NETWORK, the network of this node; "" is the default network.
	Network string
	// NodeName is NODE_NAME; "" when not set.
	NodeName string
	// PodName, PodNamespace and ServiceAccount are POD_NAME, POD_NAMESPACE
	// and SERVICE_ACCOUNT, ztunnel's own pod as given by the downward API;
	// "" when not set.
	PodName, PodNamespace, ServiceAccount string
	// InstanceIP is INSTANCE_IP, ztunnel's pod IP; the zero Addr when unset.
	InstanceIP netip.Addr
	// IstioVersion is ISTIO_META_ISTIO_VERSION, the Istio release this process is deployed as
	// (Istio's ztunnel image sets it), else UnknownIstioVersion. As in ztunnel it is
	// the tag of istio_build and /config_dump's version.istioVersion.
	IstioVersion string
	// Self is ztunnel's own workload, set only when POD_NAMESPACE,
	// SERVICE_ACCOUNT and POD_NAME are all set; its identity is
	// Self.SPIFFEID(TrustDomain).
	Self *WorkloadInfo
	// InKubernetes is true when KUBERNETES_SERVICE_HOST is set; it selects
	// the default istiod address.
	InKubernetes bool

	// XDS configures the control-plane client and the static sources.
	XDS XDSConfig
	// CA configures where workload certificates come from.
	CA CAConfig
	// Auth is the token presented to istiod (AUTH_TOKEN). Its String method
	// never prints a static token.
	Auth Auth

	// HTTP2 holds the HBONE HTTP/2 tuning.
	HTTP2 HTTP2Config
	// Pool holds the HBONE client pool tuning.
	Pool PoolConfig
	// Keepalive holds the TCP keepalive settings of every proxied socket.
	Keepalive KeepaliveConfig
	// InPod holds the ZDS (istio-cni) settings.
	InPod InPodConfig
	// Listen holds every listening address.
	Listen ListenConfig
	// DNS configures the DNS proxy.
	DNS DNSConfig
	// Log configures logging.
	Log LogConfig

	// PacketMark is PACKET_MARK, the SO_MARK put on pod-facing sockets.
	// Default 1337 in shared mode; in dedicated mode unset means 0, and 0
	// means "set no mark".
	PacketMark uint32
	// TerminationDeadline is how long a draining ztunnel waits for
	// connections before closing them: CONNECTION_TERMINATION_DEADLINE if
	// set, else derived from TERMINATION_GRACE_PERIOD_SECONDS (N-5s when
	// N > 10, else N-1s, at least 1s), else 5s.
	TerminationDeadline time.Duration
	// MaxConnections is ZTUNNEL_MAX_CONNECTIONS (our addition; ztunnel has no
	// such cap): the most connections the whole process holds open at once,
	// across every proxy listener of every pod; connections beyond it are
	// reset at accept, counted and logged (rate-limited). Default 0 means
	// unlimited.
	MaxConnections int
	// RequireOriginalSource is ENABLE_ORIG_SRC; nil (unset, recommended)
	// means detect from permissions at start.
	RequireOriginalSource *bool
	// IPv6Enabled is IPV6_ENABLED (default true). When false, listeners bind
	// IPv4 only.
	IPv6Enabled bool
	// TLS12Enabled is TLS12_ENABLED (default false): allow TLS 1.2 on HBONE.
	TLS12Enabled bool
	// CompliancePolicy is COMPLIANCE_POLICY ("", "fips-140-2" or "pqc").
	CompliancePolicy CompliancePolicy
	// WorkerThreads is ZTUNNEL_WORKER_THREADS resolved as ztunnel does
	// ("N", "N%" of the CPUs, "0" all CPUs), else the proxy config's
	// concurrency, else ztunnel's CPU-aware default (ZTUNNEL_RESOURCE_CPU_LIMIT,
	// at least ZTUNNEL_RESOURCE_CPU_REQUEST, else a quarter of
	// ZTUNNEL_CPU_LIMIT or the machine's CPUs, at least 2). Always >= 1.
	// main applies it to GOMAXPROCS.
	WorkerThreads int
	// WorkerThreadsSet reports whether ZTUNNEL_WORKER_THREADS was set
	// explicitly (as opposed to a computed default).
	WorkerThreadsSet bool
	// MemoryTrimInterval is ZTUNNEL_MEMORY_TRIM_INTERVAL (ours, not the
	// Rust ztunnel's; default 10s, 0 disables): how often the process looks
	// for a quiet spell after which to return the heap's free pages to the
	// kernel (see app/memtrim.go).
	MemoryTrimInterval time.Duration
	// HBONEEarlyData is ZTUNNEL_HBONE_EARLY_DATA (ours; default true): send
	// a client's bytes with and after the CONNECT request instead of after
	// its 200, on tunnels that end at a workload's ztunnel (never to a
	// waypoint). See proxy.Config.EarlyData.
	HBONEEarlyData bool
	// PreferredServiceNamespace is PREFERED_SERVICE_NAMESPACE (ztunnel's
	// spelling): the namespace preferred after the local one when resolving
	// a service hostname; "" for none.
	PreferredServiceNamespace string
	// LocalhostAppTunnel is LOCALHOST_APP_TUNNEL (default true).
	LocalhostAppTunnel bool
	// EnableResponseBaggage is ENABLE_RESPONSE_BAGGAGE (default true).
	EnableResponseBaggage bool
	// CRLPath is CRL_PATH; "" disables certificate revocation checks.
	CRLPath string
	// ProxyMetadata holds node metadata sent to istiod: proxyMetadata of the
	// mesh config and PROXY_CONFIG (ISTIO_META_ prefix removed), then every
	// ISTIO_META_<K> variable as K. Never nil.
	ProxyMetadata map[string]string
	// MetadataJSON holds ISTIO_METAJSON_<K> variables by K; each value is
	// valid JSON. Never nil.
	MetadataJSON map[string]string
	// ProxyArgs is the command line after the program name, for
	// /config_dump; FromEnv leaves it "" and main may set it.
	ProxyArgs string
}

// ProxyMode says whether one process serves every pod of the node (shared)
// or a single workload in its own network namespace (dedicated).
type ProxyMode int

// The proxy modes. The zero value is ModeShared, the default.
const (
	ModeShared ProxyMode = iota
	ModeDedicated
)

// String returns the PROXY_MODE spelling: "shared" or "dedicated".
func (m ProxyMode) String() string {
	if m == ModeDedicated {
		return "dedicated"
	}
	return "shared"
}

// WorkloadInfo names one workload: PROXY_WORKLOAD_INFO, or ztunnel's own pod.
type WorkloadInfo struct {
	Namespace, Name, ServiceAccount string
}

// SPIFFEID returns the workload's identity in trustDomain:
// spiffe://<td>/ns/<namespace>/sa/<service account>.
func (w WorkloadInfo) SPIFFEID(trustDomain string) string {
	return "spiffe://" + trustDomain + "/ns/" + w.Namespace + "/sa/" + w.ServiceAccount
}

// String returns "namespace/name/service-account", PROXY_WORKLOAD_INFO's form.
func (w WorkloadInfo) String() string {
	return w.Namespace + "/" + w.Name + "/" + w.ServiceAccount
}

// XDSConfig configures where workload, service and policy configuration
// comes from.
type XDSConfig struct {
	// Address is XDS_ADDRESS, else the mesh config's discoveryAddress, else
	// https://istiod.istio-system.svc:15012 in Kubernetes or
	// https://localhost:15012 outside. "https://" is prepended when there is
	// no scheme. "" (XDS_ADDRESS set to empty) means no istiod.
	Address string
	// RootCert verifies istiod's certificate (XDS_ROOT_CA).
	RootCert RootCert
	// AltHostname is ALT_XDS_HOSTNAME, the name checked in istiod's
	// certificate instead of Address's host; "" for none.
	AltHostname string
	// Headers are the XDS_HEADER_<NAME> variables, sent as gRPC metadata:
	// NAME lower-cased (underscores kept) -> value. Never nil.
	Headers map[string]string
	// OnDemand is XDS_ON_DEMAND (default false).
	OnDemand bool
	// LocalPath is LOCAL_XDS_PATH, a local-config YAML file; "" for none.
	LocalPath string
	// LocalInline is LOCAL_XDS, local-config YAML given inline; "" for none.
	// At most one of LocalPath and LocalInline is set.
	LocalInline string
}

// CAConfig configures the certificate source.
type CAConfig struct {
	// Address is CA_ADDRESS (default the default istiod address, see
	// XDSConfig.Address; "https://" prepended when there is no scheme). It is
	// "" when set to empty, with FAKE_CA=true, or with LOCAL_CA_DIR.
	Address string
	// RootCert verifies the CA's certificate (CA_ROOT_CA).
	RootCert RootCert
	// AltHostname is ALT_CA_HOSTNAME; "" for none.
	AltHostname string
	// Headers are the CA_HEADER_<NAME> variables, as XDSConfig.Headers.
	// Never nil.
	Headers map[string]string
	// SecretTTL is SECRET_TTL (default 24h), the lifetime requested for
	// workload certificates.
	SecretTTL time.Duration
	// FakeCA is FAKE_CA (default false): sign with a root generated at start.
	FakeCA bool
	// LocalDir is LOCAL_CA_DIR (ours): sign with the CA in this directory
	// (Istio's plugged-in cacerts layout); "" for none. Exclusive with FakeCA.
	LocalDir string
}

// RootCertKind says where a RootCert's certificates are.
type RootCertKind int

// The root certificate sources, as ztunnel decides them: an existing file,
// the word SYSTEM, or else the value itself as PEM.
const (
	// RootCertFile: the PEM file at Path.
	RootCertFile RootCertKind = iota
	// RootCertPEM: the PEM text in PEM (the variable held it inline).
	RootCertPEM
	// RootCertSystem: the operating system's roots ("SYSTEM").
	RootCertSystem
)

// DefaultRootCertPath is where ztunnel looks for the root certificate when
// XDS_ROOT_CA or CA_ROOT_CA is unset. It is relative to the working
// directory, which is / in ztunnel's image.
const DefaultRootCertPath = "./var/run/secrets/istio/root-cert.pem"

// RootCert is the raw choice of a *_ROOT_CA variable.
type RootCert struct {
	Kind RootCertKind
	// Path is the file for RootCertFile, else "".
	Path string
	// PEM is the inline certificates for RootCertPEM, else nil.
	PEM []byte
}

// String describes the choice without the PEM text.
func (r RootCert) String() string {
	switch r.Kind {
	case RootCertPEM:
		return fmt.Sprintf("inline PEM (%d bytes)", len(r.PEM))
	case RootCertSystem:
		return "SYSTEM"
	}
	return "file " + r.Path
}

// AuthKind says how ztunnel authenticates to istiod.
type AuthKind int

// The authentication sources.
const (
	// AuthNone: send no token.
	AuthNone AuthKind = iota
	// AuthTokenFile: read the token from Path on every use (it rotates).
	AuthTokenFile
	// AuthStaticToken: a token given inline in AUTH_TOKEN.
	AuthStaticToken
)

// DefaultTokenPath is the projected service-account token ztunnel uses when
// AUTH_TOKEN is unset and the file exists. Relative to the working
// directory, like DefaultRootCertPath.
const DefaultTokenPath = "./var/run/secrets/tokens/istio-token"

// Auth is the istiod credential. The static token is unexported so that
// printing a Config (fmt, slog, JSON) never shows it; use Token.
type Auth struct {
	Kind AuthKind
	// Path is the token file for AuthTokenFile, else "".
	Path string
	// ClusterID is sent with the token (the "clusterid" header).
	ClusterID string

	token string // AuthStaticToken only
}

// Token returns the inline token of an AuthStaticToken source, else "".
func (a Auth) Token() string { return a.token }

// String describes the source without revealing a static token.
func (a Auth) String() string {
	switch a.Kind {
	case AuthTokenFile:
		return "token file " + a.Path
	case AuthStaticToken:
		return "static token (redacted)"
	}
	return "none"
}

// GoString is String, so %#v does not reveal a static token either.
func (a Auth) GoString() string { return "config.Auth{" + a.String() + "}" }

// LogValue is String, for slog.
func (a Auth) LogValue() slog.Value { return slog.StringValue(a.String()) }

// MarshalJSON writes String, so encoding/json never reveals the token.
func (a Auth) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(a.String())), nil }

// HTTP2Config is the HBONE HTTP/2 tuning.
type HTTP2Config struct {
	// StreamWindowSize is HTTP2_STREAM_WINDOW_SIZE (default 4 MiB).
	StreamWindowSize uint32
	// ConnectionWindowSize is HTTP2_CONNECTION_WINDOW_SIZE (default 16 MiB).
	ConnectionWindowSize uint32
	// FrameSize is HTTP2_FRAME_SIZE (default 1 MiB), the largest frame
	// payload we accept; HTTP/2 allows 16384 to 16777215.
	FrameSize uint32
}

// PoolConfig is the HBONE client pool tuning.
type PoolConfig struct {
	// MaxStreamsPerConnection is POOL_MAX_STREAMS_PER_CONNECTION (default
	// 100): past it, a new connection is opened to the same destination.
	MaxStreamsPerConnection uint16
	// UnusedReleaseTimeout is POOL_UNUSED_RELEASE_TIMEOUT (default 5m): an
	// idle pooled connection is closed after it.
	UnusedReleaseTimeout time.Duration
}

// KeepaliveConfig is the TCP keepalive of proxied sockets.
type KeepaliveConfig struct {
	// Enabled is KEEPALIVE_ENABLED (default true).
	Enabled bool
	// Time is KEEPALIVE_TIME (default 180s), the idle time before the first
	// probe.
	Time time.Duration
	// Interval is KEEPALIVE_INTERVAL (default 180s) between probes.
	Interval time.Duration
	// Retries is KEEPALIVE_RETRIES (default 9), probes before the
	// connection is dropped.
	Retries uint32
	// UserTimeoutEnabled is USER_TIMEOUT_ENABLED (default false): also set
	// TCP_USER_TIMEOUT to Time + Interval*Retries.
	UserTimeoutEnabled bool
}

// InPodConfig holds the ZDS settings.
type InPodConfig struct {
	// UDS is INPOD_UDS (default /var/run/ztunnel/ztunnel.sock), istio-cni's
	// SOCK_SEQPACKET socket.
	UDS string
	// PortReuse is INPOD_PORT_REUSE (default true): pod listeners use
	// SO_REUSEPORT.
	PortReuse bool
}

// Address is a listening address: IP:Port, or, with Localhost set,
// "127.0.0.1, and ::1 when IPv6 is enabled on the loopback" on Port (the
// caller decides the IPv6 part at bind time, as ztunnel does).
type Address struct {
	Localhost bool
	IP        netip.Addr // ignored when Localhost is true
	Port      uint16
}

// Endpoints lists the concrete addresses to bind: for a localhost address,
// 127.0.0.1 and, when ipv6 is true, [::1].
func (a Address) Endpoints(ipv6 bool) []netip.AddrPort {
	if !a.Localhost {
		return []netip.AddrPort{netip.AddrPortFrom(a.IP, a.Port)}
	}
	eps := []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), a.Port)}
	if ipv6 {
		eps = append(eps, netip.AddrPortFrom(netip.IPv6Loopback(), a.Port))
	}
	return eps
}

// String is "localhost:<port>" or "ip:port" ("[v6]:port").
func (a Address) String() string {
	if a.Localhost {
		return "localhost:" + strconv.Itoa(int(a.Port))
	}
	return netip.AddrPortFrom(a.IP, a.Port).String()
}

// ListenConfig holds every listening address. The pod ports bind the
// wildcard of the enabled families ([::] with IPv6, else 0.0.0.0).
type ListenConfig struct {
	// Admin is localhost on the mesh config's proxyAdminPort (default 15000).
	Admin Address
	// Stats is the wildcard on the mesh config's statsPort (default 15020).
	Stats Address
	// Readiness is the wildcard on 15021.
	Readiness Address
	// Inbound (15008), InboundPlaintext (15006) and Outbound (15001) are the
	// pod capture ports.
	Inbound, InboundPlaintext, Outbound Address
	// SOCKS5 is 127.0.0.1:15080 when UNSTABLE_ENABLE_SOCKS5=true, else nil.
	SOCKS5 *Address
	// IllegalPorts are the proxy's own ports, which a destination may not
	// use (no loops): 15001, 15006, 15008, and 15080 with SOCKS5. Sorted.
	IllegalPorts []uint16
}

// DNSConfig configures the DNS proxy.
type DNSConfig struct {
	// Enabled is the proxy metadata DNS_CAPTURE (ISTIO_META_DNS_CAPTURE),
	// default true; any value other than "true" (any case) disables it.
	Enabled bool
	// Addr is the proxy metadata DNS_PROXY_ADDR (ISTIO_META_DNS_PROXY_ADDR:
	// "localhost:<port>" or "ip:port"), default localhost:15053.
	Addr Address
}

// LogFormat is LOG_FORMAT.
type LogFormat int

// The log formats. The zero value is LogPlain, the default.
const (
	LogPlain LogFormat = iota
	LogJSON
)

// String returns the LOG_FORMAT spelling.
func (f LogFormat) String() string {
	if f == LogJSON {
		return "json"
	}
	return "plain"
}

// LogConfig configures logging.
type LogConfig struct {
	// Format is LOG_FORMAT: "plain" (default) or "json".
	Format LogFormat
	// Level is RUST_LOG, else LOG_LEVEL (our alias), else "info". An empty
	// value counts as unset.
	Level LogLevel
	// AuthzPolicyInfo is AUTHZ_POLICY_INFO_LOGGING (default false): log
	// authorization decisions at info rather than debug.
	AuthzPolicyInfo bool
}

// CompliancePolicy is COMPLIANCE_POLICY.
type CompliancePolicy string

// The compliance policies Istio defines. The zero value is no policy.
const (
	ComplianceNone     CompliancePolicy = ""
	ComplianceFIPS1402 CompliancePolicy = "fips-140-2"
	CompliancePQC      CompliancePolicy = "pqc"
)

// DefaultNodeIP is the instance IP put in the xDS node ID when INSTANCE_IP
// is unset, as ztunnel does.
const DefaultNodeIP = "1.1.1.1"

// XDSNodeID is the node ID ztunnel presents to istiod:
// ztunnel~<INSTANCE_IP>~<POD_NAME>.<POD_NAMESPACE>~<POD_NAMESPACE>.svc.cluster.local.
func (c *Config) XDSNodeID() string {
	ip := DefaultNodeIP
	if c.InstanceIP.IsValid() {
		ip = c.InstanceIP.String()
	}
	return "ztunnel~" + ip + "~" + c.PodName + "." + c.PodNamespace + "~" + c.PodNamespace + ".svc.cluster.local"
}

// SelfIdentity is ztunnel's own SPIFFE identity, or "" when Self is nil.
func (c *Config) SelfIdentity() string {
	if c.Self == nil {
		return ""
	}
	return c.Self.SPIFFEID(c.TrustDomain)
}

// UsesIstiod reports whether an xDS client to istiod is configured.
func (c *Config) UsesIstiod() bool { return c.XDS.Address != "" }
