package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// testEnv is an environment plus a fake filesystem and CPU count.
type testEnv struct {
	vars  map[string]string
	files map[string]string // path -> contents; presence means "exists"
	cpus  int
}

func (te testEnv) build() (*Config, error) {
	if te.cpus == 0 {
		te.cpus = 4
	}
	names := slices.Collect(maps.Keys(te.vars))
	s := &source{
		lookup: func(k string) (string, bool) { v, ok := te.vars[k]; return v, ok },
		names:  names,
		exists: func(p string) bool { _, ok := te.files[p]; return ok },
		readFile: func(p string) ([]byte, error) {
			if d, ok := te.files[p]; ok {
				return []byte(d), nil
			}
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		},
		numCPU: func() int { return te.cpus },
	}
	return s.build()
}

func mustBuild(t *testing.T, vars map[string]string) *Config {
	t.Helper()
	c, err := testEnv{vars: vars}.build()
	if err != nil {
		t.Fatalf("build(%v): %v", vars, err)
	}
	return c
}

// badVars returns the Var of every *VarError in err.
func badVars(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var ve *VarError
		if errors.As(e, &ve) {
			out = append(out, ve.Var)
		}
	}
	walk(err)
	return out
}

func ptr[T any](v T) *T { return &v }

func TestDefaults(t *testing.T) {
	c := mustBuild(t, nil)
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"PROXY_MODE", c.Mode, ModeShared},
		{"PROXY_WORKLOAD_INFO", c.ProxyWorkload, (*WorkloadInfo)(nil)},
		{"ENABLE_PROXY", c.EnableProxy, true},
		{"CLUSTER_ID", c.ClusterID, "Kubernetes"},
		{"CLUSTER_DOMAIN", c.ClusterDomain, "cluster.local"},
		{"TRUST_DOMAIN", c.TrustDomain, "cluster.local"},
		{"NETWORK", c.Network, ""},
		{"NODE_NAME", c.NodeName, ""},
		{"POD_NAME", c.PodName, ""},
		{"ISTIO_META_ISTIO_VERSION", c.IstioVersion, "unknown"},
		{"INSTANCE_IP", c.InstanceIP, netip.Addr{}},
		{"Self", c.Self, (*WorkloadInfo)(nil)},
		{"KUBERNETES_SERVICE_HOST", c.InKubernetes, false},
		{"XDS_ADDRESS", c.XDS.Address, "https://localhost:15012"},
		{"XDS_ROOT_CA", c.XDS.RootCert, RootCert{Kind: RootCertFile, Path: DefaultRootCertPath}},
		{"ALT_XDS_HOSTNAME", c.XDS.AltHostname, ""},
		{"XDS_HEADER_*", c.XDS.Headers, map[string]string{}},
		{"XDS_ON_DEMAND", c.XDS.OnDemand, false},
		{"LOCAL_XDS_PATH", c.XDS.LocalPath, ""},
		{"LOCAL_XDS", c.XDS.LocalInline, ""},
		{"CA_ADDRESS", c.CA.Address, "https://localhost:15012"},
		{"CA_ROOT_CA", c.CA.RootCert, RootCert{Kind: RootCertFile, Path: DefaultRootCertPath}},
		{"ALT_CA_HOSTNAME", c.CA.AltHostname, ""},
		{"CA_HEADER_*", c.CA.Headers, map[string]string{}},
		{"SECRET_TTL", c.CA.SecretTTL, 24 * time.Hour},
		{"FAKE_CA", c.CA.FakeCA, false},
		{"LOCAL_CA_DIR", c.CA.LocalDir, ""},
		{"AUTH_TOKEN", c.Auth, Auth{Kind: AuthNone}},
		{"HTTP2_STREAM_WINDOW_SIZE", c.HTTP2.StreamWindowSize, uint32(4 << 20)},
		{"HTTP2_CONNECTION_WINDOW_SIZE", c.HTTP2.ConnectionWindowSize, uint32(16 << 20)},
		{"HTTP2_FRAME_SIZE", c.HTTP2.FrameSize, uint32(1 << 20)},
		{"POOL_MAX_STREAMS_PER_CONNECTION", c.Pool.MaxStreamsPerConnection, uint16(100)},
		{"POOL_UNUSED_RELEASE_TIMEOUT", c.Pool.UnusedReleaseTimeout, 5 * time.Minute},
		{"KEEPALIVE_ENABLED", c.Keepalive.Enabled, true},
		{"KEEPALIVE_TIME", c.Keepalive.Time, 180 * time.Second},
		{"KEEPALIVE_INTERVAL", c.Keepalive.Interval, 180 * time.Second},
		{"KEEPALIVE_RETRIES", c.Keepalive.Retries, uint32(9)},
		{"USER_TIMEOUT_ENABLED", c.Keepalive.UserTimeoutEnabled, false},
		{"INPOD_UDS", c.InPod.UDS, "/var/run/ztunnel/ztunnel.sock"},
		{"INPOD_PORT_REUSE", c.InPod.PortReuse, true},
		{"PACKET_MARK", c.PacketMark, uint32(1337)},
		{"CONNECTION_TERMINATION_DEADLINE", c.TerminationDeadline, 5 * time.Second},
		{"ENABLE_ORIG_SRC", c.RequireOriginalSource, (*bool)(nil)},
		{"ZTUNNEL_MAX_CONNECTIONS", c.MaxConnections, 0},
		{"IPV6_ENABLED", c.IPv6Enabled, true},
		{"TLS12_ENABLED", c.TLS12Enabled, false},
		{"COMPLIANCE_POLICY", c.CompliancePolicy, ComplianceNone},
		{"ZTUNNEL_WORKER_THREADS", c.WorkerThreads, 2},
		{"WorkerThreadsSet", c.WorkerThreadsSet, false},
		{"ZTUNNEL_MEMORY_TRIM_INTERVAL", c.MemoryTrimInterval, 10 * time.Second},
		{"ZTUNNEL_HBONE_EARLY_DATA", c.HBONEEarlyData, true},
		{"PREFERED_SERVICE_NAMESPACE", c.PreferredServiceNamespace, ""},
		{"LOCALHOST_APP_TUNNEL", c.LocalhostAppTunnel, true},
		{"ENABLE_RESPONSE_BAGGAGE", c.EnableResponseBaggage, true},
		{"CRL_PATH", c.CRLPath, ""},
		{"ISTIO_META_*", c.ProxyMetadata, map[string]string{}},
		{"ISTIO_METAJSON_*", c.MetadataJSON, map[string]string{}},
		{"admin", c.Listen.Admin, Address{Localhost: true, Port: 15000}},
		{"stats", c.Listen.Stats, Address{IP: netip.IPv6Unspecified(), Port: 15020}},
		{"readiness", c.Listen.Readiness, Address{IP: netip.IPv6Unspecified(), Port: 15021}},
		{"inbound", c.Listen.Inbound.String(), "[::]:15008"},
		{"inbound plaintext", c.Listen.InboundPlaintext.String(), "[::]:15006"},
		{"outbound", c.Listen.Outbound.String(), "[::]:15001"},
		{"UNSTABLE_ENABLE_SOCKS5", c.Listen.SOCKS5, (*Address)(nil)},
		{"illegal ports", c.Listen.IllegalPorts, []uint16{15001, 15006, 15008}},
		{"DNS_CAPTURE", c.DNS.Enabled, true},
		{"DNS_PROXY_ADDR", c.DNS.Addr, Address{Localhost: true, Port: 15053}},
		{"LOG_FORMAT", c.Log.Format, LogPlain},
		{"RUST_LOG", c.Log.Level.String(), "info"},
		{"AUTHZ_POLICY_INFO_LOGGING", c.Log.AuthzPolicyInfo, false},
		{"node id", c.XDSNodeID(), "ztunnel~1.1.1.1~.~.svc.cluster.local"},
		{"UsesIstiod", c.UsesIstiod(), true},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}
}

