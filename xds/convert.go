package xds

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ztunnel-go/ztunnel/policy"
	"github.com/ztunnel-go/ztunnel/workload"
	"github.com/ztunnel-go/ztunnel/xds/pb/securitypb"
	"github.com/ztunnel-go/ztunnel/xds/pb/workloadpb"
)

// The functions below turn istiod's protobuf resources into store values. Each is pure: it
// reads only its argument, shares no memory with it, and leaves validation of the result's
// semantics (required fields, consistency) to the store, exactly as the local YAML path does,
// so both sources yield the same store contents. They fail only on what cannot be represented:
// malformed IPs, out-of-range ports, unknown enum values.

// defaultClusterID is what ztunnel records for a workload whose cluster_id is empty.
const defaultClusterID = "Kubernetes"

// ConvertWorkload converts an istio.workload.Workload.
func ConvertWorkload(pb *workloadpb.Workload) (*workload.Workload, error) {
	if pb == nil {
		return nil, errors.New("workload is empty")
	}
	w := &workload.Workload{
		UID:                   pb.GetUid(),
		Name:                  pb.GetName(),
		Namespace:             pb.GetNamespace(),
		TrustDomain:           pb.GetTrustDomain(),
		ServiceAccount:        pb.GetServiceAccount(),
		Network:               pb.GetNetwork(),
		WorkloadName:          pb.GetWorkloadName(),
		CanonicalName:         pb.GetCanonicalName(),
		CanonicalRevision:     pb.GetCanonicalRevision(),
		Hostname:              pb.GetHostname(),
		Node:                  pb.GetNode(),
		NativeTunnel:          pb.GetNativeTunnel(),
		ClusterID:             pb.GetClusterId(),
		AuthorizationPolicies: slices.Clone(pb.GetAuthorizationPolicies()),
		Capacity:              1,
	}
	if w.ClusterID == "" {
		w.ClusterID = defaultClusterID
	}
	if c := pb.GetCapacity(); c != nil {
		w.Capacity = c.GetValue()
	}
	if n := len(pb.GetAddresses()); n > 0 {
		w.WorkloadIPs = make([]netip.Addr, 0, n)
		for i, b := range pb.GetAddresses() {
			ip, err := bytesToIP(b)
			if err != nil {
				return nil, fmt.Errorf("addresses[%d]: %w", i, err)
			}
			w.WorkloadIPs = append(w.WorkloadIPs, ip)
		}
	}
	switch pb.GetTunnelProtocol() {
	case workloadpb.TunnelProtocol_NONE:
		w.Protocol = workload.ProtocolTCP
	case workloadpb.TunnelProtocol_HBONE:
		w.Protocol = workload.ProtocolHBONE
	default:
		return nil, fmt.Errorf("unsupported tunnel protocol %v", pb.GetTunnelProtocol())
	}
	switch pb.GetNetworkMode() {
	case workloadpb.NetworkMode_STANDARD:
		w.NetworkMode = workload.Standard
	case workloadpb.NetworkMode_HOST_NETWORK:
		w.NetworkMode = workload.HostNetwork
	default:
		return nil, fmt.Errorf("unknown network mode %d", pb.GetNetworkMode())
	}
	switch pb.GetStatus() {
	case workloadpb.WorkloadStatus_HEALTHY:
		w.Status = workload.Healthy
	case workloadpb.WorkloadStatus_UNHEALTHY:
		w.Status = workload.Unhealthy
	default:
		return nil, fmt.Errorf("unknown status %d", pb.GetStatus())
	}
	name, ok := workloadpb.WorkloadType_name[int32(pb.GetWorkloadType())]
	if !ok {
		return nil, fmt.Errorf("unknown workload type %d", pb.GetWorkloadType())
	}
	w.WorkloadType = strings.ToLower(name)

	var err error
	if w.Waypoint, err = convertGateway(pb.GetWaypoint()); err != nil {
		return nil, fmt.Errorf("waypoint: %w", err)
	}
	if w.NetworkGateway, err = convertGateway(pb.GetNetworkGateway()); err != nil {
		return nil, fmt.Errorf("network_gateway: %w", err)
	}
	if at := pb.GetApplicationTunnel(); at != nil {
		t := &workload.ApplicationTunnel{}
		switch at.GetProtocol() {
		case workloadpb.ApplicationTunnel_NONE:
			t.Protocol = workload.TunnelNone
		case workloadpb.ApplicationTunnel_PROXY:
			t.Protocol = workload.TunnelProxy
		default:
			return nil, fmt.Errorf("application_tunnel: unknown protocol %d", at.GetProtocol())
		}
		if t.Port, err = port16(at.GetPort()); err != nil {
			return nil, fmt.Errorf("application_tunnel: %w", err)
		}
		w.ApplicationTunnel = t
	}
	if l := pb.GetLocality(); l != nil {
		w.Locality = workload.Locality{Region: l.GetRegion(), Zone: l.GetZone(), Subzone: l.GetSubzone()}
	}
	if svcs := pb.GetServices(); len(svcs) > 0 {
		// Sorted like the local path, so both give the same order.
		keys := make([]string, 0, len(svcs))
		for k := range svcs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		w.Services = make([]workload.NamespacedHostname, 0, len(keys))
		for _, k := range keys {
			n, err := workload.ParseNamespacedHostname(k)
			if err != nil {
				return nil, fmt.Errorf("services: %w", err)
			}
			w.Services = append(w.Services, n)
			ports, err := convertPorts(svcs[k].GetPorts())
			if err != nil {
				return nil, fmt.Errorf("services[%s]: %w", k, err)
			}
			if len(ports) > 0 {
				if w.ServicePorts == nil {
					w.ServicePorts = make(map[workload.NamespacedHostname]map[uint16]uint16, len(svcs))
				}
				w.ServicePorts[n] = ports
			}
		}
	}
	return w, nil
}

