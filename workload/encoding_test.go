package workload

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
)

// The JSON shape is what /config_dump prints and istioctl reads: ztunnel's
// serde output for the same resources.
func TestJSONShape(t *testing.T) {
	wp := NamespacedHostname{"default", "waypoint.default.svc.cluster.local"}
	tests := []struct {
		name string
		v    any
		want string
	}{
		{
			"workload from localhost.yaml",
			&Workload{
				UID: "cluster1//v1/Pod/default/local", Name: "local", Namespace: "default",
				ServiceAccount: "default", WorkloadIPs: ips("127.0.0.1"), Protocol: ProtocolHBONE, Node: "local", Capacity: 1,
			},
			`{"workloadIps":["127.0.0.1"],"protocol":"HBONE","networkMode":"Standard","uid":"cluster1//v1/Pod/default/local","name":"local","namespace":"default","serviceAccount":"default","node":"local","status":"Healthy","clusterId":"","capacity":1}`,
		},
		{
			"workload with every optional field",
			&Workload{
				UID: "u", Namespace: "ns", WorkloadIPs: ips("10.0.0.1", "fd00::1"),
				Waypoint:       &GatewayAddress{Destination: GatewayDestination{Hostname: &wp}, HBONEMTLSPort: 15008},
				NetworkGateway: &GatewayAddress{Destination: GatewayDestination{Address: &NetworkAddress{"net2", netip.MustParseAddr("1.2.3.4")}}, HBONEMTLSPort: 15009},
				NetworkMode:    HostNetwork,
				TrustDomain:    "td", Network: "net1", NativeTunnel: true,
				ApplicationTunnel:     &ApplicationTunnel{Protocol: TunnelProxy, Port: 15088},
				AuthorizationPolicies: []string{"ns/p"}, Status: Unhealthy, ClusterID: "Kubernetes",
				Locality: Locality{Region: "r", Zone: "z"},
				Services: []NamespacedHostname{{"ns", "a.com"}},
			},
			`{"workloadIps":["10.0.0.1","fd00::1"],"waypoint":{"destination":"default/waypoint.default.svc.cluster.local","hboneMtlsPort":15008},"networkGateway":{"destination":"net2/1.2.3.4","hboneMtlsPort":15009},"protocol":"TCP","networkMode":"HostNetwork","uid":"u","name":"","namespace":"ns","trustDomain":"td","network":"net1","nativeTunnel":true,"applicationTunnel":{"protocol":"PROXY","port":15088},"authorizationPolicies":["ns/p"],"status":"Unhealthy","clusterId":"Kubernetes","locality":{"region":"r","zone":"z","subzone":""},"services":["ns/a.com"],"capacity":0}`,
		},
		{
			"service",
			&Service{
				Name: "local", Namespace: "default", Hostname: "example.com",
				VIPs:            []NetworkAddress{{"", netip.MustParseAddr("127.10.0.1")}},
				CIDRVIPs:        []NetworkCIDR{{"", netip.MustParsePrefix("10.0.0.0/8")}},
				Ports:           map[uint16]uint16{80: 8080},
				Endpoints:       map[string]*Endpoint{"u": {WorkloadUID: "u", Port: map[uint16]uint16{80: 9090}}},
				SubjectAltNames: []string{"spiffe://cluster.local/ns/default/sa/local"},
				LoadBalancer:    &LoadBalancer{RoutingPreferences: []RoutingScope{ScopeNetwork, ScopeZone}, Mode: LBFailover, HealthPolicy: AllowAll},
				IPFamilies:      IPFamilyDual, Canonical: true,
			},
			`{"name":"local","namespace":"default","hostname":"example.com","vips":["/127.10.0.1"],"cidrVips":[{"network":"","cidr":"10.0.0.0/8"}],"ports":{"80":8080},"endpoints":{"u":{"workloadUid":"u","port":{"80":9090},"status":"Healthy"}},"subjectAltNames":["spiffe://cluster.local/ns/default/sa/local"],"loadBalancer":{"routingPreferences":["Network","Zone"],"mode":"Failover","healthPolicy":"AllowAll"},"ipFamilies":"Dual","canonical":true,"visibility":"Public"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("got  %s\nwant %s", b, tt.want)
			}
			// Round trip.
			back := reflect.New(reflect.TypeOf(tt.v).Elem()).Interface()
			if err := json.Unmarshal(b, back); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(back, tt.v) {
				t.Errorf("round trip: got %+v, want %+v", back, tt.v)
			}
		})
	}
}

func TestWorkloadJSONDefaultsCapacity(t *testing.T) {
	var w Workload
	if err := json.Unmarshal([]byte(`{"workloadIps":[],"namespace":"ns"}`), &w); err != nil {
		t.Fatal(err)
	}
	if w.Capacity != 1 {
		t.Errorf("capacity = %d, want 1", w.Capacity)
	}
}

func TestIdentityDefaults(t *testing.T) {
	tests := []struct {
		w    Workload
		want string
	}{
		{Workload{Namespace: "ns"}, "spiffe://cluster.local/ns/ns/sa/default"},
		{Workload{Namespace: "ns", TrustDomain: "td", ServiceAccount: "sa"}, "spiffe://td/ns/ns/sa/sa"},
	}
	for _, tt := range tests {
		if got := tt.w.Identity().String(); got != tt.want {
			t.Errorf("Identity() = %s, want %s", got, tt.want)
		}
	}
}

func TestTextForms(t *testing.T) {
	tests := []struct {
		in      string
		want    string // String() of the parsed destination; "" = error
		address bool
	}{
		{"/10.0.0.1", "/10.0.0.1", true},
		{"net/fd00::1", "net/fd00::1", true},
		{"ns/waypoint.ns.svc.cluster.local", "ns/waypoint.ns.svc.cluster.local", false},
		{"ns/1.2.3", "ns/1.2.3", false}, // not an IP: a hostname
		{"nohost", "", false},
		{"/host", "", false},
		{"ns/", "", false},
	}
	for _, tt := range tests {
		var d GatewayDestination
		err := d.UnmarshalText([]byte(tt.in))
		if tt.want == "" {
			if err == nil {
				t.Errorf("%q: parsed as %v, want error", tt.in, d)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if got := d.String(); got != tt.want || (d.Address != nil) != tt.address {
			t.Errorf("%q: got %q (address=%v), want %q (address=%v)", tt.in, got, d.Address != nil, tt.want, tt.address)
		}
	}
	var p InboundProtocol
	if err := p.UnmarshalText([]byte("QUIC")); err == nil {
		t.Error("unknown protocol accepted")
	}
}

func FuzzParseNetworkAddress(f *testing.F) {
	for _, s := range []string{"/127.10.0.1", "remote/127.10.0.2", "n/fd00::1", "x/::ffff:1.2.3.4", "nope", "/", "a/b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseNetworkAddress(s)
		if err != nil {
			return
		}
		b, err := ParseNetworkAddress(a.String())
		if err != nil || b != a {
			t.Fatalf("round trip of %q: %v -> %v, %v", s, a, b, err)
		}
	})
}

func FuzzGatewayDestination(f *testing.F) {
	for _, s := range []string{"/10.0.0.1", "ns/waypoint", "ns/1.2.3", "net/fd00::1%eth0", "", "/", "a/b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var d GatewayDestination
		if err := d.UnmarshalText([]byte(s)); err != nil {
			return
		}
		if (d.Address == nil) == (d.Hostname == nil) {
			t.Fatalf("%q: want exactly one of address and hostname: %+v", s, d)
		}
		text, err := d.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back GatewayDestination
		if err := back.UnmarshalText(text); err != nil || back.String() != d.String() {
			t.Fatalf("round trip of %q: %q -> %v, %v", s, text, back, err)
		}
	})
}
