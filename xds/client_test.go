package xds

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	ztconfig "github.com/ztunnel-go/ztunnel/config"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/tls/caclient"
	"github.com/ztunnel-go/ztunnel/workload"
	"github.com/ztunnel-go/ztunnel/xds/pb/securitypb"
	"github.com/ztunnel-go/ztunnel/xds/pb/workloadpb"
	"github.com/ztunnel-go/ztunnel/xds/xdstest"
)

const waitTimeout = 10 * time.Second

func pbWorkload(uid, ip string, svcs ...string) *workloadpb.Workload {
	a := netip.MustParseAddr(ip)
	w := &workloadpb.Workload{
		Uid: uid, Name: uid, Namespace: "default", Addresses: [][]byte{a.AsSlice()},
		TunnelProtocol: workloadpb.TunnelProtocol_HBONE, ServiceAccount: "sa-" + uid, Node: "node1",
	}
	if len(svcs) > 0 {
		w.Services = map[string]*workloadpb.PortList{}
		for _, s := range svcs {
			w.Services[s] = &workloadpb.PortList{Ports: []*workloadpb.Port{{ServicePort: 80, TargetPort: 8080}}}
		}
	}
	return w
}

func pbService(host, vip string) *workloadpb.Service {
	return &workloadpb.Service{
		Name: strings.Split(host, ".")[0], Namespace: "default", Hostname: host,
		Addresses: []*workloadpb.NetworkAddress{{Address: netip.MustParseAddr(vip).AsSlice()}},
		Ports:     []*workloadpb.Port{{ServicePort: 80, TargetPort: 8080}},
	}
}

func pbPolicy(name string, port uint32) *securitypb.Authorization {
	return &securitypb.Authorization{
		Name: name, Namespace: "default", Scope: securitypb.Scope_NAMESPACE, Action: securitypb.Action_DENY,
		Rules: []*securitypb.Rule{{Clauses: []*securitypb.Clause{{Matches: []*securitypb.Match{{DestinationPorts: []uint32{port}}}}}}},
	}
}

// harness is a client connected to an xdstest server.
type harness struct {
	srv       *xdstest.Server
	store     *workload.Store
	client    *Client
	reg       *prometheus.Registry
	tokenPath string
	ready     chan struct{}
}

