package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Variable names whose values are read in more than one place.
const (
	envProxyMode       = "PROXY_MODE"
	envWorkerThreads   = "ZTUNNEL_WORKER_THREADS"
	envCPULimit        = "ZTUNNEL_CPU_LIMIT"
	envResourceLimit   = "ZTUNNEL_RESOURCE_CPU_LIMIT"
	envResourceRequest = "ZTUNNEL_RESOURCE_CPU_REQUEST"
	envProxyConfig     = "PROXY_CONFIG"

	metaPrefix     = "ISTIO_META_"
	metaJSONPrefix = "ISTIO_METAJSON_"
	xdsHeaderPfx   = "XDS_HEADER_"
	caHeaderPfx    = "CA_HEADER_"
)

// Defaults from ztunnel.
const (
	defaultClusterID       = "Kubernetes"
	defaultClusterDomain   = "cluster.local"
	defaultTrustDomain     = "cluster.local"
	defaultInPodUDS        = "/var/run/ztunnel/ztunnel.sock"
	defaultPacketMark      = 1337
	defaultIstiodK8s       = "https://istiod.istio-system.svc:15012"
	defaultIstiodLocal     = "https://localhost:15012"
	defaultSecretTTL       = 24 * time.Hour
	defaultPoolRelease     = 5 * time.Minute
	defaultPoolStreams     = 100
	defaultStreamWindow    = 4 << 20
	defaultConnWindow      = 16 << 20
	defaultFrameSize       = 1 << 20
	defaultKeepaliveTime   = 180 * time.Second
	defaultKeepaliveIntvl  = 180 * time.Second
	defaultKeepaliveTries  = 9
	defaultTermDeadline    = 5 * time.Second
	defaultWorkerThreads   = 2
	defaultMemoryTrim      = 10 * time.Second
	defaultAdminPort       = 15000
	defaultStatsPort       = 15020
	defaultReadinessPort   = 15021
	defaultDNSPort         = 15053
	defaultSOCKS5Port      = 15080
	portInbound            = 15008
	portInboundPlaintext   = 15006
	portOutbound           = 15001
	maxHTTP2Window         = 1<<31 - 1
	minHTTP2Frame          = 1 << 14
	maxHTTP2Frame          = 1<<24 - 1
	maxKeepaliveRetries    = 127 // Linux MAX_TCP_KEEPCNT
	meshConfigPath         = "./etc/istio/config/mesh"
	certSystem             = "SYSTEM"
	workerThreadCPUPercent = 25
)

// FromEnv builds the Config from the environment, read through lookup
// (os.LookupEnv in main). It returns every malformed variable at once, as
// errors.Join of *VarError; unknown variables are ignored.
//
// The prefix families (XDS_HEADER_*, CA_HEADER_*, ISTIO_META_*,
// ISTIO_METAJSON_*) need the list of variable names, which a lookup function
// cannot give: FromEnv takes the names from os.Environ and their values from
// lookup. FromEnviron takes a complete environment instead.
//
// Besides the environment FromEnv reads Istio's mesh config file
// (./etc/istio/config/mesh, if present) and checks whether the default token
// and root certificate files exist, as ztunnel does.
func FromEnv(lookup func(string) (string, bool)) (*Config, error) {
	var names []string
	for _, kv := range os.Environ() {
		if k, _, ok := strings.Cut(kv, "="); ok {
			names = append(names, k)
		}
	}
	return osSource(lookup, names).build()
}

// FromEnviron is FromEnv over environ, a list of "KEY=value" strings in the
// form of os.Environ. The first occurrence of a key wins, as with os.Getenv.
func FromEnviron(environ []string) (*Config, error) {
	m := make(map[string]string, len(environ))
	names := make([]string, 0, len(environ))
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if _, dup := m[k]; dup {
			continue
		}
		m[k] = v
		names = append(names, k)
	}
	lookup := func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	return osSource(lookup, names).build()
}

// source is everything FromEnv reads, so tests can replace the filesystem
// and the CPU count. It lives for one build call.
type source struct {
	lookup   func(string) (string, bool)
	names    []string                          // all variable names, for prefix families
	exists   func(path string) bool            // whether a file exists
	readFile func(path string) ([]byte, error) // returns an fs.ErrNotExist error when missing
	numCPU   func() int

	errs []error
}