func TestGoodValues(t *testing.T) {
	tests := []struct {
		env  map[string]string
		get  func(*Config) any
		want any
	}{
		{map[string]string{"PROXY_MODE": "shared"}, func(c *Config) any { return c.Mode }, ModeShared},
		{map[string]string{"PROXY_MODE": "dedicated", "PROXY_WORKLOAD_INFO": "ns1/pod1/sa1"},
			func(c *Config) any { return *c.ProxyWorkload }, WorkloadInfo{Namespace: "ns1", Name: "pod1", ServiceAccount: "sa1"}},
		{map[string]string{"PROXY_WORKLOAD_INFO": "ns1/pod1/sa1"}, func(c *Config) any { return c.ProxyWorkload }, (*WorkloadInfo)(nil)},
		{map[string]string{"ENABLE_PROXY": "false"}, func(c *Config) any { return c.EnableProxy }, false},
		{map[string]string{"CLUSTER_ID": "c1"}, func(c *Config) any { return c.ClusterID }, "c1"},
		{map[string]string{"CLUSTER_ID": "c1", "ISTIO_META_CLUSTER_ID": "c2"}, func(c *Config) any { return c.ClusterID }, "c2"},
		{map[string]string{"CLUSTER_DOMAIN": "example.org"}, func(c *Config) any { return c.ClusterDomain }, "example.org"},
		{map[string]string{"NETWORK": "net1"}, func(c *Config) any { return c.Network }, "net1"},
		{map[string]string{"NODE_NAME": "node1"}, func(c *Config) any { return c.NodeName }, "node1"},
		{map[string]string{"ISTIO_META_ISTIO_VERSION": "1.30.1"}, func(c *Config) any { return c.IstioVersion }, "1.30.1"},
		{map[string]string{"ISTIO_META_ISTIO_VERSION": "1.30.1"}, func(c *Config) any { return c.ProxyMetadata["ISTIO_VERSION"] }, "1.30.1"},
		{map[string]string{"INSTANCE_IP": "10.0.0.7"}, func(c *Config) any { return c.InstanceIP }, netip.MustParseAddr("10.0.0.7")},
		{map[string]string{"INSTANCE_IP": "fd00::7"}, func(c *Config) any { return c.InstanceIP }, netip.MustParseAddr("fd00::7")},
		{map[string]string{"POD_NAME": "zt-1", "POD_NAMESPACE": "istio-system", "SERVICE_ACCOUNT": "ztunnel", "INSTANCE_IP": "10.0.0.7"},
			func(c *Config) any { return c.XDSNodeID() }, "ztunnel~10.0.0.7~zt-1.istio-system~istio-system.svc.cluster.local"},
		{map[string]string{"POD_NAME": "zt-1", "POD_NAMESPACE": "istio-system", "SERVICE_ACCOUNT": "ztunnel", "TRUST_DOMAIN": "td"},
			func(c *Config) any { return c.SelfIdentity() }, "spiffe://td/ns/istio-system/sa/ztunnel"},
		{map[string]string{"POD_NAME": "zt-1", "POD_NAMESPACE": "istio-system"},
			func(c *Config) any { return c.Self }, (*WorkloadInfo)(nil)},
		{map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, func(c *Config) any { return c.XDS.Address }, "https://istiod.istio-system.svc:15012"},
		{map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, func(c *Config) any { return c.CA.Address }, "https://istiod.istio-system.svc:15012"},
		{map[string]string{"XDS_ADDRESS": "istiod-rev.istio-system.svc:15012"}, func(c *Config) any { return c.XDS.Address }, "https://istiod-rev.istio-system.svc:15012"},
		{map[string]string{"XDS_ADDRESS": "http://127.0.0.1:15010"}, func(c *Config) any { return c.XDS.Address }, "http://127.0.0.1:15010"},
		{map[string]string{"XDS_ADDRESS": ""}, func(c *Config) any { return c.UsesIstiod() }, false},
		{map[string]string{"CA_ADDRESS": "ca.example:443"}, func(c *Config) any { return c.CA.Address }, "https://ca.example:443"},
		{map[string]string{"CA_ADDRESS": ""}, func(c *Config) any { return c.CA.Address }, ""},
		{map[string]string{"FAKE_CA": "true"}, func(c *Config) any { return []any{c.CA.FakeCA, c.CA.Address} }, []any{true, ""}},
		{map[string]string{"LOCAL_CA_DIR": "/etc/cacerts"}, func(c *Config) any { return []any{c.CA.LocalDir, c.CA.Address} }, []any{"/etc/cacerts", ""}},
		{map[string]string{"ALT_XDS_HOSTNAME": "istiod.example"}, func(c *Config) any { return c.XDS.AltHostname }, "istiod.example"},
		{map[string]string{"ALT_CA_HOSTNAME": "ca.example"}, func(c *Config) any { return c.CA.AltHostname }, "ca.example"},
		{map[string]string{"XDS_ON_DEMAND": "true", "ISTIO_META_DNS_CAPTURE": "false"}, func(c *Config) any { return c.XDS.OnDemand }, true},
		{map[string]string{"LOCAL_XDS_PATH": "/etc/z/local.yaml"}, func(c *Config) any { return c.XDS.LocalPath }, "/etc/z/local.yaml"},
		{map[string]string{"LOCAL_XDS": "workloads: []"}, func(c *Config) any { return c.XDS.LocalInline }, "workloads: []"},
		{map[string]string{"ZTUNNEL_MAX_CONNECTIONS": "10000"}, func(c *Config) any { return c.MaxConnections }, 10000},
		{map[string]string{"SECRET_TTL": "12h"}, func(c *Config) any { return c.CA.SecretTTL }, 12 * time.Hour},
		{map[string]string{"SECRET_TTL": "3600"}, func(c *Config) any { return c.CA.SecretTTL }, time.Hour},
		{map[string]string{"HTTP2_STREAM_WINDOW_SIZE": "65535"}, func(c *Config) any { return c.HTTP2.StreamWindowSize }, uint32(65535)},
		{map[string]string{"HTTP2_CONNECTION_WINDOW_SIZE": "+1048576"}, func(c *Config) any { return c.HTTP2.ConnectionWindowSize }, uint32(1 << 20)},
		{map[string]string{"HTTP2_FRAME_SIZE": "16384"}, func(c *Config) any { return c.HTTP2.FrameSize }, uint32(16384)},
		{map[string]string{"POOL_MAX_STREAMS_PER_CONNECTION": "250"}, func(c *Config) any { return c.Pool.MaxStreamsPerConnection }, uint16(250)},
		{map[string]string{"POOL_UNUSED_RELEASE_TIMEOUT": "30s"}, func(c *Config) any { return c.Pool.UnusedReleaseTimeout }, 30 * time.Second},
		{map[string]string{"KEEPALIVE_ENABLED": "false"}, func(c *Config) any { return c.Keepalive.Enabled }, false},
		{map[string]string{"KEEPALIVE_TIME": "1m"}, func(c *Config) any { return c.Keepalive.Time }, time.Minute},
		{map[string]string{"KEEPALIVE_INTERVAL": "15s"}, func(c *Config) any { return c.Keepalive.Interval }, 15 * time.Second},
		{map[string]string{"KEEPALIVE_RETRIES": "3"}, func(c *Config) any { return c.Keepalive.Retries }, uint32(3)},
		{map[string]string{"USER_TIMEOUT_ENABLED": "true"}, func(c *Config) any { return c.Keepalive.UserTimeoutEnabled }, true},
		{map[string]string{"INPOD_UDS": "/tmp/z.sock"}, func(c *Config) any { return c.InPod.UDS }, "/tmp/z.sock"},
		{map[string]string{"INPOD_PORT_REUSE": "false"}, func(c *Config) any { return c.InPod.PortReuse }, false},
		{map[string]string{"PACKET_MARK": "0"}, func(c *Config) any { return c.PacketMark }, uint32(0)},
		{map[string]string{"PACKET_MARK": "4242"}, func(c *Config) any { return c.PacketMark }, uint32(4242)},
		{map[string]string{"CONNECTION_TERMINATION_DEADLINE": "30s"}, func(c *Config) any { return c.TerminationDeadline }, 30 * time.Second},
		{map[string]string{"ENABLE_ORIG_SRC": "false"}, func(c *Config) any { return c.RequireOriginalSource }, ptr(false)},
		{map[string]string{"ENABLE_ORIG_SRC": "true"}, func(c *Config) any { return c.RequireOriginalSource }, ptr(true)},
		{map[string]string{"IPV6_ENABLED": "false"}, func(c *Config) any { return c.Listen.Outbound.String() }, "0.0.0.0:15001"},
		{map[string]string{"TLS12_ENABLED": "true"}, func(c *Config) any { return c.TLS12Enabled }, true},
		{map[string]string{"COMPLIANCE_POLICY": "pqc"}, func(c *Config) any { return c.CompliancePolicy }, CompliancePQC},
		{map[string]string{"COMPLIANCE_POLICY": "fips-140-2"}, func(c *Config) any { return c.CompliancePolicy }, ComplianceFIPS1402},
		{map[string]string{"LOG_FORMAT": "json"}, func(c *Config) any { return c.Log.Format }, LogJSON},
		{map[string]string{"LOG_FORMAT": "plain"}, func(c *Config) any { return c.Log.Format }, LogPlain},
		{map[string]string{"RUST_LOG": "info,access=debug"}, func(c *Config) any { return c.Log.Level.String() }, "info,access=debug"},
		{map[string]string{"LOG_LEVEL": "debug"}, func(c *Config) any { return c.Log.Level.Default }, slog.LevelDebug},
		{map[string]string{"LOG_LEVEL": "debug", "RUST_LOG": "warn"}, func(c *Config) any { return c.Log.Level.Default }, slog.LevelWarn},
		{map[string]string{"RUST_LOG": ""}, func(c *Config) any { return c.Log.Level.Default }, slog.LevelInfo},
		{map[string]string{"AUTHZ_POLICY_INFO_LOGGING": "true"}, func(c *Config) any { return c.Log.AuthzPolicyInfo }, true},
		{map[string]string{"ZTUNNEL_WORKER_THREADS": "6"}, func(c *Config) any { return []any{c.WorkerThreads, c.WorkerThreadsSet} }, []any{6, true}},
		{map[string]string{"ZTUNNEL_MEMORY_TRIM_INTERVAL": "0"}, func(c *Config) any { return c.MemoryTrimInterval }, time.Duration(0)},
		{map[string]string{"ZTUNNEL_MEMORY_TRIM_INTERVAL": "1m"}, func(c *Config) any { return c.MemoryTrimInterval }, time.Minute},
		{map[string]string{"ZTUNNEL_HBONE_EARLY_DATA": "false"}, func(c *Config) any { return c.HBONEEarlyData }, false},
		{map[string]string{"PREFERED_SERVICE_NAMESPACE": "shared"}, func(c *Config) any { return c.PreferredServiceNamespace }, "shared"},
		{map[string]string{"LOCALHOST_APP_TUNNEL": "false"}, func(c *Config) any { return c.LocalhostAppTunnel }, false},
		{map[string]string{"ENABLE_RESPONSE_BAGGAGE": "false"}, func(c *Config) any { return c.EnableResponseBaggage }, false},
		{map[string]string{"CRL_PATH": "/etc/crl.pem"}, func(c *Config) any { return c.CRLPath }, "/etc/crl.pem"},
		{map[string]string{"UNSTABLE_ENABLE_SOCKS5": "true"}, func(c *Config) any { return []any{c.Listen.SOCKS5.String(), c.Listen.IllegalPorts} },
			[]any{"127.0.0.1:15080", []uint16{15001, 15006, 15008, 15080}}},
		{map[string]string{"ISTIO_META_DNS_CAPTURE": "FALSE"}, func(c *Config) any { return c.DNS.Enabled }, false},
		{map[string]string{"ISTIO_META_DNS_CAPTURE": "True"}, func(c *Config) any { return c.DNS.Enabled }, true},
		{map[string]string{"ISTIO_META_DNS_PROXY_ADDR": "localhost:5353"}, func(c *Config) any { return c.DNS.Addr }, Address{Localhost: true, Port: 5353}},
		{map[string]string{"ISTIO_META_DNS_PROXY_ADDR": "[::1]:5353"}, func(c *Config) any { return c.DNS.Addr.String() }, "[::1]:5353"},
		{map[string]string{"ISTIO_META_FOO": "bar", "ISTIO_META_CLUSTER_ID": "c9"}, func(c *Config) any { return c.ProxyMetadata },
			map[string]string{"FOO": "bar", "CLUSTER_ID": "c9"}},
		{map[string]string{"ISTIO_METAJSON_LABELS": `{"app":"z"}`}, func(c *Config) any { return c.MetadataJSON }, map[string]string{"LABELS": `{"app":"z"}`}},
		{map[string]string{"ENABLE_PROXY": "false", "UNKNOWN_VARIABLE": "whatever"}, func(c *Config) any { return c.EnableProxy }, false},
	}
	for _, tt := range tests {
		c, err := testEnv{vars: tt.env}.build()
		if err != nil {
			t.Errorf("%v: %v", tt.env, err)
			continue
		}
		if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%v: got %#v, want %#v", tt.env, got, tt.want)
		}
	}
}