// ConvertService converts an istio.workload.Service. Its endpoints come from the workloads
// that name it; the resource itself carries none.
func ConvertService(pb *workloadpb.Service) (*workload.Service, error) {
	if pb == nil {
		return nil, errors.New("service is empty")
	}
	s := &workload.Service{
		Name:            pb.GetName(),
		Namespace:       pb.GetNamespace(),
		Hostname:        pb.GetHostname(),
		SubjectAltNames: slices.Clone(pb.GetSubjectAltNames()),
		Canonical:       pb.GetCanonical(),
	}
	for i, a := range pb.GetAddresses() {
		ip, err := bytesToIP(a.GetAddress())
		if err != nil {
			return nil, fmt.Errorf("addresses[%d]: %w", i, err)
		}
		if a.Length != nil && int(a.GetLength()) != ip.BitLen() {
			if int(a.GetLength()) > ip.BitLen() {
				return nil, fmt.Errorf("addresses[%d]: prefix length %d invalid for %s", i, a.GetLength(), ip)
			}
			s.CIDRVIPs = append(s.CIDRVIPs, workload.NetworkCIDR{Network: a.GetNetwork(), CIDR: netip.PrefixFrom(ip, int(a.GetLength()))})
			continue
		}
		s.VIPs = append(s.VIPs, workload.NetworkAddress{Network: a.GetNetwork(), Address: ip})
	}
	var err error
	if s.Ports, err = convertPorts(pb.GetPorts()); err != nil {
		return nil, err
	}
	if s.Waypoint, err = convertGateway(pb.GetWaypoint()); err != nil {
		return nil, fmt.Errorf("waypoint: %w", err)
	}
	for i, ww := range pb.GetWeightedWaypoints() {
		if ww.GetDestination() == nil {
			return nil, fmt.Errorf("weighted_waypoints[%d]: no destination", i)
		}
		g, err := convertGateway(ww.GetDestination())
		if err != nil {
			return nil, fmt.Errorf("weighted_waypoints[%d]: %w", i, err)
		}
		s.WeightedWaypoints = append(s.WeightedWaypoints, workload.WeightedWaypoint{Destination: *g, Weight: ww.GetWeight()})
	}
	if lb := pb.GetLoadBalancing(); lb != nil {
		l := &workload.LoadBalancer{}
		for _, sc := range lb.GetRoutingPreference() {
			// The protobuf enum counts from an unspecified 0; ours from Region.
			if sc <= workloadpb.LoadBalancing_UNSPECIFIED_SCOPE || sc > workloadpb.LoadBalancing_NETWORK {
				return nil, fmt.Errorf("load_balancing: unknown routing preference %d", sc)
			}
			l.RoutingPreferences = append(l.RoutingPreferences, workload.RoutingScope(sc-1))
		}
		switch lb.GetMode() {
		case workloadpb.LoadBalancing_UNSPECIFIED_MODE:
			l.Mode = workload.LBStandard
		case workloadpb.LoadBalancing_STRICT:
			l.Mode = workload.LBStrict
		case workloadpb.LoadBalancing_FAILOVER:
			l.Mode = workload.LBFailover
		case workloadpb.LoadBalancing_PASSTHROUGH:
			l.Mode = workload.LBPassthrough
		default:
			return nil, fmt.Errorf("load_balancing: unknown mode %d", lb.GetMode())
		}
		switch lb.GetHealthPolicy() {
		case workloadpb.LoadBalancing_ONLY_HEALTHY:
			l.HealthPolicy = workload.OnlyHealthy
		case workloadpb.LoadBalancing_ALLOW_ALL:
			l.HealthPolicy = workload.AllowAll
		default:
			return nil, fmt.Errorf("load_balancing: unknown health policy %d", lb.GetHealthPolicy())
		}
		s.LoadBalancer = l
	}
	switch pb.GetIpFamilies() {
	case workloadpb.IPFamilies_AUTOMATIC:
		s.IPFamilies = workload.IPFamilyAutomatic
	case workloadpb.IPFamilies_IPV4_ONLY:
		s.IPFamilies = workload.IPFamilyIPv4
	case workloadpb.IPFamilies_IPV6_ONLY:
		s.IPFamilies = workload.IPFamilyIPv6
	case workloadpb.IPFamilies_DUAL:
		s.IPFamilies = workload.IPFamilyDual
	default:
		return nil, fmt.Errorf("unknown ip families %d", pb.GetIpFamilies())
	}
	// Unknown visibilities fail open to public, as ztunnel does.
	if pb.GetVisibility() == workloadpb.Service_NAMESPACE {
		s.Visibility = workload.NamespaceVisible
	}
	return s, nil
}

