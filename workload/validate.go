package workload

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Resource kinds named by ResourceError.
const (
	KindWorkload = "workload"
	KindService  = "service"
	KindPolicy   = "policy"
)

// ResourceError says why one resource of an Update was rejected. Apply
// returns them joined (errors.Join); Rejected lists them back.
type ResourceError struct {
	Kind string // KindWorkload, KindService or KindPolicy
	Key  string // workload UID, service "ns/hostname" or policy "ns/name"; may be empty when the key itself is missing
	Err  error
}

func (e *ResourceError) Error() string { return fmt.Sprintf("%s %q: %v", e.Kind, e.Key, e.Err) }

func (e *ResourceError) Unwrap() error { return e.Err }

// Rejected lists the ResourceErrors inside err (as returned by Apply, Replace
// or Update.Validate), so a control-plane client can reject each alone.
func Rejected(err error) []*ResourceError {
	var out []*ResourceError
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if re, ok := e.(*ResourceError); ok {
			out = append(out, re)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// Validate reports why the workload cannot be stored, or nil. It does not
// modify w.
func (w *Workload) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if w.UID == "" {
		bad("uid is empty")
	}
	if w.Namespace == "" {
		bad("namespace is empty")
	}
	if strings.Contains(w.Network, "/") {
		bad("network %q contains '/'", w.Network)
	}
	for i, ip := range w.WorkloadIPs {
		if err := checkIP(ip); err != nil {
			bad("workloadIps[%d]: %w", i, err)
			continue
		}
		for _, prev := range w.WorkloadIPs[:i] {
			if prev.Unmap() == ip.Unmap() {
				bad("workloadIps[%d]: duplicate address %v", i, ip)
				break
			}
		}
	}
	if err := w.Waypoint.validate(); err != nil {
		bad("waypoint: %w", err)
	}
	if err := w.NetworkGateway.validate(); err != nil {
		bad("networkGateway: %w", err)
	}
	if w.Protocol > ProtocolHBONE {
		bad("protocol %d is unknown", w.Protocol)
	}
	if w.NetworkMode > HostNetwork {
		bad("networkMode %d is unknown", w.NetworkMode)
	}
	if w.Status > Unhealthy {
		bad("status %d is unknown", w.Status)
	}
	for i, s := range w.Services {
		if err := checkNamespacedHostname(s); err != nil {
			bad("services[%d]: %w", i, err)
		}
		for _, prev := range w.Services[:i] {
			if prev == s {
				bad("services[%d]: duplicate %v", i, s)
				break
			}
		}
	}
	for k := range w.ServicePorts {
		found := false
		for _, s := range w.Services {
			if s == k {
				found = true
				break
			}
		}
		if !found {
			bad("servicePorts: %v is not listed in services", k)
		}
	}
	for i, p := range w.AuthorizationPolicies {
		if p == "" {
			bad("authorizationPolicies[%d] is empty", i)
		}
	}
	return errors.Join(errs...)
}

// Validate reports why the service cannot be stored, or nil. It does not
// modify s.
func (s *Service) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if err := checkNamespacedHostname(s.NamespacedHostname()); err != nil {
		bad("%w", err)
	}
	for i, v := range s.VIPs {
		if strings.Contains(v.Network, "/") {
			bad("vips[%d]: network %q contains '/'", i, v.Network)
		}
		if err := checkIP(v.Address); err != nil {
			bad("vips[%d]: %w", i, err)
		}
	}
	for i, c := range s.CIDRVIPs {
		if strings.Contains(c.Network, "/") {
			bad("cidrVips[%d]: network %q contains '/'", i, c.Network)
		}
		if !c.CIDR.IsValid() {
			bad("cidrVips[%d]: invalid prefix", i)
		} else if c.CIDR.Addr().Zone() != "" {
			bad("cidrVips[%d]: prefix %v has a zone", i, c.CIDR)
		}
	}
	for uid, ep := range s.Endpoints {
		switch {
		case uid == "":
			bad("endpoints: empty workload uid")
		case ep == nil:
			bad("endpoints[%q] is null", uid)
		case ep.WorkloadUID != "" && ep.WorkloadUID != uid:
			bad("endpoints[%q]: workloadUid %q differs from its key", uid, ep.WorkloadUID)
		case ep.Status > Unhealthy:
			bad("endpoints[%q]: status %d is unknown", uid, ep.Status)
		}
	}
	if err := s.Waypoint.validate(); err != nil {
		bad("waypoint: %w", err)
	}
	for i := range s.WeightedWaypoints {
		if err := s.WeightedWaypoints[i].Destination.validate(); err != nil {
			bad("weightedWaypoints[%d]: %w", i, err)
		}
	}
	if lb := s.LoadBalancer; lb != nil {
		if lb.Mode > LBPassthrough {
			bad("loadBalancer: mode %d is unknown", lb.Mode)
		}
		if lb.HealthPolicy > AllowAll {
			bad("loadBalancer: healthPolicy %d is unknown", lb.HealthPolicy)
		}
		for i, r := range lb.RoutingPreferences {
			if r > ScopeNetwork {
				bad("loadBalancer: routingPreferences[%d] %d is unknown", i, r)
			}
		}
	}
	if s.IPFamilies > IPFamilyIPv6 {
		bad("ipFamilies %d is unknown", s.IPFamilies)
	}
	if s.Visibility > NamespaceVisible {
		bad("visibility %d is unknown", s.Visibility)
	}
	return errors.Join(errs...)
}

// validate checks a gateway address; a nil address is valid (absent).
func (g *GatewayAddress) validate() error {
	if g == nil {
		return nil
	}
	d := g.Destination
	switch {
	case d.Address != nil && d.Hostname != nil:
		return errors.New("destination has both an address and a hostname")
	case d.Address != nil:
		if strings.Contains(d.Address.Network, "/") {
			return fmt.Errorf("destination network %q contains '/'", d.Address.Network)
		}
		return checkIP(d.Address.Address)
	case d.Hostname != nil:
		return checkNamespacedHostname(*d.Hostname)
	}
	return errors.New("destination is empty")
}

func checkIP(ip netip.Addr) error {
	if !ip.IsValid() {
		return errors.New("invalid IP address")
	}
	if ip.Zone() != "" {
		return fmt.Errorf("address %v has a zone", ip)
	}
	return nil
}

func checkNamespacedHostname(n NamespacedHostname) error {
	switch {
	case n.Namespace == "":
		return errors.New("namespace is empty")
	case n.Hostname == "":
		return errors.New("hostname is empty")
	case strings.Contains(n.Namespace, "/"):
		return fmt.Errorf("namespace %q contains '/'", n.Namespace)
	}
	return nil
}