func TestBadValues(t *testing.T) {
	tests := []struct {
		name, value string
		extra       map[string]string
	}{
		{"PROXY_MODE", "sidecar", nil},
		{"PROXY_WORKLOAD_INFO", "ns/name", map[string]string{"PROXY_MODE": "dedicated"}},
		{"PROXY_WORKLOAD_INFO", "ns//sa", map[string]string{"PROXY_MODE": "dedicated"}},
		{"ENABLE_PROXY", "yes", nil},
		{"INSTANCE_IP", "10.0.0", nil},
		{"XDS_ADDRESS", "https://", nil},
		{"XDS_ADDRESS", "istiod:15012/%zz", nil},
		{"CA_ADDRESS", "http://[::1", nil},
		{"XDS_ON_DEMAND", "1", nil},
		{"XDS_ON_DEMAND", "true", nil}, // DNS proxy enabled by default
		{"LOCAL_XDS_PATH", "/a.yaml", map[string]string{"LOCAL_XDS": "workloads: []"}},
		{"FAKE_CA", "True", nil},
		{"LOCAL_CA_DIR", "/etc/cacerts", map[string]string{"FAKE_CA": "true"}},
		{"SECRET_TTL", "", nil},
		{"SECRET_TTL", "forever", nil},
		{"SECRET_TTL", "0s", nil},
		{"HTTP2_STREAM_WINDOW_SIZE", "0", nil},
		{"HTTP2_STREAM_WINDOW_SIZE", "2147483648", nil},
		{"HTTP2_CONNECTION_WINDOW_SIZE", "-1", nil},
		{"HTTP2_FRAME_SIZE", "abc", nil},
		{"HTTP2_FRAME_SIZE", "1024", nil},
		{"HTTP2_FRAME_SIZE", "16777216", nil},
		{"HTTP2_FRAME_SIZE", "4294967296", nil},
		{"HTTP2_FRAME_SIZE", " 16384", nil},
		{"POOL_MAX_STREAMS_PER_CONNECTION", "70000", nil},
		{"POOL_MAX_STREAMS_PER_CONNECTION", "0", nil},
		{"POOL_UNUSED_RELEASE_TIMEOUT", "5 fortnights", nil},
		{"KEEPALIVE_ENABLED", "on", nil},
		{"KEEPALIVE_TIME", "500ms", nil},
		{"KEEPALIVE_INTERVAL", "x", nil},
		{"KEEPALIVE_RETRIES", "200", nil},
		{"USER_TIMEOUT_ENABLED", "TRUE", nil},
		{"INPOD_UDS", "", nil},
		{"INPOD_PORT_REUSE", "0", nil},
		{"PACKET_MARK", "0x539", nil},
		{"CONNECTION_TERMINATION_DEADLINE", "soon", nil},
		{"TERMINATION_GRACE_PERIOD_SECONDS", "30s", nil},
		{"ENABLE_ORIG_SRC", "auto", nil},
		{"ZTUNNEL_MAX_CONNECTIONS", "-1", nil},
		{"ZTUNNEL_MAX_CONNECTIONS", "lots", nil},
		{"IPV6_ENABLED", "no", nil},
		{"TLS12_ENABLED", "1", nil},
		{"COMPLIANCE_POLICY", "fips", nil},
		{"LOG_FORMAT", "text", nil},
		{"RUST_LOG", "info,xds=loud", nil},
		{"LOG_LEVEL", "xds=", nil},
		{"AUTHZ_POLICY_INFO_LOGGING", "yes", nil},
		{"ZTUNNEL_WORKER_THREADS", "many", nil},
		{"ZTUNNEL_WORKER_THREADS", "150%", nil},
		{"ZTUNNEL_WORKER_THREADS", "0%", nil},
		{"ZTUNNEL_WORKER_THREADS", "x%", nil},
		{"ZTUNNEL_MEMORY_TRIM_INTERVAL", "often", nil},
		{"ZTUNNEL_MEMORY_TRIM_INTERVAL", "-1s", nil},
		{"ZTUNNEL_HBONE_EARLY_DATA", "sometimes", nil},
		{"ZTUNNEL_CPU_LIMIT", "2.5", nil},
		{"ZTUNNEL_RESOURCE_CPU_LIMIT", "0", nil},
		{"ZTUNNEL_RESOURCE_CPU_REQUEST", "lots", nil},
		{"LOCALHOST_APP_TUNNEL", "nope", nil},
		{"ENABLE_RESPONSE_BAGGAGE", "nope", nil},
		{"UNSTABLE_ENABLE_SOCKS5", "1", nil},
		{"ISTIO_META_DNS_PROXY_ADDR", "not-an-address", nil},
		{"ISTIO_META_DNS_PROXY_ADDR", "localhost:99999", nil},
		{"ISTIO_METAJSON_LABELS", "{oops", nil},
		{"XDS_HEADER_X-BIN", "v", nil},
		{"XDS_HEADER_", "v", nil},
		{"XDS_HEADER_A B", "v", nil},
		{"CA_HEADER_TOKEN", "line1\nline2", nil},
		{"PROXY_CONFIG", "discoveryAddress: [", nil},
		{"PROXY_CONFIG", "proxyAdminPort: -1", nil},
		{"ENABLE_PROXY", "false", map[string]string{"ISTIO_META_DNS_CAPTURE": "false"}},
	}
	for _, tt := range tests {
		env := map[string]string{tt.name: tt.value}
		maps.Copy(env, tt.extra)
		c, err := testEnv{vars: env}.build()
		if err == nil {
			t.Errorf("%v: no error, config %+v", env, c)
			continue
		}
		if c != nil {
			t.Errorf("%v: config returned with error", env)
		}
		if got := badVars(err); !slices.Contains(got, tt.name) {
			t.Errorf("%v: error %q names %v, want %s", env, err, got, tt.name)
		}
		if !strings.HasPrefix(err.Error(), tt.name+": ") && !strings.Contains(err.Error(), "\n"+tt.name+": ") {
			t.Errorf("%v: error %q does not start with %s", env, err, tt.name)
		}
	}
}

