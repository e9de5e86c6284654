package workload

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// Defaults ztunnel applies when a workload leaves its identity fields empty.
const (
	DefaultTrustDomain    = "cluster.local"
	DefaultServiceAccount = "default"
)

// Workload is one addressable workload (usually a pod) in ztunnel's serde
// shape. Once passed to the Store it is owned by the store and immutable:
// readers share it through snapshots.
type Workload struct {
	WorkloadIPs    []netip.Addr    `json:"workloadIps" yaml:"workloadIps"`
	Waypoint       *GatewayAddress `json:"waypoint,omitempty" yaml:"waypoint"`
	NetworkGateway *GatewayAddress `json:"networkGateway,omitempty" yaml:"networkGateway"`
	// Protocol is what the workload accepts inbound: ProtocolTCP (default) or ProtocolHBONE.
	Protocol    InboundProtocol `json:"protocol" yaml:"protocol"`
	NetworkMode NetworkMode     `json:"networkMode" yaml:"networkMode"`

	// UID is the store key (e.g. "cluster1//v1/Pod/default/name"); required.
	UID       string `json:"uid,omitempty" yaml:"uid"`
	Name      string `json:"name" yaml:"name"`
	Namespace string `json:"namespace" yaml:"namespace"`
	// TrustDomain and ServiceAccount form the identity; empty means
	// DefaultTrustDomain and DefaultServiceAccount (see Identity).
	TrustDomain    string `json:"trustDomain,omitempty" yaml:"trustDomain"`
	ServiceAccount string `json:"serviceAccount,omitempty" yaml:"serviceAccount"`
	Network        string `json:"network,omitempty" yaml:"network"`

	WorkloadName      string `json:"workloadName,omitempty" yaml:"workloadName"`
	WorkloadType      string `json:"workloadType,omitempty" yaml:"workloadType"`
	CanonicalName     string `json:"canonicalName,omitempty" yaml:"canonicalName"`
	CanonicalRevision string `json:"canonicalRevision,omitempty" yaml:"canonicalRevision"`
	Hostname          string `json:"hostname,omitempty" yaml:"hostname"`
	Node              string `json:"node,omitempty" yaml:"node"`

	NativeTunnel      bool               `json:"nativeTunnel,omitempty" yaml:"nativeTunnel"`
	ApplicationTunnel *ApplicationTunnel `json:"applicationTunnel,omitempty" yaml:"applicationTunnel"`

	// AuthorizationPolicies lists the keys ("ns/name") of the
	// workload-selector policies that apply to this workload.
	AuthorizationPolicies []string `json:"authorizationPolicies,omitempty" yaml:"authorizationPolicies"`

	Status    HealthStatus `json:"status" yaml:"status"`
	ClusterID string       `json:"clusterId" yaml:"clusterId"`
	Locality  Locality     `json:"locality,omitzero" yaml:"locality"`

	// Services lists the services this workload is an endpoint of. In the
	// local YAML config the "services" key is the LocalWorkload's map form
	// instead (see package xds), hence no YAML name here.
	Services []NamespacedHostname `json:"services,omitempty" yaml:"-"`

	// Capacity weighs the workload in load balancing; ztunnel's default is 1
	// (applied by UnmarshalJSON and by the local-config parser).
	Capacity uint32 `json:"capacity" yaml:"capacity"`

	// ServicePorts gives this workload's own port map (service port ->
	// target port) for some of its Services; the store copies it into the
	// service's Endpoint. Every key must be listed in Services. Not part of
	// the serde shape: ztunnel shows it as the services' endpoints.
	ServicePorts map[NamespacedHostname]map[uint16]uint16 `json:"-" yaml:"-"`

	// Derived marks a workload made from a peer's baggage header (FromBaggage), not one the
	// control plane sent: the proxy reports it in telemetry and nowhere else.
	Derived bool `json:"-" yaml:"-"`

	// baggage caches Baggage(); set by the store (normalizeWorkload).
	baggage string
}

// Identity is the workload's SPIFFE identity, with ztunnel's defaults for
// an empty trust domain or service account.
func (w *Workload) Identity() identity.ID {
	td, sa := w.TrustDomain, w.ServiceAccount
	if td == "" {
		td = DefaultTrustDomain
	}
	if sa == "" {
		sa = DefaultServiceAccount
	}
	return identity.ID{TrustDomain: td, Namespace: w.Namespace, ServiceAccount: sa}
}

// UnmarshalJSON decodes ztunnel's JSON shape, defaulting capacity to 1.
func (w *Workload) UnmarshalJSON(b []byte) error {
	type plain Workload // no methods: avoids recursion
	p := plain{Capacity: 1}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*w = Workload(p)
	return nil
}

