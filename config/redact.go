package config

import (
	"net/netip"
	"sort"
	"strings"
	"time"
)

// redactedValue replaces a secret in Redacted's output.
const redactedValue = "<redacted>"

// Redacted returns the "config" section of /config_dump: the configuration
// in the shape ztunnel serialises its own (camelCase keys, durations as
// {"secs","nanos"}, listener addresses as {"Localhost":[ipv6,port]} or
// {"SocketAddr":"ip:port"}, absent options as null), followed by a few keys
// of ours (localCaDir, tls12Enabled, compliancePolicy, logFormat, logLevel,
// authSource). The token is never included, and header values whose names
// suggest credentials are replaced by "<redacted>". The result is fresh on
// every call and safe to marshal with encoding/json.
func (c *Config) Redacted() map[string]any {
	var socks5 any
	if c.Listen.SOCKS5 != nil {
		socks5 = netip.AddrPortFrom(c.Listen.SOCKS5.IP, c.Listen.SOCKS5.Port).String()
	}
	var proxyWorkload, self, selfID any
	if c.ProxyWorkload != nil {
		proxyWorkload = workloadDump(*c.ProxyWorkload)
	}
	if c.Self != nil {
		self = workloadDump(*c.Self)
		selfID = c.SelfIdentity()
	}
	var packetMark any
	if c.PacketMark != 0 {
		packetMark = c.PacketMark
	}
	var origSrc any
	if c.RequireOriginalSource != nil {
		origSrc = *c.RequireOriginalSource
	}
	illegal := make([]uint16, len(c.Listen.IllegalPorts))
	copy(illegal, c.Listen.IllegalPorts)
	metadata := make(map[string]string, len(c.ProxyMetadata))
	for k, v := range c.ProxyMetadata {
		metadata[k] = v
	}
	return map[string]any{
		"proxy":                    c.EnableProxy,
		"dnsProxy":                 c.DNS.Enabled,
		"windowSize":               c.HTTP2.StreamWindowSize,
		"connectionWindowSize":     c.HTTP2.ConnectionWindowSize,
		"frameSize":                c.HTTP2.FrameSize,
		"poolMaxStreamsPerConn":    c.Pool.MaxStreamsPerConnection,
		"poolUnusedReleaseTimeout": durationDump(c.Pool.UnusedReleaseTimeout),
		"socks5Addr":               socks5,
		"adminAddr":                c.addressDump(c.Listen.Admin),
		"statsAddr":                c.addressDump(c.Listen.Stats),
		"readinessAddr":            c.addressDump(c.Listen.Readiness),
		"inboundAddr":              c.Listen.Inbound.String(),
		"inboundPlaintextAddr":     c.Listen.InboundPlaintext.String(),
		"outboundAddr":             c.Listen.Outbound.String(),
		"dnsProxyAddr":             c.addressDump(c.DNS.Addr),
		"illegalPorts":             illegal,
		"network":                  c.Network,
		"localNode":                optString(c.NodeName),
		"proxyMode":                modeDump(c.Mode),
		"proxyWorkloadInformation": proxyWorkload,
		"clusterId":                c.ClusterID,
		"clusterDomain":            c.ClusterDomain,
		"caAddress":                optString(c.CA.Address),
		"caRootCert":               rootCertDump(c.CA.RootCert),
		"altCaHostname":            optString(c.CA.AltHostname),
		"xdsAddress":               optString(c.XDS.Address),
		"xdsRootCert":              rootCertDump(c.XDS.RootCert),
		"altXdsHostname":           optString(c.XDS.AltHostname),
		"preferedServiceNamespace": optString(c.PreferredServiceNamespace),
		"secretTtl":                durationDump(c.CA.SecretTTL),
		"xdsOnDemand":              c.XDS.OnDemand,
		"fakeCa":                   c.CA.FakeCA,
		"fakeSelfInbound":          false,
		"selfTerminationDeadline":  durationDump(c.TerminationDeadline),
		"proxyMetadata":            metadata,
		"numWorkerThreads":         c.WorkerThreads,
		"requireOriginalSource":    origSrc,
		"proxyArgs":                c.ProxyArgs,
		"inpodUds":                 c.InPod.UDS,
		"inpodPortReuse":           c.InPod.PortReuse,
		"packetMark":               packetMark,
		"socketConfig": map[string]any{
			"keepaliveTime":      durationDump(c.Keepalive.Time),
			"keepaliveInterval":  durationDump(c.Keepalive.Interval),
			"keepaliveRetries":   c.Keepalive.Retries,
			"keepaliveEnabled":   c.Keepalive.Enabled,
			"userTimeoutEnabled": c.Keepalive.UserTimeoutEnabled,
		},
		"xdsHeaders":            headersDump(c.XDS.Headers),
		"caHeaders":             headersDump(c.CA.Headers),
		"localhostAppTunnel":    c.LocalhostAppTunnel,
		"ztunnelIdentity":       selfID,
		"ztunnelWorkload":       self,
		"ipv6Enabled":           c.IPv6Enabled,
		"crlPath":               optString(c.CRLPath),
		"enableEnhancedBaggage": c.EnableResponseBaggage,

		// Ours.
		"localCaDir":       optString(c.CA.LocalDir),
		"tls12Enabled":     c.TLS12Enabled,
		"compliancePolicy": string(c.CompliancePolicy),
		"logFormat":        c.Log.Format.String(),
		"logLevel":         c.Log.Level.String(),
		"authSource":       c.Auth.String(),
	}
}

func optString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func durationDump(d time.Duration) map[string]any {
	return map[string]any{"secs": uint64(d / time.Second), "nanos": uint32(d % time.Second)}
}

func modeDump(m ProxyMode) string {
	if m == ModeDedicated {
		return "Dedicated"
	}
	return "Shared"
}

func workloadDump(w WorkloadInfo) map[string]any {
	return map[string]any{"name": w.Name, "namespace": w.Namespace, "serviceAccount": w.ServiceAccount}
}

func (c *Config) addressDump(a Address) map[string]any {
	if a.Localhost {
		return map[string]any{"Localhost": []any{c.IPv6Enabled, a.Port}}
	}
	return map[string]any{"SocketAddr": a.String()}
}

func rootCertDump(r RootCert) any {
	switch r.Kind {
	case RootCertSystem:
		return "Default"
	case RootCertPEM:
		return map[string]any{"Static": []any{}}
	}
	return map[string]any{"File": r.Path}
}

// headersDump lists headers as ztunnel does, [[name, value], ...], sorted by
// name, with credential-like values redacted.
func headersDump(h map[string]string) [][2]string {
	out := make([][2]string, 0, len(h))
	for k, v := range h {
		if sensitiveHeader(k) {
			v = redactedValue
		}
		out = append(out, [2]string{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

func sensitiveHeader(name string) bool {
	for _, s := range []string{"authorization", "cookie", "token", "secret", "password", "key", "credential"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}
