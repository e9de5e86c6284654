package xds

import (
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ztunnel-go/ztunnel/policy"
	"github.com/ztunnel-go/ztunnel/workload"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLocalhostExample loads ztunnel's examples/localhost.yaml unchanged.
func TestLocalhostExample(t *testing.T) {
	store := workload.NewStore()
	if err := LoadLocal(store, readTestdata(t, "localhost.yaml")); err != nil {
		t.Fatal(err)
	}
	snap := store.Snapshot()

	workloads := []struct {
		ip, uid  string
		protocol workload.InboundProtocol
	}{
		{"127.0.0.1", "cluster1//v1/Pod/default/local", workload.ProtocolHBONE},
		{"127.0.0.2", "cluster1//v1/Pod/default/local-tcp", workload.ProtocolTCP},
	}
	for _, tt := range workloads {
		w := snap.WorkloadByAddr("", netip.MustParseAddr(tt.ip))
		if w == nil {
			t.Fatalf("no workload at %s", tt.ip)
		}
		if w.UID != tt.uid || w.Protocol != tt.protocol || w.Namespace != "default" || w.Node != "local" || w.Capacity != 1 {
			t.Errorf("workload at %s = %+v", tt.ip, w)
		}
		if got, want := w.Identity().String(), "spiffe://cluster.local/ns/default/sa/default"; got != want {
			t.Errorf("identity = %s, want %s", got, want)
		}
		if got, want := w.Services, []workload.NamespacedHostname{{Namespace: "default", Hostname: "example.com"}, {Namespace: "default", Hostname: "example2.com"}}; !slices.Equal(got, want) {
			t.Errorf("services of %s = %v, want %v", tt.uid, got, want)
		}
	}

	services := []struct {
		network, vip, key string
		sans              []string
	}{
		{"", "127.10.0.1", "default/example.com", []string{"spiffe://cluster.local/ns/default/sa/local"}},
		{"remote", "127.10.0.2", "default/example2.com", []string{}},
		{"", "127.10.0.2", "", nil},
	}
	for _, tt := range services {
		s := snap.ServiceByVIP(tt.network, netip.MustParseAddr(tt.vip))
		if tt.key == "" {
			if s != nil {
				t.Errorf("%s/%s: got %s, want none", tt.network, tt.vip, s.Key())
			}
			continue
		}
		if s == nil || s.Key() != tt.key {
			t.Fatalf("%s/%s: got %v, want %s", tt.network, tt.vip, s, tt.key)
		}
		if !s.Canonical || s.Ports[80] != 8080 || !slices.Equal(s.SubjectAltNames, tt.sans) {
			t.Errorf("%s = %+v", tt.key, s)
		}
		if len(s.Endpoints) != 2 {
			t.Fatalf("%s has %d endpoints, want 2", tt.key, len(s.Endpoints))
		}
		for _, uid := range []string{"cluster1//v1/Pod/default/local", "cluster1//v1/Pod/default/local-tcp"} {
			ep := s.Endpoints[uid]
			if ep == nil || ep.WorkloadUID != uid || ep.Port[80] != 8080 || ep.Status != workload.Healthy {
				t.Errorf("%s endpoint %s = %+v", tt.key, uid, ep)
			}
		}
	}
	if got := snap.ServicesByHostname("example.com"); len(got) != 1 || got[0].Name != "local" {
		t.Errorf("ServicesByHostname(example.com) = %v", got)
	}

	p := snap.Policies().Get("default/deny-9999")
	if p == nil {
		t.Fatal("policy default/deny-9999 missing")
	}
	if p.Action != policy.ActionAllow || p.Scope != policy.ScopeNamespace || p.DryRun ||
		len(p.Rules) != 1 || !slices.Equal(p.Rules[0][0][0].NotDestinationPorts, []uint16{9999}) {
		t.Errorf("policy = %+v", p)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, in := range []string{"", "# nothing\n", "{}", "workloads: []\n"} {
		c, err := ParseLocalConfig([]byte(in))
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if len(c.Workloads)+len(c.Services)+len(c.Policies) != 0 {
			t.Errorf("%q: non-empty config %+v", in, c)
		}
	}
}

func TestParseFullShape(t *testing.T) {
	const in = `
workloads:
- uid: u1
  name: n
  namespace: ns
  trustDomain: td
  serviceAccount: sa
  workloadIps: ["10.0.0.1", "fd00::1"]
  waypoint: {destination: "ns/waypoint.ns.svc.cluster.local", hboneMtlsPort: 15008}
  networkGateway: {destination: "net2/1.2.3.4", hboneMtlsPort: 15008}
  protocol: HBONE
  networkMode: Standard
  network: net1
  workloadName: wn
  workloadType: deployment
  canonicalName: cn
  canonicalRevision: v1
  hostname: h
  node: node1
  nativeTunnel: true
  applicationTunnel: {protocol: PROXY, port: 15088}
  authorizationPolicies: [ns/p]
  status: Unhealthy
  clusterId: Kubernetes
  locality: {region: r, zone: z, subzone: s}
  capacity: 3
  services: {}
services:
- name: s
  namespace: ns
  hostname: s.ns.svc.cluster.local
  vips: [net1/10.96.0.1]
  cidrVips: [{network: net1, cidr: 10.200.0.0/16}]
  ports: {80: 0}
  endpoints:
    u1: {workloadUid: u1, port: {80: 8080}, status: Unhealthy}
  subjectAltNames: []
  waypoint: {destination: "/10.0.0.9", hboneMtlsPort: 15008}
  weightedWaypoints: [{destination: {destination: "ns/wp2", hboneMtlsPort: 15008}, weight: 10}]
  loadBalancer: {routingPreferences: [Network, Zone], mode: Failover, healthPolicy: AllowAll}
  ipFamilies: IPv4
  canonical: false
  visibility: Namespace
`
	c, err := ParseLocalConfig([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	w := c.Workloads[0]
	if w.Capacity != 3 || w.Status != workload.Unhealthy || w.ApplicationTunnel.Port != 15088 ||
		w.Waypoint.Destination.Hostname == nil || w.NetworkGateway.Destination.Address == nil || w.Locality.Subzone != "s" {
		t.Errorf("workload = %+v", w)
	}
	s := c.Services[0]
	if s.LoadBalancer.Mode != workload.LBFailover || s.IPFamilies != workload.IPFamilyIPv4 || s.Visibility != workload.NamespaceVisible ||
		s.WeightedWaypoints[0].Weight != 10 || s.CIDRVIPs[0].CIDR.Bits() != 16 || s.Endpoints["u1"].Status != workload.Unhealthy {
		t.Errorf("service = %+v", s)
	}
	store := workload.NewStore()
	if err := LoadLocal(store, []byte(in)); err != nil {
		t.Fatal(err)
	}
	got := store.Snapshot().ServiceByVIP("net1", netip.MustParseAddr("10.200.1.1"))
	if got == nil || got.Endpoints["u1"] == nil {
		t.Errorf("CIDR VIP lookup = %+v", got)
	}
}

func TestUnknownFields(t *testing.T) {
	tests := []struct {
		name, in, field string
		line            int
	}{
		{"top level", "workloads: []\nextra: 1\n", "extra", 2},
		{"workload", "workloads:\n- uid: u\n  namespace: ns\n  colour: red\n", "colour", 4},
		{"workload waypoint", "workloads:\n- uid: u\n  namespace: ns\n  waypoint:\n    destination: ns/w\n    port: 1\n", "port", 6},
		{"workload locality", "workloads:\n- uid: u\n  locality: {region: r, planet: p}\n", "planet", 3},
		{"service", "services:\n- name: s\n  namespace: ns\n  hostname: h\n  vip: []\n", "vip", 5},
		{"service endpoint", "services:\n- name: s\n  namespace: ns\n  hostname: h\n  endpoints:\n    u: {workloadUid: u, ports: {}}\n", "ports", 6},
		{"service load balancer", "services:\n- name: s\n  namespace: ns\n  hostname: h\n  loadBalancer:\n    mode: Strict\n    strategy: x\n", "strategy", 7},
		{"policy", "policies:\n- name: p\n  namespace: ns\n  scope: Global\n  action: Allow\n  rules: []\n  dryRun: false\n  bogus: 1\n", "bogus", 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseLocalConfig([]byte(tt.in))
			if err == nil {
				t.Fatal("unknown field accepted")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.field) || !strings.Contains(msg, "line "+strconv.Itoa(tt.line)) {
				t.Errorf("error %q does not name field %q and line %d", msg, tt.field, tt.line)
			}
		})
	}
}

func TestLocalConfigErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"bad IP", "workloads:\n- uid: u\n  namespace: ns\n  workloadIps: [1.2.3]\n", "1.2.3"},
		{"bad VIP", "services:\n- {name: s, namespace: ns, hostname: h, vips: [10.0.0.1]}\n", "want network/ip"},
		{"bad enum", "workloads:\n- {uid: u, namespace: ns, protocol: QUIC}\n", "unknown protocol \"QUIC\""},
		{"bad services key", "workloads:\n- uid: u\n  namespace: ns\n  services: {example.com: {80: 8080}}\n", "want namespace/hostname"},
		{"duplicate uid", "workloads:\n- {uid: u, namespace: ns}\n- {uid: u, namespace: ns}\n", "uid \"u\" already used by workloads[0]"},
		{"duplicate service", "services:\n- {name: s, namespace: ns, hostname: h}\n- {name: t, namespace: ns, hostname: h}\n", "\"ns/h\" already defined"},
		{"invalid workload", "workloads:\n- {uid: u}\n", "workload \"u\": namespace is empty"},
		{"invalid service", "services:\n- {name: s, hostname: h}\n", "namespace is empty"},
		{"invalid policy", "policies:\n- {name: \"\", namespace: ns, scope: Global, action: Allow, rules: [], dryRun: false}\n", "name is empty"},
		{"second document", "workloads: []\n---\nworkloads: []\n", "second YAML document"},
		{"not a mapping", "- a\n", "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := workload.NewStore()
			if err := LoadLocal(store, readTestdata(t, "localhost.yaml")); err != nil {
				t.Fatal(err)
			}
			before := store.Snapshot()
			err := LoadLocal(store, []byte(tt.in))
			if err == nil {
				t.Fatal("LoadLocal accepted an invalid config")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if store.Snapshot() != before {
				t.Error("store changed after a rejected config")
			}
		})
	}
}