func (w *Workload) String() string {
	return fmt.Sprintf("Workload{%s with uid %s (%v)}", w.Name, w.UID, w.Protocol)
}

// Locality is a workload's topology position.
type Locality struct {
	Region  string `json:"region" yaml:"region"`
	Zone    string `json:"zone" yaml:"zone"`
	Subzone string `json:"subzone" yaml:"subzone"`
}

// ApplicationTunnel says the workload terminates tunnels itself.
type ApplicationTunnel struct {
	Protocol TunnelProtocol `json:"protocol" yaml:"protocol"`
	// Port is the tunnel's port; 0 means unset.
	Port uint16 `json:"port,omitempty" yaml:"port"`
}

// NetworkAddress is an IP within a network. Its text form is "network/ip"
// ("/10.0.0.1" in the default, empty, network).
type NetworkAddress struct {
	Network string
	Address netip.Addr
}

func (a NetworkAddress) String() string { return a.Network + "/" + a.Address.String() }

// MarshalText implements encoding.TextMarshaler.
func (a NetworkAddress) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *NetworkAddress) UnmarshalText(b []byte) error {
	na, err := ParseNetworkAddress(string(b))
	if err != nil {
		return err
	}
	*a = na
	return nil
}

// ParseNetworkAddress parses "network/ip"; the network is everything
// before the first slash and may be empty.
func ParseNetworkAddress(s string) (NetworkAddress, error) {
	network, ip, ok := strings.Cut(s, "/")
	if !ok {
		return NetworkAddress{}, fmt.Errorf("network address %q: want network/ip", s)
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return NetworkAddress{}, fmt.Errorf("network address %q: %w", s, err)
	}
	return NetworkAddress{Network: network, Address: addr}, nil
}

// NetworkCIDR is a prefix within a network, a service's CIDR VIP.
type NetworkCIDR struct {
	Network string       `json:"network" yaml:"network"`
	CIDR    netip.Prefix `json:"cidr" yaml:"cidr"`
}

func (c NetworkCIDR) String() string { return c.Network + "/" + c.CIDR.String() }

// NamespacedHostname names a service: "namespace/hostname".
type NamespacedHostname struct {
	Namespace string
	Hostname  string
}

func (n NamespacedHostname) String() string { return n.Namespace + "/" + n.Hostname }

// MarshalText implements encoding.TextMarshaler.
func (n NamespacedHostname) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (n *NamespacedHostname) UnmarshalText(b []byte) error {
	v, err := ParseNamespacedHostname(string(b))
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// ParseNamespacedHostname parses "namespace/hostname" (split at the first
// slash; both parts non-empty).
func ParseNamespacedHostname(s string) (NamespacedHostname, error) {
	ns, host, ok := strings.Cut(s, "/")
	if !ok || ns == "" || host == "" {
		return NamespacedHostname{}, fmt.Errorf("namespaced hostname %q: want namespace/hostname", s)
	}
	return NamespacedHostname{Namespace: ns, Hostname: host}, nil
}

// GatewayAddress is how to reach a waypoint or network gateway.
type GatewayAddress struct {
	Destination   GatewayDestination `json:"destination" yaml:"destination"`
	HBONEMTLSPort uint16             `json:"hboneMtlsPort" yaml:"hboneMtlsPort"`
}

// GatewayDestination is either an address or a service hostname; exactly
// one is set. Its text form is "network/ip" when that parses as an
// address, else "namespace/hostname" (ztunnel's untagged serde enum).
type GatewayDestination struct {
	Address  *NetworkAddress
	Hostname *NamespacedHostname
}

func (d GatewayDestination) String() string {
	switch {
	case d.Address != nil:
		return d.Address.String()
	case d.Hostname != nil:
		return d.Hostname.String()
	}
	return ""
}

// MarshalText implements encoding.TextMarshaler.
func (d GatewayDestination) MarshalText() ([]byte, error) {
	if d.Address == nil && d.Hostname == nil {
		return nil, errors.New("gateway destination is empty")
	}
	return []byte(d.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *GatewayDestination) UnmarshalText(b []byte) error {
	if a, err := ParseNetworkAddress(string(b)); err == nil {
		*d = GatewayDestination{Address: &a}
		return nil
	}
	h, err := ParseNamespacedHostname(string(b))
	if err != nil {
		return fmt.Errorf("gateway destination %q: want network/ip or namespace/hostname", b)
	}
	*d = GatewayDestination{Hostname: &h}
	return nil
}