func osSource(lookup func(string) (string, bool), names []string) *source {
	return &source{
		lookup: lookup,
		names:  names,
		exists: func(p string) bool {
			_, err := os.Stat(p)
			return err == nil
		},
		readFile: os.ReadFile,
		numCPU:   runtime.NumCPU,
	}
}

func (s *source) fail(err error) { s.errs = append(s.errs, err) }

// get returns the value of name and whether it is set.
func (s *source) get(name string) (string, bool) { return s.lookup(name) }

// UnknownIstioVersion is Config.IstioVersion when ISTIO_META_ISTIO_VERSION is unset.
const UnknownIstioVersion = "unknown"

// IstioVersion is ISTIO_META_ISTIO_VERSION as lookup reads it, else
// UnknownIstioVersion (Config.IstioVersion; `ztunnel version` reads it without the
// rest of the configuration, as ztunnel does).
func IstioVersion(lookup func(string) (string, bool)) string {
	if v, ok := lookup(metaPrefix + "ISTIO_VERSION"); ok {
		return v
	}
	return UnknownIstioVersion
}

// nonEmpty returns the value of name, treating an empty value as unset.
func (s *source) nonEmpty(name string) (string, bool) {
	v, ok := s.lookup(name)
	return v, ok && v != ""
}

func (s *source) str(name, def string) string {
	if v, ok := s.lookup(name); ok {
		return v
	}
	return def
}

var errBool = errors.New(`want "true" or "false"`)

// parseBool accepts exactly what Rust's bool parser accepts.
func parseBool(v string) (bool, error) {
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errBool
}

func (s *source) boolean(name string, def bool) bool {
	v, ok := s.lookup(name)
	if !ok {
		return def
	}
	b, err := parseBool(v)
	if err != nil {
		s.fail(badValue(name, v, err))
		return def
	}
	return b
}

func (s *source) optBool(name string) *bool {
	v, ok := s.lookup(name)
	if !ok {
		return nil
	}
	b, err := parseBool(v)
	if err != nil {
		s.fail(badValue(name, v, err))
		return nil
	}
	return &b
}

// parseUint accepts what Rust's unsigned integer parsers accept: decimal
// digits with an optional leading '+'.
func parseUint(v string, bits int) (uint64, error) {
	d := strings.TrimPrefix(v, "+")
	if d == "" || d[0] < '0' || d[0] > '9' {
		return 0, errors.New("not an unsigned integer")
	}
	n, err := strconv.ParseUint(d, 10, bits)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("out of range (max %d)", uint64(1)<<bits-1)
		}
		return 0, errors.New("not an unsigned integer")
	}
	return n, nil
}

// uint parses name as an unsigned integer of bits bits within [min, max].
func (s *source) uint(name string, bits int, def, min, max uint64) uint64 {
	n, ok := s.optUint(name, bits)
	if !ok {
		return def
	}
	if n < min || n > max {
		v, _ := s.lookup(name)
		s.fail(badValue(name, v, fmt.Errorf("must be between %d and %d", min, max)))
		return def
	}
	return n
}

// optUint parses name as an unsigned integer of bits bits, if set.
func (s *source) optUint(name string, bits int) (uint64, bool) {
	v, ok := s.lookup(name)
	if !ok {
		return 0, false
	}
	n, err := parseUint(v, bits)
	if err != nil {
		s.fail(badValue(name, v, err))
		return 0, false
	}
	return n, true
}

func (s *source) optDuration(name string) (time.Duration, bool) {
	v, ok := s.lookup(name)
	if !ok {
		return 0, false
	}
	d, err := ParseDuration(v)
	if err != nil {
		s.fail(badValue(name, v, err))
		return 0, false
	}
	return d, true
}

// duration parses name as a duration of at least min.
func (s *source) duration(name string, def, min time.Duration) time.Duration {
	d, ok := s.optDuration(name)
	if !ok {
		return def
	}
	if d < min {
		v, _ := s.lookup(name)
		s.fail(badValue(name, v, fmt.Errorf("must be at least %v", min)))
		return def
	}
	return d
}