func newHarness(t *testing.T, mod func(*ClientConfig)) *harness {
	t.Helper()
	pki := xdstest.NewPKI(t, "istiod.istio-system.svc")
	h := &harness{
		srv:       xdstest.Start(t, "127.0.0.1:0", pki.Server),
		store:     workload.NewStore(),
		reg:       prometheus.NewRegistry(),
		tokenPath: filepath.Join(t.TempDir(), "istio-token"),
		ready:     make(chan struct{}),
	}
	if err := os.WriteFile(h.tokenPath, []byte("token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dial := caclient.DialConfig{
		Address:     "https://" + h.srv.Addr(),
		RootCert:    ztconfig.RootCert{Kind: ztconfig.RootCertPEM, PEM: pki.RootPEM},
		AltHostname: "istiod.istio-system.svc",
		Auth:        ztconfig.Auth{Kind: ztconfig.AuthTokenFile, Path: h.tokenPath, ClusterID: "cluster-a"},
		Headers:     map[string]string{"x-extra": "yes"},
		MinBackoff:  10 * time.Millisecond,
		MaxBackoff:  200 * time.Millisecond,
	}
	cc, err := dial.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	node, err := NodeFromConfig(&ztconfig.Config{
		PodName: "ztunnel-x", PodNamespace: "istio-system", NodeName: "node1",
		InstanceIP:    netip.MustParseAddr("10.0.0.10"),
		ProxyMetadata: map[string]string{"CLUSTER_ID": "cluster-a"},
		MetadataJSON:  map[string]string{"LABELS": `{"app":"ztunnel"}`},
	})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	cfg := ClientConfig{
		Conn: cc, Node: node, Store: h.store, Metrics: h.reg,
		Ready:          func() { once.Do(func() { close(h.ready) }) },
		Logger:         slog.New(slog.DiscardHandler),
		InitialBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	if h.client, err = NewClient(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := h.client.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

func (h *harness) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-h.ready:
	case <-time.After(waitTimeout):
		t.Fatal("client never became ready")
	}
}

func isAck(typ string) func(*xdstest.Request) bool {
	return func(r *xdstest.Request) bool {
		return r.TypeUrl == typ && r.ResponseNonce != "" && r.ErrorDetail == nil
	}
}

func TestClientSyncUpdateRemove(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.Address.SetResources(map[string]types.Resource{
		"w1":                                    xdstest.Workload(pbWorkload("w1", "10.1.0.1", "default/svc.default.svc.cluster.local")),
		"w2":                                    xdstest.Workload(pbWorkload("w2", "10.1.0.2")),
		"default/svc.default.svc.cluster.local": xdstest.Service(pbService("svc.default.svc.cluster.local", "10.96.0.1")),
	})
	h.srv.Authorization.SetResources(map[string]types.Resource{"default/deny": pbPolicy("deny", 9999)})
	h.waitReady(t)

	snap := h.store.Snapshot()
	if snap.NumWorkloads() != 2 || snap.NumServices() != 1 || snap.Policies().Len() != 1 {
		t.Fatalf("after sync: %d workloads, %d services, %d policies", snap.NumWorkloads(), snap.NumServices(), snap.Policies().Len())
	}
	svc := snap.ServiceByVIP("", netip.MustParseAddr("10.96.0.1"))
	if svc == nil || svc.Endpoints["w1"] == nil || svc.Endpoints["w1"].Port[80] != 8080 {
		t.Fatalf("service = %+v", svc)
	}
	if w := snap.WorkloadByAddr("", netip.MustParseAddr("10.1.0.2")); w == nil || w.Protocol != workload.ProtocolHBONE || w.ClusterID != "Kubernetes" {
		t.Errorf("w2 = %+v", w)
	}

	// What the client told the server.
	first := h.srv.Requests()[0]
	if got, want := first.GetNode().GetId(), "ztunnel~10.0.0.10~ztunnel-x.istio-system~istio-system.svc.cluster.local"; got != want {
		t.Errorf("node id = %q, want %q", got, want)
	}
	md := first.GetNode().GetMetadata().GetFields()
	if md["NODE_NAME"].GetStringValue() != "node1" || md["CLUSTER_ID"].GetStringValue() != "cluster-a" ||
		md["LABELS"].GetStructValue().GetFields()["app"].GetStringValue() != "ztunnel" {
		t.Errorf("node metadata = %v", md)
	}
	headers := []struct{ key, want string }{
		{"authorization", "Bearer token-1"}, {"clusterid", "cluster-a"}, {"x-extra", "yes"},
	}
	for _, tt := range headers {
		if got := first.Metadata.Get(tt.key); !slices.Equal(got, []string{tt.want}) {
			t.Errorf("header %s = %v, want %s", tt.key, got, tt.want)
		}
	}

	// An update and then removals.
	_, from := h.srv.WaitRequest(0, waitTimeout, isAck(AddressType))
	if err := h.srv.Address.UpdateResource("w2", xdstest.Workload(pbWorkload("w2", "10.1.0.22"))); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "updated w2", waitTimeout, func() bool {
		return h.store.Snapshot().WorkloadByAddr("", netip.MustParseAddr("10.1.0.22")) != nil
	})
	if h.store.Snapshot().WorkloadByAddr("", netip.MustParseAddr("10.1.0.2")) != nil {
		t.Error("old address of w2 still indexed")
	}
	if err := h.srv.Address.DeleteResource("w1"); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Authorization.DeleteResource("default/deny"); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "removals", waitTimeout, func() bool {
		s := h.store.Snapshot()
		return s.WorkloadByUID("w1") == nil && s.Policies().Len() == 0
	})
	if eps := h.store.Snapshot().Service("default/svc.default.svc.cluster.local").Endpoints; len(eps) != 0 {
		t.Errorf("endpoints after removing w1: %v", eps)
	}
	for _, r := range h.srv.Requests()[from:] {
		if r.ErrorDetail != nil {
			t.Errorf("unexpected NACK: %v", r.ErrorDetail)
		}
	}
	if got := counterValue(h.client.metrics.messages.WithLabelValues(AddressType)); got < 3 {
		t.Errorf("istio_xds_message_total{url=Address} = %v, want >= 3", got)
	}
}

