package workload

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/policy"
)

func ips(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

func nh(s string) NamespacedHostname {
	n, err := ParseNamespacedHostname(s)
	if err != nil {
		panic(err)
	}
	return n
}

// pod builds a valid workload; svcs are "ns/host" names, each with port map 80->8080.
func pod(uid, addr string, svcs ...string) *Workload {
	w := &Workload{UID: uid, Name: uid, Namespace: "default", Capacity: 1}
	if addr != "" {
		w.WorkloadIPs = ips(addr)
	}
	for _, s := range svcs {
		n := nh(s)
		w.Services = append(w.Services, n)
		if w.ServicePorts == nil {
			w.ServicePorts = map[NamespacedHostname]map[uint16]uint16{}
		}
		w.ServicePorts[n] = map[uint16]uint16{80: 8080}
	}
	return w
}

func svc(key string, vips ...string) *Service {
	n := nh(key)
	s := &Service{Name: n.Hostname, Namespace: n.Namespace, Hostname: n.Hostname, Ports: map[uint16]uint16{80: 8080}}
	for _, v := range vips {
		if strings.Count(v, "/") == 2 { // network/cidr
			network, cidr, _ := strings.Cut(v, "/")
			s.CIDRVIPs = append(s.CIDRVIPs, NetworkCIDR{Network: network, CIDR: netip.MustParsePrefix(cidr)})
			continue
		}
		a, err := ParseNetworkAddress(v)
		if err != nil {
			panic(err)
		}
		s.VIPs = append(s.VIPs, a)
	}
	return s
}

func pol(ns, name string) *policy.Authorization {
	return &policy.Authorization{
		Name: name, Namespace: ns, Scope: policy.ScopeNamespace, Action: policy.ActionAllow,
		Rules: [][][]policy.Match{{{{DestinationPorts: []uint16{80}}}}},
	}
}

func mustApply(t *testing.T, s *Store, u Update) {
	t.Helper()
	if err := s.Apply(u); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func uidOf(w *Workload) string {
	if w == nil {
		return "<nil>"
	}
	return w.UID
}

func keyOf(s *Service) string {
	if s == nil {
		return "<nil>"
	}
	return s.Key()
}

func TestWorkloadLookups(t *testing.T) {
	s := NewStore()
	hostNet := pod("hostnet", "10.0.0.9")
	hostNet.NetworkMode = HostNetwork
	remote := pod("remote", "10.0.0.1")
	remote.Network = "net2"
	tcpPod := pod("c1//Pod/default/tcp", "10.0.0.5")
	hbonePod := pod("c1//Pod/default/hbone", "10.0.0.5")
	hbonePod.Protocol = ProtocolHBONE
	entry := pod("c1/networking.istio.io/WorkloadEntry/default/we", "10.0.0.5")
	entry.Protocol = ProtocolHBONE
	v6 := pod("v6", "fd00::1")
	mustApply(t, s, Update{Workloads: []*Workload{
		pod("a", "10.0.0.1"), remote, hostNet, tcpPod, hbonePod, entry, v6,
	}})
	snap := s.Snapshot()
	tests := []struct {
		name    string
		network string
		ip      string
		want    string
	}{
		{"default network", "", "10.0.0.1", "a"},
		{"other network", "net2", "10.0.0.1", "remote"},
		{"unknown network", "net3", "10.0.0.1", "<nil>"},
		{"host network not indexed", "", "10.0.0.9", "<nil>"},
		{"conflict: ProtocolHBONE pod wins", "", "10.0.0.5", "c1//Pod/default/hbone"},
		{"v4-mapped lookup", "", "::ffff:10.0.0.1", "a"},
		{"ipv6", "", "fd00::1", "v6"},
		{"missing", "", "10.9.9.9", "<nil>"},
	}
	for _, tt := range tests {
		got := uidOf(snap.WorkloadByAddr(tt.network, netip.MustParseAddr(tt.ip)))
		if got != tt.want {
			t.Errorf("%s: WorkloadByAddr(%q, %s) = %s, want %s", tt.name, tt.network, tt.ip, got, tt.want)
		}
	}
	if got := uidOf(snap.WorkloadByUID("hostnet")); got != "hostnet" {
		t.Errorf("WorkloadByUID(hostnet) = %s", got)
	}
	if got := uidOf(snap.WorkloadByName("default", "remote")); got != "remote" {
		t.Errorf("WorkloadByName(default, remote) = %s", got)
	}
	if got, want := snap.NumWorkloads(), 7; got != want {
		t.Errorf("NumWorkloads = %d, want %d", got, want)
	}
	var uids []string
	for _, w := range snap.Workloads() {
		uids = append(uids, w.UID)
	}
	if !slices.IsSorted(uids) || len(uids) != 7 {
		t.Errorf("Workloads() = %v, want 7 sorted", uids)
	}

	// Removing the winner of a conflict exposes the next one; moving an IP
	// frees the old address.
	moved := pod("a", "10.0.0.2")
	mustApply(t, s, Update{Workloads: []*Workload{moved}, RemoveWorkloads: []string{"c1//Pod/default/hbone"}})
	snap = s.Snapshot()
	for _, tt := range []struct{ ip, want string }{
		{"10.0.0.5", "c1//Pod/default/tcp"},
		{"10.0.0.1", "<nil>"},
		{"10.0.0.2", "a"},
	} {
		if got := uidOf(snap.WorkloadByAddr("", netip.MustParseAddr(tt.ip))); got != tt.want {
			t.Errorf("after update: WorkloadByAddr(%s) = %s, want %s", tt.ip, got, tt.want)
		}
	}
}

func TestServiceLookups(t *testing.T) {
	s := NewStore()
	shared1 := svc("ns1/shared.com", "/10.96.0.10")
	shared2 := svc("ns2/shared.com", "/10.96.0.10")
	shared2.Canonical = true
	mustApply(t, s, Update{Services: []*Service{
		svc("default/a.com", "/10.96.0.1", "/fd00:96::1"),
		svc("default/remote.com", "remote/10.96.0.1"),
		svc("default/wide.com", "/10.0.0.0/8"),
		svc("default/narrow.com", "/10.1.0.0/16"),
		svc("default/remote-cidr.com", "remote/10.1.2.0/24"),
		svc("default/v6-cidr.com", "/fd00:1::/64"),
		shared1, shared2,
	}})
	snap := s.Snapshot()
	tests := []struct {
		network, ip, want string
	}{
		{"", "10.96.0.1", "default/a.com"},
		{"", "fd00:96::1", "default/a.com"},
		{"remote", "10.96.0.1", "default/remote.com"},
		{"", "10.2.3.4", "default/wide.com"},
		{"", "10.1.2.3", "default/narrow.com"},
		{"remote", "10.1.2.3", "default/remote-cidr.com"},
		{"remote", "10.1.3.3", "<nil>"},
		{"", "fd00:1::5", "default/v6-cidr.com"},
		{"", "fd00:2::5", "<nil>"},
		{"", "11.0.0.1", "<nil>"},
		{"", "10.96.0.10", "ns2/shared.com"}, // canonical wins
	}
	for _, tt := range tests {
		got := keyOf(snap.ServiceByVIP(tt.network, netip.MustParseAddr(tt.ip)))
		if got != tt.want {
			t.Errorf("ServiceByVIP(%q, %s) = %s, want %s", tt.network, tt.ip, got, tt.want)
		}
	}
	if got := len(snap.ServicesByHostname("shared.com")); got != 2 {
		t.Errorf("ServicesByHostname(shared.com) has %d services, want 2", got)
	}
	if got := keyOf(snap.Service("ns1/shared.com")); got != "ns1/shared.com" {
		t.Errorf("Service(ns1/shared.com) = %s", got)
	}
	if got := keyOf(snap.ServiceByName(nh("ns2/shared.com"))); got != "ns2/shared.com" {
		t.Errorf("ServiceByName(ns2/shared.com) = %s", got)
	}

	// Removing the narrow CIDR falls back to the wide one; removing a shared
	// VIP's canonical service leaves the other.
	mustApply(t, s, Update{RemoveServices: []string{"default/narrow.com", "ns2/shared.com"}})
	snap = s.Snapshot()
	if got := keyOf(snap.ServiceByVIP("", netip.MustParseAddr("10.1.2.3"))); got != "default/wide.com" {
		t.Errorf("after removal: ServiceByVIP(10.1.2.3) = %s, want default/wide.com", got)
	}
	if got := keyOf(snap.ServiceByVIP("", netip.MustParseAddr("10.96.0.10"))); got != "ns1/shared.com" {
		t.Errorf("after removal: ServiceByVIP(10.96.0.10) = %s, want ns1/shared.com", got)
	}
	if got := len(snap.ServicesByHostname("shared.com")); got != 1 {
		t.Errorf("after removal: ServicesByHostname(shared.com) = %d services, want 1", got)
	}
	// Changing a service's VIP frees the old one.
	mustApply(t, s, Update{Services: []*Service{svc("default/a.com", "/10.96.0.2")}})
	snap = s.Snapshot()
	if got := len(snap.ServicesByVIP("", netip.MustParseAddr("10.96.0.1"))); got != 0 {
		t.Errorf("old VIP still maps to %d services", got)
	}
	if got := keyOf(snap.ServiceByVIP("", netip.MustParseAddr("10.96.0.2"))); got != "default/a.com" {
		t.Errorf("new VIP maps to %s", got)
	}
}

// endpoints summarises a service's endpoints as "uid:port80->target:status".
func endpoints(s *Service) []string {
	if s == nil {
		return nil
	}
	var out []string
	for uid, ep := range s.Endpoints {
		out = append(out, fmt.Sprintf("%s:%d:%v", uid, ep.Port[80], ep.Status))
	}
	slices.Sort(out)
	return out
}

func TestEndpointConsistency(t *testing.T) {
	s := NewStore()
	const key = "default/example.com"
	check := func(step string, want ...string) {
		t.Helper()
		got := endpoints(s.Snapshot().Service(key))
		if !slices.Equal(got, want) {
			t.Errorf("%s: endpoints = %v, want %v", step, got, want)
		}
	}
	// Workload before its service: endpoints wait.
	mustApply(t, s, Update{Workloads: []*Workload{pod("w1", "10.0.0.1", key)}})
	check("service absent")
	mustApply(t, s, Update{Services: []*Service{svc(key, "/10.96.0.1")}})
	check("service arrives", "w1:8080:Healthy")

	w2 := pod("w2", "10.0.0.2", key)
	w2.ServicePorts[nh(key)] = map[uint16]uint16{80: 9090}
	mustApply(t, s, Update{Workloads: []*Workload{w2}})
	check("second workload", "w1:8080:Healthy", "w2:9090:Healthy")

	mustApply(t, s, Update{RemoveWorkloads: []string{"w1"}})
	check("w1 removed", "w2:9090:Healthy")

	mustApply(t, s, Update{Workloads: []*Workload{pod("w1", "10.0.0.1", key)}})
	check("w1 re-added", "w1:8080:Healthy", "w2:9090:Healthy")

	// A workload that stops naming the service leaves it.
	mustApply(t, s, Update{Workloads: []*Workload{pod("w2", "10.0.0.2", "default/other.com")}})
	check("w2 moved", "w1:8080:Healthy")

	// Service removed and re-added: endpoints come back.
	mustApply(t, s, Update{RemoveServices: []string{key}})
	if s.Snapshot().Service(key) != nil {
		t.Fatal("service still present after removal")
	}
	mustApply(t, s, Update{Services: []*Service{svc(key, "/10.96.0.1")}})
	check("service re-added", "w1:8080:Healthy")

	// Unhealthy endpoints are dropped unless the service allows all.
	sick := pod("w3", "10.0.0.3", key)
	sick.Status = Unhealthy
	mustApply(t, s, Update{Workloads: []*Workload{sick}})
	check("unhealthy workload", "w1:8080:Healthy")
	allowAll := svc(key, "/10.96.0.1")
	allowAll.LoadBalancer = &LoadBalancer{HealthPolicy: AllowAll}
	mustApply(t, s, Update{Services: []*Service{allowAll}})
	check("allow all", "w1:8080:Healthy", "w3:8080:Unhealthy")

	// Endpoints written in the service resource itself are kept, and a
	// workload's contribution overrides one for the same UID.
	own := svc(key, "/10.96.0.1")
	own.Endpoints = map[string]*Endpoint{
		"static": {Port: map[uint16]uint16{80: 7070}},
		"w1":     {Port: map[uint16]uint16{80: 1}},
	}
	mustApply(t, s, Update{Services: []*Service{own}})
	check("own endpoints", "static:7070:Healthy", "w1:8080:Healthy")
	mustApply(t, s, Update{RemoveWorkloads: []string{"w1", "w3"}})
	check("own endpoints after workload removal", "static:7070:Healthy", "w1:1:Healthy")

	// In one update: service and its workload together, either order.
	s2 := NewStore()
	mustApply(t, s2, Update{Services: []*Service{svc(key, "/10.96.0.1")}, Workloads: []*Workload{pod("x", "10.0.0.9", key)}})
	if got := endpoints(s2.Snapshot().Service(key)); !slices.Equal(got, []string{"x:8080:Healthy"}) {
		t.Errorf("same update: endpoints = %v", got)
	}
}

func TestReplace(t *testing.T) {
	s := NewStore()
	mustApply(t, s, Update{
		Workloads: []*Workload{pod("old", "10.0.0.1", "default/old.com")},
		Services:  []*Service{svc("default/old.com", "/10.96.0.1")},
		Policies:  []*policy.Authorization{pol("default", "old")},
	})
	if err := s.Replace(Update{
		Workloads: []*Workload{pod("new", "10.0.0.2", "default/new.com")},
		Services:  []*Service{svc("default/new.com", "/10.96.0.2")},
		Policies:  []*policy.Authorization{pol("default", "new")},
	}); err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	if snap.WorkloadByUID("old") != nil || snap.Service("default/old.com") != nil || snap.Policies().Get("default/old") != nil {
		t.Error("Replace kept old resources")
	}
	if snap.WorkloadByAddr("", netip.MustParseAddr("10.0.0.1")) != nil || snap.ServiceByVIP("", netip.MustParseAddr("10.96.0.1")) != nil {
		t.Error("Replace kept old indexes")
	}
	if got := endpoints(snap.Service("default/new.com")); !slices.Equal(got, []string{"new:8080:Healthy"}) {
		t.Errorf("new endpoints = %v", got)
	}
	if snap.Policies().Get("default/new") == nil || snap.Policies().Len() != 1 {
		t.Errorf("policies = %d, want only default/new", snap.Policies().Len())
	}
	if snap.Version() != 2 {
		t.Errorf("Version = %d, want 2", snap.Version())
	}
}

func TestPolicies(t *testing.T) {
	s := NewStore()
	mustApply(t, s, Update{Policies: []*policy.Authorization{pol("a", "p1"), pol("b", "p2")}})
	mustApply(t, s, Update{RemovePolicies: []string{"a/p1"}, Policies: []*policy.Authorization{pol("c", "p3")}})
	var got []string
	for _, p := range s.Snapshot().Policies().All() {
		got = append(got, p.Key())
	}
	if want := []string{"b/p2", "c/p3"}; !slices.Equal(got, want) {
		t.Errorf("policies = %v, want %v", got, want)
	}
}

func TestSnapshotIsolation(t *testing.T) {
	s := NewStore()
	const key = "default/example.com"
	mustApply(t, s, Update{
		Workloads: []*Workload{pod("w1", "10.0.0.1", key)},
		Services:  []*Service{svc(key, "/10.96.0.1")},
		Policies:  []*policy.Authorization{pol("default", "p")},
	})
	old := s.Snapshot()
	oldSvc := old.Service(key)
	oldEndpoints := maps.Clone(oldSvc.Endpoints)

	mustApply(t, s, Update{
		Workloads:       []*Workload{pod("w2", "10.0.0.2", key)},
		RemoveWorkloads: []string{"w1"},
		Services:        []*Service{svc("default/new.com", "/10.96.0.2")},
		RemovePolicies:  []string{"default/p"},
	})
	if old.WorkloadByUID("w1") == nil || old.WorkloadByAddr("", netip.MustParseAddr("10.0.0.1")) == nil {
		t.Error("old snapshot lost w1")
	}
	if old.WorkloadByUID("w2") != nil || old.Service("default/new.com") != nil {
		t.Error("old snapshot sees new resources")
	}
	if old.Service(key) != oldSvc || !maps.Equal(oldSvc.Endpoints, oldEndpoints) {
		t.Error("old snapshot's service changed")
	}
	if old.Policies().Get("default/p") == nil {
		t.Error("old snapshot lost its policy")
	}
	if old.Version() != 1 || s.Snapshot().Version() != 2 {
		t.Errorf("versions = %d, %d; want 1, 2", old.Version(), s.Snapshot().Version())
	}
	if got := endpoints(s.Snapshot().Service(key)); !slices.Equal(got, []string{"w2:8080:Healthy"}) {
		t.Errorf("new endpoints = %v", got)
	}
}

func TestSubscribe(t *testing.T) {
	s := NewStore()
	ch, cancel := s.Subscribe()
	ch2, cancel2 := s.Subscribe()
	defer cancel2()
	select {
	case <-ch:
		t.Fatal("notified before any update")
	default:
	}
	mustApply(t, s, Update{Workloads: []*Workload{pod("a", "10.0.0.1")}})
	mustApply(t, s, Update{Workloads: []*Workload{pod("b", "10.0.0.2")}})
	for i, c := range []<-chan struct{}{ch, ch2} {
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Fatalf("subscriber %d not notified", i)
		}
		select {
		case <-c:
			t.Fatalf("subscriber %d: notifications did not coalesce", i)
		default:
		}
	}
	// A fully rejected update changes nothing and notifies nobody.
	if err := s.Apply(Update{Workloads: []*Workload{{UID: "bad"}}}); err == nil {
		t.Fatal("bad workload accepted")
	}
	select {
	case <-ch:
		t.Fatal("notified for a rejected update")
	default:
	}
	cancel()
	cancel() // idempotent
	mustApply(t, s, Update{RemoveWorkloads: []string{"a"}})
	select {
	case <-ch:
		t.Fatal("notified after cancel")
	default:
	}
	select {
	case <-ch2:
	default:
		t.Fatal("remaining subscriber not notified")
	}
}

// TestOnChange: a callback sees each published snapshot once, in order and already current;
// a rejected update calls it not, and after cancel it is not called again.
func TestOnChange(t *testing.T) {
	s := NewStore()
	var seen []uint64
	cancel := s.OnChange(func() { seen = append(seen, s.Snapshot().Version()) })
	mustApply(t, s, Update{Workloads: []*Workload{pod("a", "10.0.0.1")}})
	mustApply(t, s, Update{Workloads: []*Workload{pod("b", "10.0.0.2")}})
	if err := s.Apply(Update{Workloads: []*Workload{{UID: "bad"}}}); err == nil {
		t.Fatal("bad workload accepted")
	}
	cancel()
	cancel() // idempotent
	mustApply(t, s, Update{RemoveWorkloads: []string{"a"}})
	if want := []uint64{1, 2}; !slices.Equal(seen, want) {
		t.Errorf("callback saw versions %v, want %v", seen, want)
	}
}

func TestApplyRejectsAlone(t *testing.T) {
	tests := []struct {
		name    string
		u       Update
		kind    string
		key     string
		wantErr string
	}{
		{"workload without uid", Update{Workloads: []*Workload{{Namespace: "ns"}}}, KindWorkload, "", "uid is empty"},
		{"workload without namespace", Update{Workloads: []*Workload{{UID: "u"}}}, KindWorkload, "u", "namespace is empty"},
		{"workload zero IP", Update{Workloads: []*Workload{{UID: "u", Namespace: "ns", WorkloadIPs: []netip.Addr{{}}}}}, KindWorkload, "u", "workloadIps[0]: invalid IP"},
		{"workload zoned IP", Update{Workloads: []*Workload{{UID: "u", Namespace: "ns", WorkloadIPs: ips("fe80::1%eth0")}}}, KindWorkload, "u", "has a zone"},
		{"workload duplicate IP", Update{Workloads: []*Workload{{UID: "u", Namespace: "ns", WorkloadIPs: ips("10.0.0.7", "::ffff:10.0.0.7")}}}, KindWorkload, "u", "duplicate address"},
		{"workload network with slash", Update{Workloads: []*Workload{{UID: "u", Namespace: "ns", Network: "a/b"}}}, KindWorkload, "u", "network \"a/b\""},
		{"workload empty waypoint", Update{Workloads: []*Workload{{UID: "u", Namespace: "ns", Waypoint: &GatewayAddress{}}}}, KindWorkload, "u", "waypoint: destination is empty"},
		{"workload bad service name", Update{Workloads: []*Workload{{UID: "u", Namespace: "ns", Services: []NamespacedHostname{{Hostname: "h"}}}}}, KindWorkload, "u", "services[0]: namespace is empty"},
		{"workload ports for unlisted service", Update{Workloads: []*Workload{{UID: "u", Namespace: "ns", ServicePorts: map[NamespacedHostname]map[uint16]uint16{nh("ns/h"): nil}}}}, KindWorkload, "u", "not listed in services"},
		{"workload unknown protocol", Update{Workloads: []*Workload{{UID: "u", Namespace: "ns", Protocol: 9}}}, KindWorkload, "u", "protocol 9"},
		{"service without namespace", Update{Services: []*Service{{Hostname: "h"}}}, KindService, "/h", "namespace is empty"},
		{"service without hostname", Update{Services: []*Service{{Namespace: "ns"}}}, KindService, "ns/", "hostname is empty"},
		{"service bad VIP", Update{Services: []*Service{{Namespace: "ns", Hostname: "h", VIPs: []NetworkAddress{{}}}}}, KindService, "ns/h", "vips[0]: invalid IP"},
		{"service bad CIDR", Update{Services: []*Service{{Namespace: "ns", Hostname: "h", CIDRVIPs: []NetworkCIDR{{}}}}}, KindService, "ns/h", "cidrVips[0]: invalid prefix"},
		{"service endpoint uid mismatch", Update{Services: []*Service{{Namespace: "ns", Hostname: "h", Endpoints: map[string]*Endpoint{"a": {WorkloadUID: "b"}}}}}, KindService, "ns/h", "differs from its key"},
		{"service bad waypoint", Update{Services: []*Service{{Namespace: "ns", Hostname: "h", Waypoint: &GatewayAddress{Destination: GatewayDestination{Hostname: &NamespacedHostname{Namespace: "ns"}}}}}}, KindService, "ns/h", "waypoint: hostname is empty"},
		{"policy without scope", Update{Policies: []*policy.Authorization{{Name: "p", Namespace: "ns", Action: policy.ActionAllow}}}, KindPolicy, "ns/p", "scope"},
		{"nil workload", Update{Workloads: []*Workload{nil}}, KindWorkload, "", "nil workload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore()
			// Every update also carries one good resource of each kind.
			u := tt.u
			u.Workloads = append(u.Workloads, pod("good", "10.0.0.1", "default/good.com"))
			u.Services = append(u.Services, svc("default/good.com", "/10.96.0.1"))
			u.Policies = append(u.Policies, pol("default", "good"))
			err := s.Apply(u)
			if err == nil {
				t.Fatal("Apply accepted a bad resource")
			}
			rej := Rejected(err)
			if len(rej) != 1 {
				t.Fatalf("Rejected = %d errors, want 1: %v", len(rej), err)
			}
			if rej[0].Kind != tt.kind || rej[0].Key != tt.key {
				t.Errorf("rejected %s %q, want %s %q", rej[0].Kind, rej[0].Key, tt.kind, tt.key)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if vErr := u.Validate(); vErr == nil || vErr.Error() != err.Error() {
				t.Errorf("Validate() = %v, want the same error as Apply", vErr)
			}
			snap := s.Snapshot()
			if snap.WorkloadByUID("good") == nil || snap.Service("default/good.com") == nil || snap.Policies().Get("default/good") == nil {
				t.Error("good resources were not applied")
			}
			if snap.NumWorkloads() != 1 || snap.NumServices() != 1 || snap.Policies().Len() != 1 {
				t.Errorf("store holds %d workloads, %d services, %d policies; want 1 each",
					snap.NumWorkloads(), snap.NumServices(), snap.Policies().Len())
			}
		})
	}
}

func TestRejectedJoinsSeveral(t *testing.T) {
	err := NewStore().Apply(Update{
		Workloads: []*Workload{{UID: "a"}, {UID: "b"}},
		Services:  []*Service{{Hostname: "h"}},
	})
	var keys []string
	for _, r := range Rejected(err) {
		keys = append(keys, r.Kind+":"+r.Key)
	}
	if want := []string{"workload:a", "workload:b", "service:/h"}; !slices.Equal(keys, want) {
		t.Errorf("rejected = %v, want %v", keys, want)
	}
	var re *ResourceError
	if !errors.As(err, &re) {
		t.Error("errors.As(*ResourceError) failed")
	}
}

func TestLookupsDoNotAllocate(t *testing.T) {
	s := NewStore()
	mustApply(t, s, Update{
		Workloads: []*Workload{pod("w1", "10.0.0.1", "default/a.com")},
		Services:  []*Service{svc("default/a.com", "/10.96.0.1"), svc("default/cidr.com", "/10.128.0.0/9")},
	})
	snap := s.Snapshot()
	ip, vip, cidrIP := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.96.0.1"), netip.MustParseAddr("10.200.0.1")
	allocs := testing.AllocsPerRun(100, func() {
		if snap.WorkloadByAddr("", ip) == nil || snap.WorkloadByUID("w1") == nil ||
			snap.ServiceByVIP("", vip) == nil || snap.ServiceByVIP("", cidrIP) == nil ||
			snap.ServicesByHostname("a.com") == nil || snap.Service("default/a.com") == nil ||
			snap.WorkloadByName("default", "w1") == nil || snap.ServiceByName(NamespacedHostname{"default", "a.com"}) == nil {
			panic("lookup failed")
		}
	})
	if allocs != 0 {
		t.Errorf("lookups allocate %v times per run, want 0", allocs)
	}
}

func TestConcurrentReadersAndWriter(t *testing.T) {
	s := NewStore()
	const key = "default/example.com"
	mustApply(t, s, Update{Services: []*Service{svc(key, "/10.96.0.1")}})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Go(func() {
			ip := netip.MustParseAddr("10.0.0.1")
			for {
				select {
				case <-stop:
					return
				default:
				}
				snap := s.Snapshot()
				// Within one snapshot, the workload and its endpoint agree.
				w := snap.WorkloadByAddr("", ip)
				sv := snap.ServiceByVIP("", netip.MustParseAddr("10.96.0.1"))
				_, hasEP := sv.Endpoints["w"]
				if (w != nil) != hasEP {
					panic(fmt.Sprintf("version %d: workload present=%v, endpoint present=%v", snap.Version(), w != nil, hasEP))
				}
				_ = snap.Policies().Len()
			}
		})
	}
	for i := 0; i < 500; i++ {
		if i%2 == 0 {
			mustApply(t, s, Update{Workloads: []*Workload{pod("w", "10.0.0.1", key)}, Policies: []*policy.Authorization{pol("default", "p")}})
		} else {
			mustApply(t, s, Update{RemoveWorkloads: []string{"w"}, RemovePolicies: []string{"default/p"}})
		}
	}
	close(stop)
	wg.Wait()
}

