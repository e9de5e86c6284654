package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"testing"

	"github.com/ztunnel-go/ztunnel/policy"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	"github.com/ztunnel-go/ztunnel/workload"
)

// The types below mirror the shapes `istioctl ztunnel-config` decodes /config_dump into
// (istio/istio istioctl/pkg/writer/ztunnel/configdump). Decoding our dump into them with
// encoding/json, as istioctl does, proves the field names and JSON types line up.

type ictlLocality struct {
	Region, Zone, Subzone string
}

type ictlGateway struct {
	Destination string `json:"destination"`
}

type ictlWorkload struct {
	UID               string       `json:"uid"`
	WorkloadIPs       []string     `json:"workloadIps"`
	Waypoint          *ictlGateway `json:"waypoint,omitempty"`
	NetworkGateway    *ictlGateway `json:"networkGateway,omitempty"`
	Protocol          string       `json:"protocol"`
	Name              string       `json:"name"`
	Namespace         string       `json:"namespace"`
	ServiceAccount    string       `json:"serviceAccount"`
	WorkloadName      string       `json:"workloadName"`
	WorkloadType      string       `json:"workloadType"`
	CanonicalName     string       `json:"canonicalName"`
	CanonicalRevision string       `json:"canonicalRevision"`
	ClusterID         string       `json:"clusterId"`
	TrustDomain       string       `json:"trustDomain,omitempty"`
	Locality          ictlLocality `json:"locality,omitempty"`
	Node              string       `json:"node"`
	Network           string       `json:"network,omitempty"`
	Status            string       `json:"status"`
	Hostname          string       `json:"hostname"`
	ApplicationTunnel struct {
		Protocol string  `json:"protocol"`
		Port     *uint16 `json:"port,omitempty"`
	} `json:"applicationTunnel,omitempty"`
	AuthorizationPolicies []string `json:"authorizationPolicies,omitempty"`
}

type ictlEndpoint struct {
	WorkloadUID string            `json:"workloadUid"`
	Service     string            `json:"service"`
	Address     string            `json:"address,omitempty"`
	Port        map[uint16]uint16 `json:"port"`
}

type ictlService struct {
	Name         string         `json:"name"`
	Namespace    string         `json:"namespace"`
	Hostname     string         `json:"hostname"`
	Addresses    []string       `json:"vips"`
	Ports        map[string]int `json:"ports"`
	LoadBalancer *struct {
		Mode               string   `json:"mode"`
		RoutingPreferences []string `json:"routingPreferences"`
		HealthPolicy       string   `json:"healthPolicy"`
	} `json:"loadBalancer,omitempty"`
	Waypoint        *ictlGateway             `json:"waypoint,omitempty"`
	Endpoints       map[string]*ictlEndpoint `json:"endpoints"`
	SubjectAltNames []string                 `json:"subjectAltNames,omitempty"`
	IPFamilies      string                   `json:"ipFamilies"`
}

type ictlStringMatch struct {
	Exact    string `json:"Exact,omitempty"`
	Suffix   string `json:"Suffix,omitempty"`
	Prefix   string `json:"Prefix,omitempty"`
	Presence any    `json:"Presence,omitempty"`
}

type ictlSAMatch struct {
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
}

type ictlMatch struct {
	Namespaces          []ictlStringMatch `json:"namespaces,omitempty"`
	NotNamespaces       []ictlStringMatch `json:"notNamespaces,omitempty"`
	Principals          []ictlStringMatch `json:"principals,omitempty"`
	NotPrincipals       []ictlStringMatch `json:"notPrincipals,omitempty"`
	SourceIps           []string          `json:"sourceIps,omitempty"`
	NotSourceIps        []string          `json:"notSourceIps,omitempty"`
	DestinationIps      []string          `json:"destinationIps,omitempty"`
	NotDestinationIps   []string          `json:"notDestinationIps,omitempty"`
	DestinationPorts    []uint16          `json:"destinationPorts,omitempty"`
	NotDestinationPorts []uint16          `json:"notDestinationPorts,omitempty"`
	ServiceAccounts     []ictlSAMatch     `json:"serviceAccounts,omitempty"`
	NotServiceAccounts  []ictlSAMatch     `json:"notServiceAccounts,omitempty"`
}

type ictlPolicy struct {
	Name      string           `json:"name"`
	Namespace string           `json:"namespace"`
	Scope     string           `json:"scope"`
	Action    string           `json:"action"`
	Rules     [][][]*ictlMatch `json:"rules"`
}

type ictlCert struct {
	Pem            string `json:"pem"`
	SerialNumber   string `json:"serialNumber"`
	ValidFrom      string `json:"validFrom"`
	ExpirationTime string `json:"expirationTime"`
}

type ictlDump struct {
	Workloads    []*ictlWorkload `json:"workloads"`
	Services     []*ictlService  `json:"services"`
	Policies     []*ictlPolicy   `json:"policies"`
	Certificates []*struct {
		Identity  string      `json:"identity"`
		State     string      `json:"state"`
		CertChain []*ictlCert `json:"certChain"`
	} `json:"certificates"`
	WorkloadState map[string]struct {
		State string `json:"state,omitempty"`
		Info  struct {
			Name, Namespace, TrustDomain, ServiceAccount string
		} `json:"info"`
	} `json:"workloadState"`
}