func TestClientNacksBadResourcesAlone(t *testing.T) {
	h := newHarness(t, nil)
	badIP := pbWorkload("bad-ip", "10.2.0.2")
	badIP.Addresses = [][]byte{{10, 2, 0}}
	noNamespace := pbWorkload("no-ns", "10.2.0.3")
	noNamespace.Namespace = ""
	h.srv.Address.SetResources(map[string]types.Resource{
		"good":    xdstest.Workload(pbWorkload("good", "10.2.0.1")),
		"garbage": &wrapperspb.BytesValue{Value: []byte{0xff, 0xff, 0xff, 0xff}},
		"bad-ip":  xdstest.Workload(badIP),
		"no-ns":   xdstest.Workload(noNamespace),
		"empty":   &workloadpb.Address{},
	})
	h.srv.Authorization.SetResources(map[string]types.Resource{
		"default/ok":  pbPolicy("ok", 1),
		"default/bad": &securitypb.Authorization{Name: "bad", Namespace: "default", Scope: 7},
	})
	nack, _ := h.srv.WaitRequest(0, waitTimeout, func(r *xdstest.Request) bool {
		return r.TypeUrl == AddressType && r.ErrorDetail != nil
	})
	for _, name := range []string{"garbage", "bad-ip", "no-ns", "empty"} {
		if !strings.Contains(nack.ErrorDetail.GetMessage(), name+": ") {
			t.Errorf("NACK %q does not name %s", nack.ErrorDetail.GetMessage(), name)
		}
	}
	if strings.Contains(nack.ErrorDetail.GetMessage(), "good") {
		t.Errorf("NACK %q names the good resource", nack.ErrorDetail.GetMessage())
	}
	pnack, _ := h.srv.WaitRequest(0, waitTimeout, func(r *xdstest.Request) bool {
		return r.TypeUrl == AuthorizationType && r.ErrorDetail != nil
	})
	if msg := pnack.ErrorDetail.GetMessage(); !strings.Contains(msg, "default/bad: ") || strings.Contains(msg, "default/ok") {
		t.Errorf("policy NACK = %q", msg)
	}
	snap := h.store.Snapshot()
	if snap.WorkloadByUID("good") == nil || snap.NumWorkloads() != 1 || snap.Policies().Get("default/ok") == nil {
		t.Errorf("good resources not applied: %d workloads, policy ok %v", snap.NumWorkloads(), snap.Policies().Get("default/ok"))
	}
	// Not ready: neither type was acked.
	select {
	case <-h.ready:
		t.Error("ready although both types were NACKed")
	default:
	}
	// Fixing the bad resources gives an ACK and readiness.
	h.srv.Address.SetResources(map[string]types.Resource{"good": xdstest.Workload(pbWorkload("good", "10.2.0.1"))})
	h.srv.Authorization.SetResources(map[string]types.Resource{"default/ok": pbPolicy("ok", 1)})
	h.waitReady(t)
}