// ConvertAuthorization converts an istio.security.Authorization. String matches without a
// kind are dropped, as ztunnel does.
func ConvertAuthorization(pb *securitypb.Authorization) (*policy.Authorization, error) {
	if pb == nil {
		return nil, errors.New("authorization is empty")
	}
	a := &policy.Authorization{Name: pb.GetName(), Namespace: pb.GetNamespace(), DryRun: pb.GetDryRun()}
	switch pb.GetScope() {
	case securitypb.Scope_GLOBAL:
		a.Scope = policy.ScopeGlobal
	case securitypb.Scope_NAMESPACE:
		a.Scope = policy.ScopeNamespace
	case securitypb.Scope_WORKLOAD_SELECTOR:
		a.Scope = policy.ScopeWorkloadSelector
	default:
		return nil, fmt.Errorf("unknown scope %d", pb.GetScope())
	}
	switch pb.GetAction() {
	case securitypb.Action_ALLOW:
		a.Action = policy.ActionAllow
	case securitypb.Action_DENY:
		a.Action = policy.ActionDeny
	default:
		return nil, fmt.Errorf("unknown action %d", pb.GetAction())
	}
	a.Rules = make([][][]policy.Match, len(pb.GetRules()))
	for r, rule := range pb.GetRules() {
		clauses := make([][]policy.Match, len(rule.GetClauses()))
		for c, clause := range rule.GetClauses() {
			matches := make([]policy.Match, len(clause.GetMatches()))
			for i, m := range clause.GetMatches() {
				if err := convertMatch(m, &matches[i]); err != nil {
					return nil, fmt.Errorf("rules[%d].clauses[%d].matches[%d]: %w", r, c, i, err)
				}
			}
			clauses[c] = matches
		}
		a.Rules[r] = clauses
	}
	return a, nil
}

func convertMatch(pb *securitypb.Match, m *policy.Match) error {
	m.Namespaces = stringMatches(pb.GetNamespaces())
	m.NotNamespaces = stringMatches(pb.GetNotNamespaces())
	m.Principals = stringMatches(pb.GetPrincipals())
	m.NotPrincipals = stringMatches(pb.GetNotPrincipals())
	m.ServiceAccounts = serviceAccounts(pb.GetServiceAccounts())
	m.NotServiceAccounts = serviceAccounts(pb.GetNotServiceAccounts())
	var err error
	if m.SourceIPs, err = prefixes("source_ips", pb.GetSourceIps()); err != nil {
		return err
	}
	if m.NotSourceIPs, err = prefixes("not_source_ips", pb.GetNotSourceIps()); err != nil {
		return err
	}
	if m.DestinationIPs, err = prefixes("destination_ips", pb.GetDestinationIps()); err != nil {
		return err
	}
	if m.NotDestinationIPs, err = prefixes("not_destination_ips", pb.GetNotDestinationIps()); err != nil {
		return err
	}
	if m.DestinationPorts, err = ports16("destination_ports", pb.GetDestinationPorts()); err != nil {
		return err
	}
	if m.NotDestinationPorts, err = ports16("not_destination_ports", pb.GetNotDestinationPorts()); err != nil {
		return err
	}
	return nil
}