// withPrefix returns the set variables starting with prefix, sorted.
func (s *source) withPrefix(prefix string) []string {
	var out []string
	for _, n := range s.names {
		if strings.HasPrefix(n, prefix) {
			if _, ok := s.lookup(n); ok {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// build reads everything. The order follows Config's fields; every reader
// records its own errors and returns a usable default so that the rest is
// still checked.
func (s *source) build() (*Config, error) {
	c := &Config{}
	pc := s.proxyConfig()

	// Identity of this ztunnel.
	_, c.InKubernetes = s.get("KUBERNETES_SERVICE_HOST")
	if v, ok := s.get(metaPrefix + "CLUSTER_ID"); ok {
		c.ClusterID = v
	} else {
		c.ClusterID = s.str("CLUSTER_ID", defaultClusterID)
	}
	c.ClusterDomain = s.str("CLUSTER_DOMAIN", defaultClusterDomain)
	c.TrustDomain = s.str("TRUST_DOMAIN", defaultTrustDomain)
	c.Network = s.str("NETWORK", "")
	c.NodeName = s.str("NODE_NAME", "")
	c.PodName = s.str("POD_NAME", "")
	c.PodNamespace = s.str("POD_NAMESPACE", "")
	c.IstioVersion = IstioVersion(s.lookup)
	c.ServiceAccount = s.str("SERVICE_ACCOUNT", "")
	if c.PodName != "" && c.PodNamespace != "" && c.ServiceAccount != "" {
		c.Self = &WorkloadInfo{Namespace: c.PodNamespace, Name: c.PodName, ServiceAccount: c.ServiceAccount}
	}
	if v, ok := s.get("INSTANCE_IP"); ok && v != "" {
		ip, err := netip.ParseAddr(v)
		if err != nil {
			s.fail(badValue("INSTANCE_IP", v, errors.New("not an IP address")))
		} else {
			c.InstanceIP = ip
		}
	}

	// Mode.
	if v, ok := s.get(envProxyMode); ok {
		switch v {
		case "shared":
			c.Mode = ModeShared
		case "dedicated":
			c.Mode = ModeDedicated
		default:
			s.fail(badValue(envProxyMode, v, errors.New(`want "shared" or "dedicated"`)))
		}
	}
	if c.Mode == ModeDedicated {
		c.ProxyWorkload = s.workloadInfo()
	}
	c.EnableProxy = s.boolean("ENABLE_PROXY", true)

	// Control plane.
	defaultIstiod := defaultIstiodLocal
	if c.InKubernetes {
		defaultIstiod = defaultIstiodK8s
	}
	if v, ok := s.get("XDS_ADDRESS"); ok {
		c.XDS.Address = s.uri("XDS_ADDRESS", v)
	} else if pc.DiscoveryAddress != nil {
		c.XDS.Address = s.uri("discoveryAddress ("+pc.discoverySource+")", *pc.DiscoveryAddress)
	} else {
		c.XDS.Address = defaultIstiod
	}
	c.XDS.RootCert = s.rootCert("XDS_ROOT_CA")
	c.XDS.AltHostname = s.str("ALT_XDS_HOSTNAME", "")
	c.XDS.Headers = s.headers(xdsHeaderPfx)
	c.XDS.OnDemand = s.boolean("XDS_ON_DEMAND", false)
	c.XDS.LocalPath, _ = s.nonEmpty("LOCAL_XDS_PATH")
	c.XDS.LocalInline, _ = s.nonEmpty("LOCAL_XDS")
	if c.XDS.LocalPath != "" && c.XDS.LocalInline != "" {
		s.fail(badVar("LOCAL_XDS_PATH", "only one of LOCAL_XDS_PATH and LOCAL_XDS may be set"))
	}

	c.CA.FakeCA = s.boolean("FAKE_CA", false)
	c.CA.LocalDir, _ = s.nonEmpty("LOCAL_CA_DIR")
	if c.CA.FakeCA && c.CA.LocalDir != "" {
		s.fail(badVar("LOCAL_CA_DIR", "cannot be combined with FAKE_CA=true"))
	}
	if v, ok := s.get("CA_ADDRESS"); ok {
		c.CA.Address = s.uri("CA_ADDRESS", v)
	} else {
		c.CA.Address = defaultIstiod
	}
	if c.CA.FakeCA || c.CA.LocalDir != "" {
		c.CA.Address = ""
	}
	c.CA.RootCert = s.rootCert("CA_ROOT_CA")
	c.CA.AltHostname = s.str("ALT_CA_HOSTNAME", "")
	c.CA.Headers = s.headers(caHeaderPfx)
	c.CA.SecretTTL = s.duration("SECRET_TTL", defaultSecretTTL, time.Second)
	c.Auth = s.auth(c.ClusterID)

	// Data plane tuning.
	c.HTTP2.StreamWindowSize = uint32(s.uint("HTTP2_STREAM_WINDOW_SIZE", 32, defaultStreamWindow, 1, maxHTTP2Window))
	c.HTTP2.ConnectionWindowSize = uint32(s.uint("HTTP2_CONNECTION_WINDOW_SIZE", 32, defaultConnWindow, 1, maxHTTP2Window))
	c.HTTP2.FrameSize = uint32(s.uint("HTTP2_FRAME_SIZE", 32, defaultFrameSize, minHTTP2Frame, maxHTTP2Frame))
	c.Pool.MaxStreamsPerConnection = uint16(s.uint("POOL_MAX_STREAMS_PER_CONNECTION", 16, defaultPoolStreams, 1, math.MaxUint16))
	c.Pool.UnusedReleaseTimeout = s.duration("POOL_UNUSED_RELEASE_TIMEOUT", defaultPoolRelease, 0)
	c.MemoryTrimInterval = s.duration("ZTUNNEL_MEMORY_TRIM_INTERVAL", defaultMemoryTrim, 0)
	c.HBONEEarlyData = s.boolean("ZTUNNEL_HBONE_EARLY_DATA", true)
	c.Keepalive.Enabled = s.boolean("KEEPALIVE_ENABLED", true)
	c.Keepalive.Time = s.duration("KEEPALIVE_TIME", defaultKeepaliveTime, time.Second)
	c.Keepalive.Interval = s.duration("KEEPALIVE_INTERVAL", defaultKeepaliveIntvl, time.Second)
	c.Keepalive.Retries = uint32(s.uint("KEEPALIVE_RETRIES", 32, defaultKeepaliveTries, 1, maxKeepaliveRetries))
	c.Keepalive.UserTimeoutEnabled = s.boolean("USER_TIMEOUT_ENABLED", false)

	c.InPod.UDS = s.str("INPOD_UDS", defaultInPodUDS)
	if c.InPod.UDS == "" {
		s.fail(badVar("INPOD_UDS", "must not be empty"))
		c.InPod.UDS = defaultInPodUDS
	}
	c.InPod.PortReuse = s.boolean("INPOD_PORT_REUSE", true)
	var markDefault uint64
	if c.Mode == ModeShared {
		markDefault = defaultPacketMark
	}
	c.PacketMark = uint32(s.uint("PACKET_MARK", 32, markDefault, 0, math.MaxUint32))
	c.TerminationDeadline = s.terminationDeadline()
	c.RequireOriginalSource = s.optBool("ENABLE_ORIG_SRC")
	c.MaxConnections = int(s.uint("ZTUNNEL_MAX_CONNECTIONS", 32, 0, 0, math.MaxInt32))
	c.IPv6Enabled = s.boolean("IPV6_ENABLED", true)
	c.TLS12Enabled = s.boolean("TLS12_ENABLED", false)
	if v, ok := s.get("COMPLIANCE_POLICY"); ok {
		switch p := CompliancePolicy(v); p {
		case ComplianceNone, ComplianceFIPS1402, CompliancePQC:
			c.CompliancePolicy = p
		default:
			s.fail(badValue("COMPLIANCE_POLICY", v, errors.New(`want "", "fips-140-2" or "pqc"`)))
		}
	}
	c.WorkerThreads, c.WorkerThreadsSet = s.workerThreads(pc.Concurrency)
	c.PreferredServiceNamespace = s.str("PREFERED_SERVICE_NAMESPACE", "")
	c.LocalhostAppTunnel = s.boolean("LOCALHOST_APP_TUNNEL", true)
	c.EnableResponseBaggage = s.boolean("ENABLE_RESPONSE_BAGGAGE", true)
	c.CRLPath = s.str("CRL_PATH", "")

	// Node metadata: the proxy config's, then ISTIO_META_* variables.
	c.ProxyMetadata = make(map[string]string, len(pc.ProxyMetadata))
	for k, v := range pc.ProxyMetadata {
		c.ProxyMetadata[strings.TrimPrefix(k, metaPrefix)] = v
	}
	for _, n := range s.withPrefix(metaPrefix) {
		v, _ := s.get(n)
		c.ProxyMetadata[strings.TrimPrefix(n, metaPrefix)] = v
	}
	c.MetadataJSON = make(map[string]string)
	for _, n := range s.withPrefix(metaJSONPrefix) {
		v, _ := s.get(n)
		if !jsonValid(v) {
			s.fail(badVar(n, "invalid JSON"))
			continue
		}
		c.MetadataJSON[strings.TrimPrefix(n, metaJSONPrefix)] = v
	}

	// Listeners.
	wildcard := netip.IPv4Unspecified()
	if c.IPv6Enabled {
		wildcard = netip.IPv6Unspecified()
	}
	adminPort, statsPort := uint16(defaultAdminPort), uint16(defaultStatsPort)
	if pc.ProxyAdminPort != nil {
		adminPort = *pc.ProxyAdminPort
	}
	if pc.StatsPort != nil {
		statsPort = *pc.StatsPort
	}
	c.Listen = ListenConfig{
		Admin:            Address{Localhost: true, Port: adminPort},
		Stats:            Address{IP: wildcard, Port: statsPort},
		Readiness:        Address{IP: wildcard, Port: defaultReadinessPort},
		Inbound:          Address{IP: wildcard, Port: portInbound},
		InboundPlaintext: Address{IP: wildcard, Port: portInboundPlaintext},
		Outbound:         Address{IP: wildcard, Port: portOutbound},
		IllegalPorts:     []uint16{portOutbound, portInboundPlaintext, portInbound},
	}
	if s.boolean("UNSTABLE_ENABLE_SOCKS5", false) {
		c.Listen.SOCKS5 = &Address{IP: netip.AddrFrom4([4]byte{127, 0, 0, 1}), Port: defaultSOCKS5Port}
		c.Listen.IllegalPorts = append(c.Listen.IllegalPorts, defaultSOCKS5Port)
	}

	// DNS proxy, configured through node metadata as in ztunnel.
	c.DNS.Enabled = true
	if v, ok := c.ProxyMetadata["DNS_CAPTURE"]; ok {
		c.DNS.Enabled = strings.ToLower(v) == "true"
	}
	c.DNS.Addr = Address{Localhost: true, Port: defaultDNSPort}
	if v, ok := c.ProxyMetadata["DNS_PROXY_ADDR"]; ok {
		name := metaPrefix + "DNS_PROXY_ADDR"
		if _, fromEnv := s.get(name); !fromEnv {
			name = "proxyMetadata.DNS_PROXY_ADDR (mesh config or PROXY_CONFIG)"
		}
		if a, err := parseAddress(v); err != nil {
			s.fail(badValue(name, v, err))
		} else {
			c.DNS.Addr = a
		}
	}

	// Logging.
	if v, ok := s.get("LOG_FORMAT"); ok {
		switch v {
		case "", "plain":
			c.Log.Format = LogPlain
		case "json":
			c.Log.Format = LogJSON
		default:
			s.fail(badValue("LOG_FORMAT", v, errors.New(`want "plain" or "json"`)))
		}
	}
	c.Log.Level = LogLevel{Default: defaultLogLevel}
	for _, name := range []string{"LOG_LEVEL", "RUST_LOG"} { // RUST_LOG wins
		if v, ok := s.nonEmpty(name); ok {
			l, err := ParseLogLevel(v)
			if err != nil {
				s.fail(badValue(name, v, err))
				continue
			}
			c.Log.Level = l
		}
	}
	c.Log.AuthzPolicyInfo = s.boolean("AUTHZ_POLICY_INFO_LOGGING", false)

	// Cross-checks, as ztunnel's validate_config.
	if c.DNS.Enabled && c.XDS.OnDemand {
		s.fail(badVar("XDS_ON_DEMAND", "the DNS proxy does not support on-demand xDS; set ISTIO_META_DNS_CAPTURE=false to use it"))
	}
	if !c.EnableProxy && !c.DNS.Enabled {
		s.fail(badVar("ENABLE_PROXY", "false with the DNS proxy disabled leaves no server to run"))
	}

	if len(s.errs) > 0 {
		return nil, errors.Join(s.errs...)
	}
	return c, nil
}

const defaultLogLevel = slog.LevelInfo

func (s *source) workloadInfo() *WorkloadInfo {
	const name = "PROXY_WORKLOAD_INFO"
	v, ok := s.get(name)
	if !ok {
		s.fail(badVar(name, "required when PROXY_MODE=dedicated"))
		return nil
	}
	parts := strings.SplitN(v, "/", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		s.fail(badValue(name, v, errors.New("want namespace/name/service-account")))
		return nil
	}
	return &WorkloadInfo{Namespace: parts[0], Name: parts[1], ServiceAccount: parts[2]}
}

// uri checks a control-plane address and gives it the https scheme when it
// has none, as ztunnel does. "" stays "" (no server).
func (s *source) uri(name, v string) string {
	if v == "" {
		return ""
	}
	full := v
	if !strings.Contains(v, "://") {
		full = "https://" + v
	}
	u, err := url.Parse(full)
	switch {
	case err != nil:
		s.fail(badValue(name, v, errors.New("not a valid URI")))
		return ""
	case u.Host == "":
		s.fail(badValue(name, v, errors.New("no host in URI")))
		return ""
	}
	return full
}

// rootCert decides a *_ROOT_CA value as ztunnel does: an existing file, else
// SYSTEM, else inline PEM. Two deviations keep startup errors clear: unset or
// empty means DefaultRootCertPath even when that file is missing (the TLS
// client reports the missing file when it needs it), and a value that is
// neither an existing file nor PEM is kept as a (missing) file path.
func (s *source) rootCert(name string) RootCert {
	v, ok := s.nonEmpty(name)
	switch {
	case !ok:
		return RootCert{Kind: RootCertFile, Path: DefaultRootCertPath}
	case s.exists(v):
		return RootCert{Kind: RootCertFile, Path: v}
	case v == certSystem:
		return RootCert{Kind: RootCertSystem}
	case strings.Contains(v, "-----BEGIN"):
		return RootCert{Kind: RootCertPEM, PEM: []byte(v)}
	}
	return RootCert{Kind: RootCertFile, Path: v}
}

// auth decides AUTH_TOKEN as ztunnel does: an existing file, else an inline
// token; unset (or empty, our choice) uses DefaultTokenPath if it exists.
func (s *source) auth(clusterID string) Auth {
	v, ok := s.nonEmpty("AUTH_TOKEN")
	switch {
	case !ok && s.exists(DefaultTokenPath):
		return Auth{Kind: AuthTokenFile, Path: DefaultTokenPath, ClusterID: clusterID}
	case !ok:
		return Auth{Kind: AuthNone}
	case s.exists(v):
		return Auth{Kind: AuthTokenFile, Path: v, ClusterID: clusterID}
	}
	return Auth{Kind: AuthStaticToken, ClusterID: clusterID, token: v}
}

// headers collects prefix+NAME variables into gRPC metadata: the name is
// NAME lower-cased, which must be an HTTP token not ending in "-bin"; the
// value must be visible ASCII, space or tab. Values never appear in errors.
func (s *source) headers(prefix string) map[string]string {
	out := make(map[string]string)
	for _, n := range s.withPrefix(prefix) {
		key := strings.ToLower(strings.TrimPrefix(n, prefix))
		v, _ := s.get(n)
		if err := checkHeaderName(key); err != nil {
			s.fail(badVar(n, "invalid header name %q: %w", key, err))
			continue
		}
		if i := badHeaderByte(v); i >= 0 {
			s.fail(badVar(n, "invalid header value: byte 0x%02x at offset %d", v[i], i))
			continue
		}
		out[key] = v
	}
	return out
}

func checkHeaderName(k string) error {
	if k == "" {
		return errors.New("empty")
	}
	for i := 0; i < len(k); i++ {
		if !isTokenByte(k[i]) {
			return fmt.Errorf("byte %q is not allowed", k[i])
		}
	}
	if strings.HasSuffix(k, "-bin") {
		return errors.New(`binary ("-bin") metadata is not supported`)
	}
	return nil
}

func isTokenByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// badHeaderByte returns the offset of the first byte not allowed in an ASCII
// metadata value, or -1.
func badHeaderByte(v string) int {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c != '\t' && (c < 0x20 || c > 0x7e) {
			return i
		}
	}
	return -1
}

// parseAddress parses ztunnel's listener address syntax: "localhost:<port>"
// (dual-stack loopback) or an IP socket address.
func parseAddress(v string) (Address, error) {
	if p, ok := strings.CutPrefix(v, "localhost:"); ok {
		n, err := parseUint(p, 16)
		if err != nil {
			return Address{}, fmt.Errorf("port: %w", err)
		}
		return Address{Localhost: true, Port: uint16(n)}, nil
	}
	ap, err := netip.ParseAddrPort(v)
	if err != nil {
		return Address{}, errors.New(`want "localhost:<port>" or "<ip>:<port>"`)
	}
	return Address{IP: ap.Addr(), Port: ap.Port()}, nil
}

// terminationDeadline is CONNECTION_TERMINATION_DEADLINE, else derived from
// TERMINATION_GRACE_PERIOD_SECONDS so that draining ends before the kubelet's
// SIGKILL, else 5s.
func (s *source) terminationDeadline() time.Duration {
	d, haveDeadline := s.optDuration("CONNECTION_TERMINATION_DEADLINE")
	secs, haveGrace := s.optUint("TERMINATION_GRACE_PERIOD_SECONDS", 64)
	switch {
	case haveDeadline:
		return d
	case haveGrace:
		switch {
		case secs > 10:
			secs -= 5
		case secs > 0:
			secs--
		}
		secs = max(secs, 1)
		if secs > uint64(math.MaxInt64/int64(time.Second)) {
			return time.Duration(math.MaxInt64)
		}
		return time.Duration(secs) * time.Second
	}
	return defaultTermDeadline
}

// workerThreads resolves ZTUNNEL_WORKER_THREADS and its defaults as ztunnel
// does; see Config.WorkerThreads. concurrency is the proxy config's, if any.
func (s *source) workerThreads(concurrency *uint16) (int, bool) {
	resLimit, haveResLimit := s.cpuQuantity(envResourceLimit)
	resRequest, _ := s.cpuQuantity(envResourceRequest)
	cpuLimit, haveCPULimit := s.optUint(envCPULimit, 31)

	cpus := s.numCPU()
	switch {
	case haveResLimit:
		cpus = resLimit
	case haveCPULimit && cpuLimit > 0:
		cpus = int(cpuLimit)
	}

	var def int
	switch {
	case concurrency != nil && *concurrency > 0:
		def = int(*concurrency)
	case concurrency != nil:
		def = cpus
	case haveResLimit:
		def = max(resLimit, resRequest)
	default:
		frac := (cpus*workerThreadCPUPercent + 99) / 100
		def = max(frac, resRequest, defaultWorkerThreads)
	}

	v, ok := s.get(envWorkerThreads)
	if !ok {
		return max(def, 1), false
	}
	if p, isPct := strings.CutSuffix(v, "%"); isPct {
		pct, err := strconv.ParseFloat(p, 64)
		switch {
		case err != nil:
			s.fail(badValue(envWorkerThreads, v, errors.New("invalid percentage")))
		case !(pct > 0 && pct <= 100):
			s.fail(badValue(envWorkerThreads, v, errors.New("percentage must be above 0 and at most 100")))
		default:
			return max(int(math.Ceil(float64(cpus)*pct/100)), 1), true
		}
		return max(def, 1), false
	}
	n, err := parseUint(v, 31)
	if err != nil {
		s.fail(badValue(envWorkerThreads, v, fmt.Errorf("want a thread count or a percentage: %w", err)))
		return max(def, 1), false
	}
	if n == 0 { // all CPUs, like the proxy config's concurrency: 0
		return max(cpus, 1), true
	}
	return int(n), true
}

// cpuQuantity parses a Kubernetes CPU quantity ("2", "1.5", "500m") into
// whole CPUs, rounding up.
func (s *source) cpuQuantity(name string) (int, bool) {
	v, ok := s.get(name)
	if !ok {
		return 0, false
	}
	var cores float64
	var err error
	if m, milli := strings.CutSuffix(v, "m"); milli {
		cores, err = strconv.ParseFloat(m, 64)
		cores /= 1000
	} else {
		cores, err = strconv.ParseFloat(v, 64)
	}
	switch {
	case err != nil:
		s.fail(badValue(name, v, errors.New("not a CPU quantity")))
		return 0, false
	case math.IsNaN(cores) || math.IsInf(cores, 0) || cores <= 0 || cores > math.MaxInt32:
		s.fail(badValue(name, v, errors.New("must be a positive CPU quantity")))
		return 0, false
	}
	return int(math.Ceil(cores)), true
}