func TestClientReconnectKeepsConfigAndResumes(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.Address.SetResources(map[string]types.Resource{
		"w1": xdstest.Workload(pbWorkload("w1", "10.3.0.1")),
		"w2": xdstest.Workload(pbWorkload("w2", "10.3.0.2")),
	})
	h.srv.Authorization.SetResources(map[string]types.Resource{"default/p": pbPolicy("p", 1)})
	h.waitReady(t)
	h.srv.WaitRequest(0, waitTimeout, isAck(AuthorizationType))
	_, from := h.srv.WaitRequest(0, waitTimeout, isAck(AddressType))

	// A server restart: the stream breaks, the store keeps serving.
	h.srv.Stop()
	if err := os.WriteFile(h.tokenPath, []byte("token-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if h.store.Snapshot().NumWorkloads() != 2 || h.store.Snapshot().Policies().Len() != 1 {
		t.Fatal("store lost its configuration while disconnected")
	}
	// Changes made while we were away.
	if err := h.srv.Address.UpdateResources(map[string]types.Resource{"w3": xdstest.Workload(pbWorkload("w3", "10.3.0.3"))}, []string{"w1"}); err != nil {
		t.Fatal(err)
	}
	h.srv.Restart()

	init, _ := h.srv.WaitRequest(from+1, waitTimeout, func(r *xdstest.Request) bool {
		return r.TypeUrl == AddressType && r.GetNode() != nil
	})
	if got := init.Metadata.Get("authorization"); !slices.Equal(got, []string{"Bearer token-2"}) {
		t.Errorf("token after reconnect = %v, want the re-read token-2", got)
	}
	got := init.InitialResourceVersions
	if len(got) != 2 || got["w1"] == "" || got["w2"] == "" {
		t.Errorf("initial_resource_versions = %v, want w1 and w2 with versions", got)
	}
	testwait.Until(t, "resync", waitTimeout, func() bool {
		s := h.store.Snapshot()
		return s.WorkloadByUID("w1") == nil && s.WorkloadByUID("w3") != nil && s.WorkloadByUID("w2") != nil
	})
	if h.store.Snapshot().Policies().Len() != 1 {
		t.Error("policy lost across reconnect")
	}
	if n := counterValue(h.client.metrics.terminations.WithLabelValues("Reconnect")) +
		counterValue(h.client.metrics.terminations.WithLabelValues("ConnectionError")) +
		counterValue(h.client.metrics.terminations.WithLabelValues("Error")); n < 1 {
		t.Errorf("no connection termination counted")
	}
}

func TestClientOversizedMessage(t *testing.T) {
	h := newHarness(t, func(c *ClientConfig) { c.MaxMessageSize = 16 << 10 })
	h.srv.Address.SetResources(map[string]types.Resource{"w1": xdstest.Workload(pbWorkload("w1", "10.4.0.1"))})
	h.srv.Authorization.SetResources(map[string]types.Resource{})
	h.waitReady(t)

	big := pbWorkload("big", "10.4.0.2")
	big.CanonicalName = strings.Repeat("x", 32<<10)
	if err := h.srv.Address.UpdateResource("big", xdstest.Workload(big)); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the stream to fail on the oversized message", waitTimeout, func() bool {
		return counterValue(h.client.metrics.terminations.WithLabelValues("Error")) >= 1
	})
	if s := h.store.Snapshot(); s.WorkloadByUID("w1") == nil || s.WorkloadByUID("big") != nil {
		t.Error("store changed by an oversized message")
	}
	// Once the server stops sending it, the client resynchronises.
	if err := h.srv.Address.UpdateResources(map[string]types.Resource{"w2": xdstest.Workload(pbWorkload("w2", "10.4.0.3"))}, []string{"big"}); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "resync after the oversized message", waitTimeout, func() bool { return h.store.Snapshot().WorkloadByUID("w2") != nil })
}

