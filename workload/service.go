package workload

// Service is a named group of endpoints behind VIPs, in ztunnel's serde
// shape. Services in a snapshot are immutable; the store builds a new value
// whenever a service or one of its endpoints changes.
type Service struct {
	Name      string           `json:"name" yaml:"name"`
	Namespace string           `json:"namespace" yaml:"namespace"`
	Hostname  string           `json:"hostname" yaml:"hostname"`
	VIPs      []NetworkAddress `json:"vips" yaml:"vips"`
	CIDRVIPs  []NetworkCIDR    `json:"cidrVips,omitempty" yaml:"cidrVips"`
	// Ports maps service port to target port. A target of 0 means the
	// target port differs per endpoint (named target port): the endpoint's
	// own port map decides, and an endpoint without the port is not used.
	Ports map[uint16]uint16 `json:"ports" yaml:"ports"`

	// Endpoints maps workload UID to endpoint. In a snapshot it holds the
	// endpoints given in the resource itself plus one per workload that
	// names this service, less unhealthy ones unless the load balancer's
	// health policy is AllowAll.
	Endpoints map[string]*Endpoint `json:"endpoints" yaml:"endpoints"`

	SubjectAltNames   []string           `json:"subjectAltNames" yaml:"subjectAltNames"`
	Waypoint          *GatewayAddress    `json:"waypoint,omitempty" yaml:"waypoint"`
	WeightedWaypoints []WeightedWaypoint `json:"weightedWaypoints,omitempty" yaml:"weightedWaypoints"`
	LoadBalancer      *LoadBalancer      `json:"loadBalancer,omitempty" yaml:"loadBalancer"`
	IPFamilies        IPFamily           `json:"ipFamilies,omitzero" yaml:"ipFamilies"`
	Canonical         bool               `json:"canonical" yaml:"canonical"`
	Visibility        Visibility         `json:"visibility" yaml:"visibility"`

	// own holds the endpoints the resource itself carried (set by the store
	// when it takes the resource; shared by every later version).
	own map[string]*Endpoint
}

// Key is the service's store key, "namespace/hostname".
func (s *Service) Key() string { return s.Namespace + "/" + s.Hostname }

// NamespacedHostname returns the service's name as a value.
func (s *Service) NamespacedHostname() NamespacedHostname {
	return NamespacedHostname{Namespace: s.Namespace, Hostname: s.Hostname}
}

// includes reports whether an endpoint with the given health is kept.
func (s *Service) includes(h HealthStatus) bool {
	return h == Healthy || (s.LoadBalancer != nil && s.LoadBalancer.HealthPolicy == AllowAll)
}

// VisibleTo reports whether a client in namespace ns may use the service.
func (s *Service) VisibleTo(ns string) bool {
	return s.Visibility != NamespaceVisible || s.Namespace == ns
}

// TargetPort resolves the port to dial on endpoint ep for service port
// svcPort: the endpoint's own mapping first, then the service's non-zero
// target. ok is false when neither knows the port.
func (s *Service) TargetPort(ep *Endpoint, svcPort uint16) (port uint16, ok bool) {
	if ep != nil {
		if p, found := ep.Port[svcPort]; found {
			return p, true
		}
	}
	if p := s.Ports[svcPort]; p != 0 {
		return p, true
	}
	return 0, false
}

// Endpoint is one workload behind a service.
type Endpoint struct {
	WorkloadUID string `json:"workloadUid" yaml:"workloadUid"`
	// Port is this endpoint's own service port -> target port map; it
	// wins over the service's Ports.
	Port   map[uint16]uint16 `json:"port" yaml:"port"`
	Status HealthStatus      `json:"status" yaml:"status"`
}

// WeightedWaypoint is one candidate of a weighted waypoint set.
type WeightedWaypoint struct {
	Destination GatewayAddress `json:"destination" yaml:"destination"`
	Weight      uint32         `json:"weight" yaml:"weight"`
}

// LoadBalancer is a service's endpoint selection policy.
type LoadBalancer struct {
	RoutingPreferences []RoutingScope   `json:"routingPreferences" yaml:"routingPreferences"`
	Mode               LoadBalancerMode `json:"mode" yaml:"mode"`
	HealthPolicy       HealthPolicy     `json:"healthPolicy" yaml:"healthPolicy"`
}
