package xds

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/ztunnel-go/ztunnel/workload"
	"github.com/ztunnel-go/ztunnel/xds/pb/securitypb"
	"github.com/ztunnel-go/ztunnel/xds/pb/workloadpb"
)

const (
	benchWorkloads = 10000
	benchServices  = 1000
	benchPolicies  = 1000
)

func benchAny(tb testing.TB, typ string, m proto.Message) *anypb.Any {
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return &anypb.Any{TypeUrl: typ, Value: b}
}

func benchWorkload(i int) *workloadpb.Workload {
	ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	svc := fmt.Sprintf("ns%d/svc%d.ns%d.svc.cluster.local", i%100, i%benchServices, i%100)
	return &workloadpb.Workload{
		Uid:  fmt.Sprintf("Kubernetes//Pod/ns%d/pod-%d", i%100, i),
		Name: fmt.Sprintf("pod-%d", i), Namespace: fmt.Sprintf("ns%d", i%100),
		ServiceAccount: fmt.Sprintf("sa%d", i%50), Addresses: [][]byte{ip.AsSlice()},
		TunnelProtocol: workloadpb.TunnelProtocol_HBONE, Node: fmt.Sprintf("node%d", i%20),
		WorkloadName: fmt.Sprintf("deploy-%d", i%benchServices), CanonicalName: fmt.Sprintf("app%d", i%benchServices),
		CanonicalRevision: "v1", ClusterId: "Kubernetes",
		Services: map[string]*workloadpb.PortList{svc: {Ports: []*workloadpb.Port{{ServicePort: 80, TargetPort: 8080}}}},
	}
}

// fullPush returns the responses of a full push: every address, then every policy.
func fullPush(tb testing.TB) []*discoveryv3.DeltaDiscoveryResponse {
	addr := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: AddressType, Nonce: "1"}
	for i := range benchWorkloads {
		w := benchWorkload(i)
		addr.Resources = append(addr.Resources, &discoveryv3.Resource{Name: w.Uid, Version: "1",
			Resource: benchAny(tb, AddressType, &workloadpb.Address{Type: &workloadpb.Address_Workload{Workload: w}})})
	}
	for i := range benchServices {
		ns := fmt.Sprintf("ns%d", i%100)
		s := &workloadpb.Service{
			Name: fmt.Sprintf("svc%d", i), Namespace: ns, Hostname: fmt.Sprintf("svc%d.%s.svc.cluster.local", i, ns),
			Addresses: []*workloadpb.NetworkAddress{{Address: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}).AsSlice()}},
			Ports:     []*workloadpb.Port{{ServicePort: 80, TargetPort: 8080}},
		}
		addr.Resources = append(addr.Resources, &discoveryv3.Resource{Name: s.Namespace + "/" + s.Hostname, Version: "1",
			Resource: benchAny(tb, AddressType, &workloadpb.Address{Type: &workloadpb.Address_Service{Service: s}})})
	}
	pol := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: AuthorizationType, Nonce: "2"}
	for i := range benchPolicies {
		p := &securitypb.Authorization{
			Name: fmt.Sprintf("p%d", i), Namespace: fmt.Sprintf("ns%d", i%100), Scope: securitypb.Scope_NAMESPACE,
			Action: securitypb.Action_ALLOW,
			Rules: []*securitypb.Rule{{Clauses: []*securitypb.Clause{{Matches: []*securitypb.Match{{
				Principals:       []*securitypb.StringMatch{{MatchType: &securitypb.StringMatch_Exact{Exact: fmt.Sprintf("cluster.local/ns/ns%d/sa/sa%d", i%100, i%50)}}},
				DestinationPorts: []uint32{8080},
			}}}}}},
		}
		pol.Resources = append(pol.Resources, &discoveryv3.Resource{Name: p.Namespace + "/" + p.Name, Version: "1",
			Resource: benchAny(tb, AuthorizationType, p)})
	}
	return []*discoveryv3.DeltaDiscoveryResponse{addr, pol}
}

// newBenchClient is a client whose connection is never used: responses are fed to handle.
func newBenchClient(tb testing.TB, store *workload.Store) *Client {
	cc, err := grpc.NewClient("passthrough:///unused", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cc.Close() })
	c, err := NewClient(ClientConfig{Conn: cc, Node: &corev3.Node{Id: "bench"}, Store: store})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func applyAll(tb testing.TB, c *Client, resps []*discoveryv3.DeltaDiscoveryResponse) {
	for _, r := range resps {
		if ack := c.handle(r); ack.ErrorDetail != nil {
			tb.Fatalf("NACK: %s", ack.ErrorDetail.GetMessage())
		}
	}
}

// BenchmarkFullPush applies a full push of 10,000 workloads, 1,000 services and
// 1,000 policies (decode, convert, store) to an empty client, and reports the
// heap the resulting store holds per workload.
func BenchmarkFullPush(b *testing.B) {
	resps := fullPush(b)
	b.ReportAllocs()
	var heap uint64
	for b.Loop() {
		b.StopTimer()
		store := workload.NewStore()
		c := newBenchClient(b, store)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		applyAll(b, c, resps)
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap = after.HeapAlloc - before.HeapAlloc
		if n := store.Snapshot().NumWorkloads(); n != benchWorkloads {
			b.Fatalf("%d workloads", n)
		}
		runtime.KeepAlive(c)
		b.StartTimer()
	}
	b.ReportMetric(float64(heap)/benchWorkloads, "heap-B/workload")
}

// BenchmarkIncrementalUpdate applies one changed workload on top of a full push.
func BenchmarkIncrementalUpdate(b *testing.B) {
	store := workload.NewStore()
	c := newBenchClient(b, store)
	applyAll(b, c, fullPush(b))
	updates := make([]*discoveryv3.DeltaDiscoveryResponse, 2)
	for i := range updates {
		w := benchWorkload(42)
		w.Addresses = [][]byte{netip.AddrFrom4([4]byte{10, 250, 0, byte(i)}).AsSlice()}
		updates[i] = &discoveryv3.DeltaDiscoveryResponse{TypeUrl: AddressType, Nonce: "u", Resources: []*discoveryv3.Resource{{
			Name: w.Uid, Version: fmt.Sprint(i), Resource: benchAny(b, AddressType, &workloadpb.Address{Type: &workloadpb.Address_Workload{Workload: w}}),
		}}}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		applyAll(b, c, updates[i%2:i%2+1])
		i++
	}
}