func TestClientOnDemand(t *testing.T) {
	h := newHarness(t, func(c *ClientConfig) { c.OnDemand = true })
	h.srv.Address.SetResources(map[string]types.Resource{
		"w1":         xdstest.Workload(pbWorkload("w1", "10.5.0.1")),
		"/10.5.0.9":  xdstest.Workload(pbWorkload("w9", "10.5.0.9")),
		"/10.5.0.10": xdstest.Workload(pbWorkload("w10", "10.5.0.10")),
	})
	h.srv.Authorization.SetResources(map[string]types.Resource{})
	init, _ := h.srv.WaitRequest(0, waitTimeout, func(r *xdstest.Request) bool { return r.TypeUrl == AddressType })
	if !slices.Equal(init.ResourceNamesSubscribe, []string{"*"}) || !slices.Equal(init.ResourceNamesUnsubscribe, []string{"*"}) {
		t.Errorf("initial on-demand request subscribes %v, unsubscribes %v", init.ResourceNamesSubscribe, init.ResourceNamesUnsubscribe)
	}
	h.waitReady(t)
	if n := h.store.Snapshot().NumWorkloads(); n != 0 {
		t.Fatalf("on-demand client received %d workloads unasked", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := h.client.Demand(ctx, "", netip.MustParseAddr("10.5.0.9")); err != nil {
		t.Fatal(err)
	}
	if w := h.store.Snapshot().WorkloadByAddr("", netip.MustParseAddr("10.5.0.9")); w == nil || w.UID != "w9" {
		t.Errorf("after Demand: %v", w)
	}
	if h.store.Snapshot().NumWorkloads() != 1 {
		t.Errorf("Demand fetched %d workloads, want 1", h.store.Snapshot().NumWorkloads())
	}
	// Concurrent lookups of the same name share one subscription.
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 3 {
		wg.Go(func() {
			if err := h.client.Demand(ctx, "", netip.MustParseAddr("10.5.0.10")); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 || h.store.Snapshot().WorkloadByUID("w10") == nil {
		t.Errorf("concurrent Demand: %d failed, w10 %v", failed.Load(), h.store.Snapshot().WorkloadByUID("w10"))
	}
}

// TestStaticAndXDSAgree builds one mesh as local YAML and as xDS resources and
// checks both give the same store contents.
func TestStaticAndXDSAgree(t *testing.T) {
	const yamlMesh = `
workloads:
- uid: c1//Pod/default/a
  name: a
  namespace: default
  serviceAccount: sa-a
  workloadIps: ["10.0.0.1", "fd00::1"]
  protocol: HBONE
  node: node1
  clusterId: Kubernetes
  workloadType: deployment
  workloadName: a
  canonicalName: a
  canonicalRevision: v1
  waypoint: {destination: "default/wp.default.svc.cluster.local", hboneMtlsPort: 15008}
  authorizationPolicies: [default/allow]
  locality: {region: r, zone: z}
  services:
    default/svc.default.svc.cluster.local: {80: 8080}
- uid: c1//Pod/default/b
  name: b
  namespace: default
  workloadIps: ["10.0.0.2"]
  status: Unhealthy
  clusterId: c2
  workloadType: pod
  capacity: 3
  networkGateway: {destination: "net2/192.168.0.1", hboneMtlsPort: 15008}
  applicationTunnel: {protocol: PROXY, port: 15088}
  services:
    default/svc.default.svc.cluster.local: {}
services:
- name: svc
  namespace: default
  hostname: svc.default.svc.cluster.local
  vips: ["/10.96.0.1", "net2/10.96.0.2"]
  cidrVips: [{network: "", cidr: 10.200.0.0/16}]
  ports: {80: 0, 443: 8443}
  subjectAltNames: ["spiffe://cluster.local/ns/default/sa/sa-a"]
  loadBalancer: {routingPreferences: [Network, Zone], mode: Failover, healthPolicy: AllowAll}
  ipFamilies: IPv4
  canonical: true
  visibility: Namespace
  weightedWaypoints: [{destination: {destination: "default/wp2", hboneMtlsPort: 15008}, weight: 10}]
policies:
- name: allow
  namespace: default
  scope: WorkloadSelector
  action: Allow
  dryRun: true
  rules:
  - - - namespaces: [!Exact default, !Prefix kube]
        notPrincipals: [!Suffix /sa/bad, !Presence []]
        serviceAccounts: [{namespace: default, serviceAccount: sa-a}]
        sourceIps: [10.0.0.0/8]
        notDestinationIps: ["fd00::/64"]
        destinationPorts: [80, 443]
    - - notDestinationPorts: [9999]
`
	static := workload.NewStore()
	if err := LoadLocal(static, []byte(yamlMesh)); err != nil {
		t.Fatal(err)
	}

	ip := func(s string) []byte { return netip.MustParseAddr(s).AsSlice() }
	u32 := func(v uint32) *uint32 { return &v }
	a := &workloadpb.Workload{
		Uid: "c1//Pod/default/a", Name: "a", Namespace: "default", ServiceAccount: "sa-a",
		Addresses: [][]byte{ip("10.0.0.1"), ip("fd00::1")}, TunnelProtocol: workloadpb.TunnelProtocol_HBONE,
		Node: "node1", WorkloadType: workloadpb.WorkloadType_DEPLOYMENT, WorkloadName: "a", CanonicalName: "a", CanonicalRevision: "v1",
		Waypoint: &workloadpb.GatewayAddress{Destination: &workloadpb.GatewayAddress_Hostname{Hostname: &workloadpb.NamespacedHostname{
			Namespace: "default", Hostname: "wp.default.svc.cluster.local"}}, HboneMtlsPort: 15008},
		AuthorizationPolicies: []string{"default/allow"},
		Locality:              &workloadpb.Locality{Region: "r", Zone: "z"},
		Services:              map[string]*workloadpb.PortList{"default/svc.default.svc.cluster.local": {Ports: []*workloadpb.Port{{ServicePort: 80, TargetPort: 8080}}}},
	}
	b := &workloadpb.Workload{
		Uid: "c1//Pod/default/b", Name: "b", Namespace: "default", Addresses: [][]byte{ip("10.0.0.2")},
		Status: workloadpb.WorkloadStatus_UNHEALTHY, ClusterId: "c2", WorkloadType: workloadpb.WorkloadType_POD,
		Capacity: wrapperspb.UInt32(3),
		NetworkGateway: &workloadpb.GatewayAddress{Destination: &workloadpb.GatewayAddress_Address{Address: &workloadpb.NetworkAddress{
			Network: "net2", Address: ip("192.168.0.1")}}, HboneMtlsPort: 15008},
		ApplicationTunnel: &workloadpb.ApplicationTunnel{Protocol: workloadpb.ApplicationTunnel_PROXY, Port: 15088},
		Services:          map[string]*workloadpb.PortList{"default/svc.default.svc.cluster.local": {}},
	}
	svc := &workloadpb.Service{
		Name: "svc", Namespace: "default", Hostname: "svc.default.svc.cluster.local",
		Addresses: []*workloadpb.NetworkAddress{
			{Address: ip("10.96.0.1")}, {Network: "net2", Address: ip("10.96.0.2"), Length: u32(32)},
			{Address: ip("10.200.0.0"), Length: u32(16)},
		},
		Ports:           []*workloadpb.Port{{ServicePort: 80}, {ServicePort: 443, TargetPort: 8443}},
		SubjectAltNames: []string{"spiffe://cluster.local/ns/default/sa/sa-a"},
		LoadBalancing: &workloadpb.LoadBalancing{
			RoutingPreference: []workloadpb.LoadBalancing_Scope{workloadpb.LoadBalancing_NETWORK, workloadpb.LoadBalancing_ZONE},
			Mode:              workloadpb.LoadBalancing_FAILOVER, HealthPolicy: workloadpb.LoadBalancing_ALLOW_ALL,
		},
		IpFamilies: workloadpb.IPFamilies_IPV4_ONLY, Canonical: true, Visibility: workloadpb.Service_NAMESPACE,
		WeightedWaypoints: []*workloadpb.WeightedWaypoint{{Destination: &workloadpb.GatewayAddress{
			Destination:   &workloadpb.GatewayAddress_Hostname{Hostname: &workloadpb.NamespacedHostname{Namespace: "default", Hostname: "wp2"}},
			HboneMtlsPort: 15008}, Weight: 10}},
	}
	sm := func(kind, v string) *securitypb.StringMatch {
		switch kind {
		case "exact":
			return &securitypb.StringMatch{MatchType: &securitypb.StringMatch_Exact{Exact: v}}
		case "prefix":
			return &securitypb.StringMatch{MatchType: &securitypb.StringMatch_Prefix{Prefix: v}}
		case "suffix":
			return &securitypb.StringMatch{MatchType: &securitypb.StringMatch_Suffix{Suffix: v}}
		}
		panic(kind)
	}
	pres := &securitypb.StringMatch{MatchType: &securitypb.StringMatch_Presence{Presence: &emptypb.Empty{}}}
	pol := &securitypb.Authorization{
		Name: "allow", Namespace: "default", Scope: securitypb.Scope_WORKLOAD_SELECTOR, Action: securitypb.Action_ALLOW, DryRun: true,
		Rules: []*securitypb.Rule{{Clauses: []*securitypb.Clause{
			{Matches: []*securitypb.Match{{
				Namespaces:        []*securitypb.StringMatch{sm("exact", "default"), sm("prefix", "kube")},
				NotPrincipals:     []*securitypb.StringMatch{sm("suffix", "/sa/bad"), pres},
				ServiceAccounts:   []*securitypb.ServiceAccountMatch{{Namespace: "default", ServiceAccount: "sa-a"}},
				SourceIps:         []*securitypb.Address{{Address: ip("10.0.0.0"), Length: 8}},
				NotDestinationIps: []*securitypb.Address{{Address: ip("fd00::"), Length: 64}},
				DestinationPorts:  []uint32{80, 443},
			}}},
			{Matches: []*securitypb.Match{{NotDestinationPorts: []uint32{9999}}}},
		}}},
	}

	var u workload.Update
	for _, w := range []*workloadpb.Workload{a, b} {
		cw, err := ConvertWorkload(w)
		if err != nil {
			t.Fatal(err)
		}
		u.Workloads = append(u.Workloads, cw)
	}
	cs, err := ConvertService(svc)
	if err != nil {
		t.Fatal(err)
	}
	u.Services = append(u.Services, cs)
	cp, err := ConvertAuthorization(pol)
	if err != nil {
		t.Fatal(err)
	}
	u.Policies = append(u.Policies, cp)
	dynamic := workload.NewStore()
	if err := dynamic.Apply(u); err != nil {
		t.Fatal(err)
	}

	want, got := static.Snapshot(), dynamic.Snapshot()
	for _, uid := range []string{"c1//Pod/default/a", "c1//Pod/default/b"} {
		if w, g := want.WorkloadByUID(uid), got.WorkloadByUID(uid); !equalJSONish(t, w, g) {
			t.Errorf("workload %s:\n static %+v\n xds    %+v", uid, w, g)
		}
	}
	key := "default/svc.default.svc.cluster.local"
	if w, g := want.Service(key), got.Service(key); !equalJSONish(t, w, g) {
		t.Errorf("service:\n static %+v\n xds    %+v", w, g)
	}
	if w, g := want.Policies().Get("default/allow"), got.Policies().Get("default/allow"); !equalJSONish(t, w, g) {
		t.Errorf("policy:\n static %+v\n xds    %+v", w, g)
	}
	if want.NumWorkloads() != got.NumWorkloads() || want.NumServices() != got.NumServices() || want.Policies().Len() != got.Policies().Len() {
		t.Error("stores differ in size")
	}
}

// equalJSONish reports whether two store values are deeply equal.
func equalJSONish[T any](t *testing.T, a, b *T) bool {
	t.Helper()
	if a == nil || b == nil {
		t.Errorf("missing value: static %v, xds %v", a, b)
		return false
	}
	return reflect.DeepEqual(a, b)
}

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