func TestErrorText(t *testing.T) {
	_, err := testEnv{vars: map[string]string{"HTTP2_FRAME_SIZE": "abc"}}.build()
	want := `HTTP2_FRAME_SIZE: invalid value "abc": not an unsigned integer`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	// Header values may be credentials: never echoed.
	_, err = testEnv{vars: map[string]string{"XDS_HEADER_AUTHORIZATION": "Bearer s3cret\x01"}}.build()
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("header error %v leaks or is missing", err)
	}
}

func TestManyBadAtOnce(t *testing.T) {
	env := map[string]string{
		"HTTP2_FRAME_SIZE":          "abc",
		"SECRET_TTL":                "-1s",
		"PROXY_MODE":                "dedicated", // and no PROXY_WORKLOAD_INFO
		"KEEPALIVE_ENABLED":         "maybe",
		"RUST_LOG":                  "info,xds=loud",
		"XDS_HEADER_X-BIN":          "v",
		"ZTUNNEL_WORKER_THREADS":    "x",
		"ISTIO_META_DNS_PROXY_ADDR": "bad",
	}
	_, err := testEnv{vars: env}.build()
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{"HTTP2_FRAME_SIZE", "SECRET_TTL", "PROXY_WORKLOAD_INFO", "KEEPALIVE_ENABLED", "RUST_LOG",
		"XDS_HEADER_X-BIN", "ZTUNNEL_WORKER_THREADS", "ISTIO_META_DNS_PROXY_ADDR"}
	got := badVars(err)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("named %v, want %v\nerror:\n%v", got, want, err)
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		name, _, _ := strings.Cut(line, ":")
		if !slices.Contains(want, name) {
			t.Errorf("line %q does not start with a variable name", line)
		}
	}
}