// TestServiceByVIPFromNamespace: among services sharing an address, the client's namespace
// chooses, and a namespace-scoped service exists only for clients in its own namespace, for
// exact and CIDR VIPs alike (ztunnel's get_best_by_vip and its CIDR ranking).
func TestServiceByVIPFromNamespace(t *testing.T) {
	s := NewStore()
	scoped := func(x *Service) *Service { x.Visibility = NamespaceVisible; return x }
	canonical := func(x *Service) *Service { x.Canonical = true; return x }
	mustApply(t, s, Update{Services: []*Service{
		// 10.96.0.10: three namespaces, one canonical.
		svc("ns1/shared.com", "/10.96.0.10"),
		canonical(svc("ns2/shared.com", "/10.96.0.10")),
		svc("ns3/shared.com", "/10.96.0.10"),
		// 10.96.0.20: a public service and one scoped to ns1.
		svc("pub/only.com", "/10.96.0.20"),
		scoped(svc("ns1/only.com", "/10.96.0.20")),
		// 10.96.0.30: only a scoped service; 10.96.0.0/24 covers it for everyone else.
		scoped(svc("ns1/hidden.com", "/10.96.0.30")),
		svc("pub/range.com", "/10.96.0.0/24"),
		// 172.20.1.1: a wide CIDR in ns2 against a narrow one in pub.
		svc("ns2/wide.com", "/172.16.0.0/12"),
		svc("pub/narrow.com", "/172.20.1.0/24"),
		// 10.60.1.1: two CIDRs of one prefix, the second canonical; a scoped narrower one.
		svc("a/first.com", "/10.60.0.0/16"),
		canonical(svc("b/canon.com", "/10.60.0.0/16")),
		scoped(svc("ns1/narrow.com", "/10.60.1.0/24")),
	}})
	snap := s.Snapshot()
	for _, tt := range []struct{ ip, ns, want string }{
		{"10.96.0.10", "ns1", "ns1/shared.com"}, // own namespace beats canonical
		{"10.96.0.10", "ns3", "ns3/shared.com"},
		{"10.96.0.10", "other", "ns2/shared.com"}, // then canonical
		{"10.96.0.10", "", "ns2/shared.com"},
		{"10.96.0.20", "ns1", "ns1/only.com"},
		{"10.96.0.20", "ns2", "pub/only.com"}, // the scoped one is not there for ns2
		{"10.96.0.30", "ns1", "ns1/hidden.com"},
		{"10.96.0.30", "ns2", "pub/range.com"},  // nothing visible at the VIP: the CIDR
		{"10.96.0.30", "", "ns1/hidden.com"},    // unknown namespace: no filter
		{"172.20.1.1", "ns2", "ns2/wide.com"},   // own namespace beats a longer prefix
		{"172.20.1.1", "ns3", "pub/narrow.com"}, // else the longest prefix
		{"172.20.1.1", "", "pub/narrow.com"},
		{"10.60.1.1", "ns1", "ns1/narrow.com"},
		{"10.60.1.1", "ns2", "b/canon.com"}, // scoped /24 hidden; canonical among equals
		{"10.60.1.1", "a", "a/first.com"},
		{"10.60.1.1", "", "ns1/narrow.com"},
	} {
		if got := keyOf(snap.ServiceByVIPFrom("", netip.MustParseAddr(tt.ip), tt.ns)); got != tt.want {
			t.Errorf("ServiceByVIPFrom(%s, %q) = %s, want %s", tt.ip, tt.ns, got, tt.want)
		}
	}
}