func stringMatches(in []*securitypb.StringMatch) []policy.StringMatch {
	if len(in) == 0 {
		return nil
	}
	out := make([]policy.StringMatch, 0, len(in))
	for _, s := range in {
		switch t := s.GetMatchType().(type) {
		case *securitypb.StringMatch_Exact:
			out = append(out, policy.Exact(t.Exact))
		case *securitypb.StringMatch_Prefix:
			out = append(out, policy.Prefix(t.Prefix))
		case *securitypb.StringMatch_Suffix:
			out = append(out, policy.Suffix(t.Suffix))
		case *securitypb.StringMatch_Presence:
			out = append(out, policy.Presence())
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func serviceAccounts(in []*securitypb.ServiceAccountMatch) []policy.ServiceAccountMatch {
	if len(in) == 0 {
		return nil
	}
	out := make([]policy.ServiceAccountMatch, len(in))
	for i, s := range in {
		out[i] = policy.ServiceAccountMatch{Namespace: s.GetNamespace(), ServiceAccount: s.GetServiceAccount()}
	}
	return out
}

func prefixes(field string, in []*securitypb.Address) ([]netip.Prefix, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]netip.Prefix, len(in))
	for i, a := range in {
		ip, err := bytesToIP(a.GetAddress())
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		if int(a.GetLength()) > ip.BitLen() {
			return nil, fmt.Errorf("%s[%d]: prefix length %d invalid for %s", field, i, a.GetLength(), ip)
		}
		out[i] = netip.PrefixFrom(ip, int(a.GetLength()))
	}
	return out, nil
}

func ports16(field string, in []uint32) ([]uint16, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]uint16, len(in))
	for i, p := range in {
		v, err := port16(p)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		out[i] = v
	}
	return out, nil
}

func convertPorts(in []*workloadpb.Port) (map[uint16]uint16, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[uint16]uint16, len(in))
	for i, p := range in {
		sp, err := port16(p.GetServicePort())
		if err != nil {
			return nil, fmt.Errorf("ports[%d]: service port: %w", i, err)
		}
		tp, err := port16(p.GetTargetPort())
		if err != nil {
			return nil, fmt.Errorf("ports[%d]: target port: %w", i, err)
		}
		out[sp] = tp
	}
	return out, nil
}

func convertGateway(pb *workloadpb.GatewayAddress) (*workload.GatewayAddress, error) {
	if pb == nil {
		return nil, nil
	}
	port, err := port16(pb.GetHboneMtlsPort())
	if err != nil {
		return nil, fmt.Errorf("hbone_mtls_port: %w", err)
	}
	g := &workload.GatewayAddress{HBONEMTLSPort: port}
	switch d := pb.GetDestination().(type) {
	case *workloadpb.GatewayAddress_Address:
		ip, err := bytesToIP(d.Address.GetAddress())
		if err != nil {
			return nil, err
		}
		g.Destination.Address = &workload.NetworkAddress{Network: d.Address.GetNetwork(), Address: ip}
	case *workloadpb.GatewayAddress_Hostname:
		g.Destination.Hostname = &workload.NamespacedHostname{Namespace: d.Hostname.GetNamespace(), Hostname: d.Hostname.GetHostname()}
	default:
		return nil, errors.New("no destination")
	}
	return g, nil
}

func port16(p uint32) (uint16, error) {
	if p > 0xffff {
		return 0, fmt.Errorf("port %d out of range", p)
	}
	return uint16(p), nil
}

// bytesToIP reads an IP in its 4- or 16-byte network form.
func bytesToIP(b []byte) (netip.Addr, error) {
	switch len(b) {
	case 4:
		return netip.AddrFrom4([4]byte(b)), nil
	case 16:
		return netip.AddrFrom16([16]byte(b)), nil
	}
	return netip.Addr{}, fmt.Errorf("IP address of %d bytes (want 4 or 16)", len(b))
}