func TestDedicatedMode(t *testing.T) {
	_, err := testEnv{vars: map[string]string{"PROXY_MODE": "dedicated"}}.build()
	if got := badVars(err); !slices.Equal(got, []string{"PROXY_WORKLOAD_INFO"}) {
		t.Fatalf("dedicated without workload: %v (%v)", got, err)
	}
	tests := []struct {
		env      map[string]string
		wantMark uint32
		wantWL   WorkloadInfo
	}{
		{map[string]string{"PROXY_WORKLOAD_INFO": "default/app/app-sa"}, 0, WorkloadInfo{"default", "app", "app-sa"}},
		{map[string]string{"PROXY_WORKLOAD_INFO": "default/app/sa/extra", "PACKET_MARK": "1337"}, 1337, WorkloadInfo{"default", "app", "sa/extra"}},
	}
	for _, tt := range tests {
		tt.env["PROXY_MODE"] = "dedicated"
		c := mustBuild(t, tt.env)
		if c.Mode != ModeDedicated || c.PacketMark != tt.wantMark || *c.ProxyWorkload != tt.wantWL {
			t.Errorf("%v: mode %v mark %d workload %+v", tt.env, c.Mode, c.PacketMark, c.ProxyWorkload)
		}
		if got, want := c.ProxyWorkload.SPIFFEID("cluster.local"), "spiffe://cluster.local/ns/default/sa/"+tt.wantWL.ServiceAccount; got != want {
			t.Errorf("SPIFFEID = %s, want %s", got, want)
		}
	}
}

