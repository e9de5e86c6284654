package workload

import (
	"fmt"
	"strings"
)

// The enumerations below are small integers on the data path and strings in
// YAML and JSON, spelled as ztunnel's serde encoding spells them. The zero
// value of each is ztunnel's default for the field.

// parseEnum maps text to its index in names, or reports the accepted forms.
func parseEnum(kind string, names []string, text []byte) (uint8, error) {
	for i, n := range names {
		if n != "" && n == string(text) {
			return uint8(i), nil
		}
	}
	valid := make([]string, 0, len(names))
	for _, n := range names {
		if n != "" {
			valid = append(valid, n)
		}
	}
	return 0, fmt.Errorf("unknown %s %q (want one of %s)", kind, text, strings.Join(valid, ", "))
}

func enumName(names []string, v uint8) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%d", v)
}

// InboundProtocol is the protocol a workload accepts from its peers' proxies.
type InboundProtocol uint8

const (
	// ProtocolTCP means plaintext connections straight to the workload's port (the default).
	ProtocolTCP InboundProtocol = iota
	// ProtocolHBONE means mTLS HTTP/2 CONNECT to the workload's port 15008.
	ProtocolHBONE
)

var inboundProtocolNames = []string{"TCP", "HBONE"}

func (p InboundProtocol) String() string { return enumName(inboundProtocolNames, uint8(p)) }

// MarshalText implements encoding.TextMarshaler.
func (p InboundProtocol) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *InboundProtocol) UnmarshalText(b []byte) error {
	v, err := parseEnum("protocol", inboundProtocolNames, b)
	*p = InboundProtocol(v)
	return err
}

// NetworkMode says whether a workload has its own network namespace.
type NetworkMode uint8

const (
	// Standard is a pod with its own IPs (the default).
	Standard NetworkMode = iota
	// HostNetwork shares the node's IPs; such workloads are not indexed by address.
	HostNetwork
)

var networkModeNames = []string{"Standard", "HostNetwork"}

func (m NetworkMode) String() string { return enumName(networkModeNames, uint8(m)) }

// MarshalText implements encoding.TextMarshaler.
func (m NetworkMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *NetworkMode) UnmarshalText(b []byte) error {
	v, err := parseEnum("networkMode", networkModeNames, b)
	*m = NetworkMode(v)
	return err
}

// HealthStatus is a workload's (and so an endpoint's) health.
type HealthStatus uint8

const (
	// Healthy is the default.
	Healthy HealthStatus = iota
	// Unhealthy endpoints are left out of a service unless its load balancer allows all.
	Unhealthy
)

var healthStatusNames = []string{"Healthy", "Unhealthy"}

func (h HealthStatus) String() string { return enumName(healthStatusNames, uint8(h)) }

// MarshalText implements encoding.TextMarshaler.
func (h HealthStatus) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *HealthStatus) UnmarshalText(b []byte) error {
	v, err := parseEnum("status", healthStatusNames, b)
	*h = HealthStatus(v)
	return err
}

// TunnelProtocol is the protocol of an ApplicationTunnel.
type TunnelProtocol uint8

const (
	// TunnelNone: the application receives plain connections.
	TunnelNone TunnelProtocol = iota
	// TunnelProxy: the application speaks PROXY protocol.
	TunnelProxy
)

var tunnelProtocolNames = []string{"NONE", "PROXY"}

func (p TunnelProtocol) String() string { return enumName(tunnelProtocolNames, uint8(p)) }

// MarshalText implements encoding.TextMarshaler.
func (p TunnelProtocol) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *TunnelProtocol) UnmarshalText(b []byte) error {
	v, err := parseEnum("applicationTunnel protocol", tunnelProtocolNames, b)
	*p = TunnelProtocol(v)
	return err
}

// LoadBalancerMode selects how endpoints are picked against routing preferences.
type LoadBalancerMode uint8

const (
	// LBStandard ignores routing preferences.
	LBStandard LoadBalancerMode = iota
	// LBStrict only picks endpoints matching every preference.
	LBStrict
	// LBFailover prefers matching endpoints, falling back to others.
	LBFailover
	// LBPassthrough does no endpoint selection: traffic goes to the original destination.
	LBPassthrough
)

var lbModeNames = []string{"Standard", "Strict", "Failover", "Passthrough"}

func (m LoadBalancerMode) String() string { return enumName(lbModeNames, uint8(m)) }

// MarshalText implements encoding.TextMarshaler.
func (m LoadBalancerMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *LoadBalancerMode) UnmarshalText(b []byte) error {
	v, err := parseEnum("loadBalancer mode", lbModeNames, b)
	*m = LoadBalancerMode(v)
	return err
}

// HealthPolicy says which endpoints a service keeps.
type HealthPolicy uint8

const (
	// OnlyHealthy keeps healthy endpoints only (the default).
	OnlyHealthy HealthPolicy = iota
	// AllowAll keeps unhealthy endpoints too.
	AllowAll
)

var healthPolicyNames = []string{"OnlyHealthy", "AllowAll"}

func (h HealthPolicy) String() string { return enumName(healthPolicyNames, uint8(h)) }

// MarshalText implements encoding.TextMarshaler.
func (h HealthPolicy) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *HealthPolicy) UnmarshalText(b []byte) error {
	v, err := parseEnum("loadBalancer healthPolicy", healthPolicyNames, b)
	*h = HealthPolicy(v)
	return err
}

// RoutingScope is one locality dimension of a load balancer's routing preferences.
type RoutingScope uint8

// Routing scopes, in ztunnel's spelling.
const (
	ScopeRegion RoutingScope = iota
	ScopeZone
	ScopeSubzone
	ScopeNode
	ScopeCluster
	ScopeNetwork
)

var routingScopeNames = []string{"Region", "Zone", "Subzone", "Node", "Cluster", "Network"}

func (s RoutingScope) String() string { return enumName(routingScopeNames, uint8(s)) }

// MarshalText implements encoding.TextMarshaler.
func (s RoutingScope) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *RoutingScope) UnmarshalText(b []byte) error {
	v, err := parseEnum("routing preference", routingScopeNames, b)
	*s = RoutingScope(v)
	return err
}

// IPFamily restricts which address families of a service are used. The zero
// value means automatic (ztunnel's absent field) and is omitted from JSON.
type IPFamily uint8

// IP families; IPFamilyAutomatic is the zero value.
const (
	IPFamilyAutomatic IPFamily = iota
	IPFamilyDual
	IPFamilyIPv4
	IPFamilyIPv6
)

var ipFamilyNames = []string{"", "Dual", "IPv4", "IPv6"}

func (f IPFamily) String() string { return enumName(ipFamilyNames, uint8(f)) }

// MarshalText implements encoding.TextMarshaler.
func (f IPFamily) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (f *IPFamily) UnmarshalText(b []byte) error {
	v, err := parseEnum("ipFamilies", ipFamilyNames, b)
	*f = IPFamily(v)
	return err
}

// Visibility controls which clients may resolve a service.
type Visibility uint8

const (
	// Public services are visible to every client (the default).
	Public Visibility = iota
	// NamespaceVisible services are visible to clients of their own namespace only.
	NamespaceVisible
)

var visibilityNames = []string{"Public", "Namespace"}

func (v Visibility) String() string { return enumName(visibilityNames, uint8(v)) }

// MarshalText implements encoding.TextMarshaler.
func (v Visibility) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (v *Visibility) UnmarshalText(b []byte) error {
	x, err := parseEnum("visibility", visibilityNames, b)
	*v = Visibility(x)
	return err
}