func TestConfigDumpDecodesAsIstioctl(t *testing.T) {
	s, _ := newServer(t)
	ip := netip.MustParseAddr("10.0.0.5")
	err := s.Store.Apply(workload.Update{
		Workloads: []*workload.Workload{{
			UID: "cluster1//v1/Pod/default/app", Name: "app", Namespace: "default", ServiceAccount: "app",
			WorkloadIPs: []netip.Addr{ip}, Protocol: workload.ProtocolHBONE, Capacity: 1, Node: "node1",
			CanonicalName: "app", CanonicalRevision: "v1", ClusterID: "Kubernetes",
			Locality:              workload.Locality{Region: "r1", Zone: "z1"},
			AuthorizationPolicies: []string{"default/allow-sleep"},
			Waypoint: &workload.GatewayAddress{
				Destination:   workload.GatewayDestination{Address: &workload.NetworkAddress{Address: netip.MustParseAddr("10.0.0.9")}},
				HBONEMTLSPort: 15008,
			},
			Services:     []workload.NamespacedHostname{{Namespace: "default", Hostname: "app.default.svc.cluster.local"}},
			ServicePorts: map[workload.NamespacedHostname]map[uint16]uint16{{Namespace: "default", Hostname: "app.default.svc.cluster.local"}: {80: 8080}},
		}},
		Services: []*workload.Service{{
			Name: "app", Namespace: "default", Hostname: "app.default.svc.cluster.local",
			VIPs:            []workload.NetworkAddress{{Address: netip.MustParseAddr("10.96.0.1")}},
			Ports:           map[uint16]uint16{80: 8080},
			SubjectAltNames: []string{"spiffe://cluster.local/ns/default/sa/app"},
		}},
		Policies: []*policy.Authorization{{
			Name: "allow-sleep", Namespace: "default", Scope: policy.ScopeWorkloadSelector, Action: policy.ActionAllow,
			Rules: [][][]policy.Match{{{{
				Principals:          []policy.StringMatch{policy.Exact("cluster.local/ns/default/sa/sleep")},
				NotNamespaces:       []policy.StringMatch{policy.Prefix("kube-"), policy.Presence()},
				ServiceAccounts:     []policy.ServiceAccountMatch{{Namespace: "default", ServiceAccount: "sleep"}},
				SourceIPs:           []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
				NotDestinationPorts: []uint16{9999},
			}}}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Certs.Get(context.Background(), identity.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "app"}); err != nil {
		t.Fatal(err)
	}
	code, body := do(t, s.AdminHandler(), http.MethodGet, "/config_dump")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	var d ictlDump
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("istioctl's types cannot decode our dump: %v", err)
	}
	if len(d.Workloads) != 1 || len(d.Services) != 1 || len(d.Policies) != 1 || len(d.Certificates) != 1 {
		t.Fatalf("counts: %d workloads, %d services, %d policies, %d certificates",
			len(d.Workloads), len(d.Services), len(d.Policies), len(d.Certificates))
	}
	w := d.Workloads[0]
	if w.Protocol != "HBONE" || w.WorkloadIPs[0] != "10.0.0.5" || w.Status != "Healthy" || w.Node != "node1" ||
		w.Locality.Region != "r1" || w.Waypoint == nil || w.Waypoint.Destination != "/10.0.0.9" {
		t.Errorf("workload as istioctl sees it: %+v (waypoint %+v)", w, w.Waypoint)
	}
	svc := d.Services[0]
	if svc.Ports["80"] != 8080 || svc.Addresses[0] != "/10.96.0.1" {
		t.Errorf("service as istioctl sees it: %+v", svc)
	}
	ep := svc.Endpoints["cluster1//v1/Pod/default/app"]
	if ep == nil || ep.WorkloadUID != "cluster1//v1/Pod/default/app" || ep.Port[80] != 8080 {
		t.Errorf("endpoint as istioctl sees it: %+v", ep)
	}
	p := d.Policies[0]
	m := p.Rules[0][0][0]
	if p.Scope != "WorkloadSelector" || p.Action != "Allow" || m.Principals[0].Exact != "cluster.local/ns/default/sa/sleep" ||
		m.NotNamespaces[0].Prefix != "kube-" || m.NotNamespaces[1].Presence == nil ||
		m.ServiceAccounts[0].ServiceAccount != "sleep" || m.SourceIps[0] != "10.0.0.0/8" || m.NotDestinationPorts[0] != 9999 {
		t.Errorf("policy as istioctl sees it: %+v / %+v", p, m)
	}
	c := d.Certificates[0]
	if c.Identity != "spiffe://cluster.local/ns/default/sa/app" || c.State != "Available" || len(c.CertChain) == 0 ||
		c.CertChain[0].SerialNumber == "" || c.CertChain[0].ExpirationTime == "" {
		t.Errorf("certificate as istioctl sees it: %+v", c)
	}
}