func TestXDSAddressEmptyMeansNone(t *testing.T) {
	// XDS_ADDRESS="" wins over a discoveryAddress in the mesh config.
	c, err := testEnv{
		vars:  map[string]string{"XDS_ADDRESS": "", "CA_ADDRESS": "", "LOCAL_XDS_PATH": "local.yaml", "FAKE_CA": "true"},
		files: map[string]string{meshConfigPath: "defaultConfig:\n  discoveryAddress: istiod.x:15012\n"},
	}.build()
	if err != nil {
		t.Fatal(err)
	}
	if c.XDS.Address != "" || c.UsesIstiod() || c.CA.Address != "" {
		t.Errorf("XDS %q CA %q, want none", c.XDS.Address, c.CA.Address)
	}
	r := c.Redacted()
	if r["xdsAddress"] != nil || r["caAddress"] != nil {
		t.Errorf("dump: xdsAddress %v caAddress %v, want null", r["xdsAddress"], r["caAddress"])
	}
}

func TestHeaders(t *testing.T) {
	c := mustBuild(t, map[string]string{
		"XDS_HEADER_HEADER_FOO": "foo",
		"XDS_HEADER_X-Tenant":   "acme corp",
		"CA_HEADER_HEADER_BAZ":  "baz",
		"CA_HEADER_EMPTY":       "",
		"XDS_HEADERS_NOT_ONE":   "ignored",
		"NOT_XDS_HEADER_X":      "ignored",
	})
	if want := map[string]string{"header_foo": "foo", "x-tenant": "acme corp"}; !maps.Equal(c.XDS.Headers, want) {
		t.Errorf("XDS headers %v, want %v", c.XDS.Headers, want)
	}
	if want := map[string]string{"header_baz": "baz", "empty": ""}; !maps.Equal(c.CA.Headers, want) {
		t.Errorf("CA headers %v, want %v", c.CA.Headers, want)
	}
}

func TestRootCert(t *testing.T) {
	const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	files := map[string]string{"/etc/certs/root.pem": "x", DefaultRootCertPath: "y", "SYSTEM": "a file named SYSTEM"}
	tests := []struct {
		value string
		set   bool
		files map[string]string
		want  RootCert
	}{
		{set: false, want: RootCert{Kind: RootCertFile, Path: DefaultRootCertPath}},
		{set: false, files: files, want: RootCert{Kind: RootCertFile, Path: DefaultRootCertPath}},
		{value: "", set: true, want: RootCert{Kind: RootCertFile, Path: DefaultRootCertPath}},
		{value: "/etc/certs/root.pem", set: true, files: files, want: RootCert{Kind: RootCertFile, Path: "/etc/certs/root.pem"}},
		{value: "/etc/certs/missing.pem", set: true, files: files, want: RootCert{Kind: RootCertFile, Path: "/etc/certs/missing.pem"}},
		{value: "SYSTEM", set: true, want: RootCert{Kind: RootCertSystem}},
		{value: "SYSTEM", set: true, files: files, want: RootCert{Kind: RootCertFile, Path: "SYSTEM"}}, // existing file first, as ztunnel
		{value: pem, set: true, want: RootCert{Kind: RootCertPEM, PEM: []byte(pem)}},
	}
	for _, tt := range tests {
		for _, name := range []string{"XDS_ROOT_CA", "CA_ROOT_CA"} {
			vars := map[string]string{}
			if tt.set {
				vars[name] = tt.value
			}
			c, err := testEnv{vars: vars, files: tt.files}.build()
			if err != nil {
				t.Fatal(err)
			}
			got := c.XDS.RootCert
			if name == "CA_ROOT_CA" {
				got = c.CA.RootCert
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s=%q (set %v): got %v, want %v", name, tt.value, tt.set, got, tt.want)
			}
		}
	}
}

func TestAuth(t *testing.T) {
	tests := []struct {
		vars  map[string]string
		files map[string]string
		want  Auth
	}{
		{nil, nil, Auth{Kind: AuthNone}},
		{nil, map[string]string{DefaultTokenPath: "jwt"}, Auth{Kind: AuthTokenFile, Path: DefaultTokenPath, ClusterID: "Kubernetes"}},
		{map[string]string{"AUTH_TOKEN": "/t/tok", "CLUSTER_ID": "c1"}, map[string]string{"/t/tok": "jwt"},
			Auth{Kind: AuthTokenFile, Path: "/t/tok", ClusterID: "c1"}},
		{map[string]string{"AUTH_TOKEN": "eyJhbGciOi.static"}, nil, Auth{Kind: AuthStaticToken, ClusterID: "Kubernetes", token: "eyJhbGciOi.static"}},
		{map[string]string{"AUTH_TOKEN": ""}, nil, Auth{Kind: AuthNone}},
	}
	for _, tt := range tests {
		c, err := testEnv{vars: tt.vars, files: tt.files}.build()
		if err != nil {
			t.Fatal(err)
		}
		if c.Auth != tt.want {
			t.Errorf("%v: got %#v (token %q), want %#v", tt.vars, c.Auth, c.Auth.Token(), tt.want)
		}
	}
}

func TestStaticTokenNeverPrinted(t *testing.T) {
	const secret = "eyJhbGciOiJSUzI1NiJ9.very-secret"
	c := mustBuild(t, map[string]string{"AUTH_TOKEN": secret})
	if c.Auth.Token() != secret {
		t.Fatalf("Token() = %q", c.Auth.Token())
	}
	j, err := json.Marshal(c.Redacted())
	if err != nil {
		t.Fatal(err)
	}
	cj, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "auth", c.Auth, "cfg", c)
	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", *c), "%#v": fmt.Sprintf("%#v", *c),
		"Redacted": string(j), "json": string(cj), "slog": logged.String(),
	} {
		if strings.Contains(out, "very-secret") {
			t.Errorf("%s output leaks the token: %s", name, out)
		}
	}
}