func TestLoadLocalReplaces(t *testing.T) {
	store := workload.NewStore()
	if err := LoadLocal(store, readTestdata(t, "localhost.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := LoadLocal(store, nil); err != nil {
		t.Fatal(err)
	}
	snap := store.Snapshot()
	if snap.NumWorkloads() != 0 || snap.NumServices() != 0 || snap.Policies().Len() != 0 {
		t.Errorf("empty config left %d workloads, %d services, %d policies", snap.NumWorkloads(), snap.NumServices(), snap.Policies().Len())
	}
}

func TestUpdateDoesNotAlias(t *testing.T) {
	c, err := ParseLocalConfig([]byte("workloads:\n- uid: u\n  namespace: ns\n  workloadIps: ['::ffff:10.0.0.1']\n  services: {ns/h: {80: 8080}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := c.Update()
	if err != nil {
		t.Fatal(err)
	}
	if err := workload.NewStore().Replace(u); err != nil {
		t.Fatal(err)
	}
	if got := c.Workloads[0].WorkloadIPs[0]; !got.Is4In6() {
		t.Errorf("store normalised the config's own IP slice: %v", got)
	}
	if got := u.Workloads[0].ServicePorts[workload.NamespacedHostname{Namespace: "ns", Hostname: "h"}][80]; got != 8080 {
		t.Errorf("ServicePorts = %v", u.Workloads[0].ServicePorts)
	}
}

func FuzzParseLocalConfig(f *testing.F) {
	f.Add(readTestdata(f, "localhost.yaml"))
	f.Add([]byte("workloads:\n- {uid: u, namespace: ns, waypoint: {destination: ns/w, hboneMtlsPort: 15008}}\n"))
	f.Add([]byte("services:\n- {name: s, namespace: ns, hostname: h, cidrVips: [{network: '', cidr: 10.0.0.0/8}]}\n"))
	f.Add([]byte("policies: [{name: p, namespace: ns, scope: Global, action: Deny, rules: [[[{namespaces: [{Exact: x}]}]]], dryRun: true}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseLocalConfig(data)
		if err != nil {
			return
		}
		u, err := c.Update()
		if err != nil {
			return
		}
		store := workload.NewStore()
		_ = store.Replace(u)
		snap := store.Snapshot()
		_ = snap.Workloads()
		_ = snap.Services()
	})
}
