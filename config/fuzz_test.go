package config

import (
	"strings"
	"testing"
)

// fuzzVars are the variables FuzzFromEnv assigns values to.
var fuzzVars = []string{
	"PROXY_MODE", "PROXY_WORKLOAD_INFO", "XDS_ADDRESS", "CA_ADDRESS", "XDS_ROOT_CA", "AUTH_TOKEN",
	"INSTANCE_IP", "SECRET_TTL", "HTTP2_FRAME_SIZE", "POOL_MAX_STREAMS_PER_CONNECTION", "KEEPALIVE_TIME",
	"KEEPALIVE_RETRIES", "PACKET_MARK", "TERMINATION_GRACE_PERIOD_SECONDS", "ZTUNNEL_WORKER_THREADS",
	"ZTUNNEL_RESOURCE_CPU_LIMIT", "ZTUNNEL_RESOURCE_CPU_REQUEST", "ZTUNNEL_CPU_LIMIT", "RUST_LOG",
	"LOG_FORMAT", "ISTIO_META_DNS_PROXY_ADDR", "ISTIO_METAJSON_X", "XDS_HEADER_X", "PROXY_CONFIG",
	"COMPLIANCE_POLICY", "IPV6_ENABLED",
}

// FuzzFromEnv feeds arbitrary values to every parser FromEnv uses (integers,
// CPU quantities, URIs, addresses, headers, YAML, durations, log levels): it
// must never panic, and must return either a Config or only named errors.
func FuzzFromEnv(f *testing.F) {
	seeds := []struct {
		i int
		v string
	}{
		{0, "dedicated"}, {1, "a/b/c"}, {2, "istiod:15012"}, {3, "http://[::1"}, {6, "fd00::1"},
		{7, "1h30m"}, {8, "+16384"}, {13, "18446744073709551615"}, {14, "33.3%"}, {15, "2500m"},
		{16, "NaN"}, {17, "-1"}, {18, "info,xds=debug"}, {20, "localhost:65536"}, {21, `{"a":[1]}`},
		{22, "bad\x00value"}, {23, "discoveryAddress: x\nconcurrency: 70000"}, {14, "1e308%"}, {15, "1e400"},
	}
	for _, s := range seeds {
		f.Add(s.i, s.v)
	}
	f.Fuzz(func(t *testing.T, i int, v string) {
		if i < 0 {
			i = -i
		}
		name := fuzzVars[i%len(fuzzVars)]
		c, err := testEnv{vars: map[string]string{name: v}}.build()
		if err != nil {
			if c != nil {
				t.Fatal("config and error both returned")
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.Contains(line, ": ") {
					t.Fatalf("unnamed error line %q", line)
				}
			}
			return
		}
		if c.WorkerThreads < 1 || c.HTTP2.FrameSize < minHTTP2Frame || c.Keepalive.Time < 0 {
			t.Fatalf("%s=%q: out-of-range config %+v", name, v, c)
		}
		_ = c.Redacted()
	})
}