func TestRedacted(t *testing.T) {
	c := mustBuild(t, map[string]string{
		"XDS_HEADER_AUTHORIZATION": "Bearer abc",
		"XDS_HEADER_X_TENANT":      "acme",
		"POD_NAME":                 "zt", "POD_NAMESPACE": "istio-system", "SERVICE_ACCOUNT": "ztunnel",
		"PROXY_MODE": "dedicated", "PROXY_WORKLOAD_INFO": "a/b/c",
	})
	b, err := json.Marshal(c.Redacted())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		key  string
		want string // JSON
	}{
		{"proxyMode", `"Dedicated"`},
		{"windowSize", `4194304`},
		{"secretTtl", `{"nanos":0,"secs":86400}`},
		{"adminAddr", `{"Localhost":[true,15000]}`},
		{"statsAddr", `{"SocketAddr":"[::]:15020"}`},
		{"inboundAddr", `"[::]:15008"`},
		{"xdsRootCert", `{"File":"./var/run/secrets/istio/root-cert.pem"}`},
		{"xdsHeaders", `[["authorization","\u003credacted\u003e"],["x_tenant","acme"]]`},
		{"proxyWorkloadInformation", `{"name":"b","namespace":"a","serviceAccount":"c"}`},
		{"ztunnelIdentity", `"spiffe://cluster.local/ns/istio-system/sa/ztunnel"`},
		{"packetMark", `null`},
		{"socks5Addr", `null`},
		{"illegalPorts", `[15001,15006,15008]`},
		{"socketConfig", `{"keepaliveEnabled":true,"keepaliveInterval":{"nanos":0,"secs":180},"keepaliveRetries":9,"keepaliveTime":{"nanos":0,"secs":180},"userTimeoutEnabled":false}`},
		{"logLevel", `"info"`},
	}
	for _, ch := range checks {
		v, ok := got[ch.key]
		if !ok {
			t.Errorf("key %s missing", ch.key)
			continue
		}
		j, _ := json.Marshal(v)
		if string(j) != ch.want {
			t.Errorf("%s = %s, want %s", ch.key, j, ch.want)
		}
	}
	if strings.Contains(string(b), "Bearer abc") {
		t.Error("authorization header value leaked")
	}
}

func TestMeshConfigAndProxyConfig(t *testing.T) {
	mesh := `
defaultConfig:
  discoveryAddress: istiod-rev0.istio-system:15012
  proxyAdminPort: 15099
  statsPort: 15888
  concurrency: 3
  proxyMetadata:
    ISTIO_META_FOO: foo
    ISTIO_META_FOOBAR: foobar
  tracing: {}
accessLogFile: /dev/stdout
`
	c, err := testEnv{
		vars: map[string]string{
			"PROXY_CONFIG":           `{"discoveryAddress":"istiod-rev1.istio-system:15012","proxyAdminPort":15999,"proxyMetadata":{"ISTIO_META_BAR":"bar","ISTIO_META_FOOBAR":"overwritten","NO_PREFIX":"x"}}`,
			"ISTIO_META_FROM_ENV":    "env",
			"ISTIO_META_DNS_CAPTURE": "false",
		},
		files: map[string]string{meshConfigPath: mesh},
	}.build()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.XDS.Address, "https://istiod-rev1.istio-system:15012"; got != want {
		t.Errorf("XDS address %s, want %s", got, want)
	}
	if c.Listen.Admin.Port != 15999 || c.Listen.Stats.Port != 15888 {
		t.Errorf("admin %v stats %v", c.Listen.Admin, c.Listen.Stats)
	}
	if c.WorkerThreads != 3 || c.WorkerThreadsSet {
		t.Errorf("worker threads %d set %v, want 3 from concurrency", c.WorkerThreads, c.WorkerThreadsSet)
	}
	want := map[string]string{"FOO": "foo", "FOOBAR": "overwritten", "BAR": "bar", "NO_PREFIX": "x", "FROM_ENV": "env", "DNS_CAPTURE": "false"}
	if !maps.Equal(c.ProxyMetadata, want) {
		t.Errorf("metadata %v, want %v", c.ProxyMetadata, want)
	}

	// A mesh config alone supplies the address; a broken one is an error.
	c = func() *Config {
		c, err := testEnv{files: map[string]string{meshConfigPath: mesh}}.build()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}()
	if c.XDS.Address != "https://istiod-rev0.istio-system:15012" {
		t.Errorf("mesh-only address %s", c.XDS.Address)
	}
	_, err = testEnv{files: map[string]string{meshConfigPath: "defaultConfig: [1"}}.build()
	if err == nil || !strings.HasPrefix(err.Error(), "mesh config ./etc/istio/config/mesh: ") {
		t.Errorf("broken mesh config: %v", err)
	}
	_, err = testEnv{files: map[string]string{meshConfigPath: "defaultConfig:\n  discoveryAddress: 'http://'\n"}}.build()
	if err == nil || !strings.HasPrefix(err.Error(), "discoveryAddress (mesh config): ") {
		t.Errorf("bad discoveryAddress: %v", err)
	}
}

func TestWorkerThreads(t *testing.T) {
	tests := []struct {
		vars    map[string]string
		cpus    int
		want    int
		wantSet bool
	}{
		{nil, 4, 2, false},  // ceil(25% of 4) = 1, floor 2
		{nil, 32, 8, false}, // 25% of 32
		{nil, 30, 8, false}, // ceil(7.5)
		{map[string]string{"ZTUNNEL_WORKER_THREADS": "4"}, 2, 4, true},
		{map[string]string{"ZTUNNEL_WORKER_THREADS": "50%", "ZTUNNEL_CPU_LIMIT": "8"}, 64, 4, true},
		{map[string]string{"ZTUNNEL_WORKER_THREADS": "30%", "ZTUNNEL_CPU_LIMIT": "16"}, 64, 5, true},
		{map[string]string{"ZTUNNEL_WORKER_THREADS": "10%", "ZTUNNEL_CPU_LIMIT": "4"}, 64, 1, true},
		{map[string]string{"ZTUNNEL_WORKER_THREADS": "0", "ZTUNNEL_CPU_LIMIT": "6"}, 64, 6, true},
		{map[string]string{"ZTUNNEL_CPU_LIMIT": "32"}, 4, 8, false},
		{map[string]string{"ZTUNNEL_RESOURCE_CPU_LIMIT": "16"}, 4, 16, false},
		{map[string]string{"ZTUNNEL_RESOURCE_CPU_LIMIT": "1"}, 4, 1, false},
		{map[string]string{"ZTUNNEL_RESOURCE_CPU_LIMIT": "500m"}, 4, 1, false},
		{map[string]string{"ZTUNNEL_RESOURCE_CPU_LIMIT": "2500m"}, 4, 3, false},
		{map[string]string{"ZTUNNEL_RESOURCE_CPU_LIMIT": "1.5"}, 4, 2, false},
		{map[string]string{"ZTUNNEL_RESOURCE_CPU_LIMIT": "3", "ZTUNNEL_CPU_LIMIT": "12", "ZTUNNEL_WORKER_THREADS": "100%"}, 64, 3, true},
		{map[string]string{"ZTUNNEL_RESOURCE_CPU_REQUEST": "8"}, 16, 8, false},
		{map[string]string{"ZTUNNEL_RESOURCE_CPU_REQUEST": "1"}, 16, 4, false},
		{map[string]string{"ZTUNNEL_RESOURCE_CPU_LIMIT": "16", "ZTUNNEL_RESOURCE_CPU_REQUEST": "4"}, 4, 16, false},
		{map[string]string{"ZTUNNEL_RESOURCE_CPU_LIMIT": "4", "ZTUNNEL_RESOURCE_CPU_REQUEST": "8"}, 4, 8, false},
		{map[string]string{"PROXY_CONFIG": "concurrency: 0", "ZTUNNEL_CPU_LIMIT": "6"}, 64, 6, false},
	}
	for _, tt := range tests {
		c, err := testEnv{vars: tt.vars, cpus: tt.cpus}.build()
		if err != nil {
			t.Errorf("%v: %v", tt.vars, err)
			continue
		}
		if c.WorkerThreads != tt.want || c.WorkerThreadsSet != tt.wantSet {
			t.Errorf("%v cpus %d: got %d (set %v), want %d (set %v)", tt.vars, tt.cpus, c.WorkerThreads, c.WorkerThreadsSet, tt.want, tt.wantSet)
		}
	}
}

func TestTerminationDeadline(t *testing.T) {
	tests := []struct {
		vars map[string]string
		want time.Duration
	}{
		{nil, 5 * time.Second},
		{map[string]string{"TERMINATION_GRACE_PERIOD_SECONDS": "30"}, 25 * time.Second},
		{map[string]string{"TERMINATION_GRACE_PERIOD_SECONDS": "11"}, 6 * time.Second},
		{map[string]string{"TERMINATION_GRACE_PERIOD_SECONDS": "10"}, 9 * time.Second},
		{map[string]string{"TERMINATION_GRACE_PERIOD_SECONDS": "2"}, 1 * time.Second},
		{map[string]string{"TERMINATION_GRACE_PERIOD_SECONDS": "1"}, 1 * time.Second},
		{map[string]string{"TERMINATION_GRACE_PERIOD_SECONDS": "0"}, 1 * time.Second},
		{map[string]string{"TERMINATION_GRACE_PERIOD_SECONDS": "30", "CONNECTION_TERMINATION_DEADLINE": "2m"}, 2 * time.Minute},
		{map[string]string{"CONNECTION_TERMINATION_DEADLINE": "10"}, 10 * time.Second},
	}
	for _, tt := range tests {
		c := mustBuild(t, tt.vars)
		if c.TerminationDeadline != tt.want {
			t.Errorf("%v: got %v, want %v", tt.vars, c.TerminationDeadline, tt.want)
		}
	}
}

func TestAddressEndpoints(t *testing.T) {
	tests := []struct {
		a    Address
		ipv6 bool
		want []string
	}{
		{Address{Localhost: true, Port: 15000}, true, []string{"127.0.0.1:15000", "[::1]:15000"}},
		{Address{Localhost: true, Port: 15000}, false, []string{"127.0.0.1:15000"}},
		{Address{IP: netip.IPv6Unspecified(), Port: 15020}, false, []string{"[::]:15020"}},
	}
	for _, tt := range tests {
		var got []string
		for _, ep := range tt.a.Endpoints(tt.ipv6) {
			got = append(got, ep.String())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%v.Endpoints(%v) = %v, want %v", tt.a, tt.ipv6, got, tt.want)
		}
	}
}

// TestFromEnvOS goes through the real entry points: the process environment
// and the real filesystem.
func TestFromEnvOS(t *testing.T) {
	dir := t.TempDir()
	tok := dir + "/token"
	if err := os.WriteFile(tok, []byte("jwt"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AUTH_TOKEN", tok)
	t.Setenv("XDS_HEADER_X_ENV_TEST", "v1")
	t.Setenv("HTTP2_FRAME_SIZE", "32768")
	c, err := FromEnv(os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.Kind != AuthTokenFile || c.Auth.Path != tok {
		t.Errorf("auth %v", c.Auth)
	}
	if c.XDS.Headers["x_env_test"] != "v1" || c.HTTP2.FrameSize != 32768 {
		t.Errorf("headers %v frame %d", c.XDS.Headers, c.HTTP2.FrameSize)
	}

	c, err = FromEnviron([]string{"PROXY_MODE=dedicated", "PROXY_WORKLOAD_INFO=a/b/c", "PROXY_WORKLOAD_INFO=x/y/z",
		"CA_HEADER_K=v=w", "garbage"})
	if err != nil {
		t.Fatal(err)
	}
	if c.ProxyWorkload.String() != "a/b/c" || c.CA.Headers["k"] != "v=w" {
		t.Errorf("workload %v headers %v", c.ProxyWorkload, c.CA.Headers)
	}
	_, err = FromEnviron([]string{"HTTP2_FRAME_SIZE=abc", "SECRET_TTL=x"})
	if got := badVars(err); len(got) != 2 {
		t.Errorf("FromEnviron errors %v", got)
	}
}
