package xds

import (
	"net/netip"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ztunnel-go/ztunnel/policy"
	"github.com/ztunnel-go/ztunnel/workload"
	"github.com/ztunnel-go/ztunnel/xds/pb/securitypb"
	"github.com/ztunnel-go/ztunnel/xds/pb/workloadpb"
)

func mustMarshal(f *testing.F, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

func FuzzConvertWorkload(f *testing.F) {
	f.Add(mustMarshal(f, pbWorkload("w", "10.0.0.1", "ns/svc")))
	f.Add(mustMarshal(f, benchWorkload(7)))
	w := pbWorkload("gw", "fd00::1")
	w.Waypoint = &workloadpb.GatewayAddress{Destination: &workloadpb.GatewayAddress_Address{Address: &workloadpb.NetworkAddress{Address: []byte{1, 2, 3, 4}}}}
	f.Add(mustMarshal(f, w))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var pb workloadpb.Workload
		if proto.Unmarshal(data, &pb) != nil {
			return
		}
		w, err := ConvertWorkload(&pb)
		if err != nil {
			return
		}
		if len(w.WorkloadIPs) != len(pb.GetAddresses()) || len(w.Services) != len(pb.GetServices()) {
			t.Fatalf("converted %d IPs and %d services from %d and %d", len(w.WorkloadIPs), len(w.Services), len(pb.GetAddresses()), len(pb.GetServices()))
		}
		for _, ip := range w.WorkloadIPs {
			if !ip.IsValid() {
				t.Fatal("invalid IP accepted")
			}
		}
		// The store must take or reject it without panicking.
		_ = workload.NewStore().Apply(workload.Update{Workloads: []*workload.Workload{w}})
	})
}

func FuzzConvertService(f *testing.F) {
	f.Add(mustMarshal(f, pbService("svc.ns.svc.cluster.local", "10.96.0.1")))
	l := uint32(16)
	f.Add(mustMarshal(f, &workloadpb.Service{Name: "s", Namespace: "ns", Hostname: "h",
		Addresses:     []*workloadpb.NetworkAddress{{Address: netip.MustParseAddr("10.200.0.0").AsSlice(), Length: &l}},
		LoadBalancing: &workloadpb.LoadBalancing{RoutingPreference: []workloadpb.LoadBalancing_Scope{workloadpb.LoadBalancing_ZONE}}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var pb workloadpb.Service
		if proto.Unmarshal(data, &pb) != nil {
			return
		}
		s, err := ConvertService(&pb)
		if err != nil {
			return
		}
		if len(s.VIPs)+len(s.CIDRVIPs) != len(pb.GetAddresses()) {
			t.Fatalf("%d addresses became %d VIPs and %d CIDRs", len(pb.GetAddresses()), len(s.VIPs), len(s.CIDRVIPs))
		}
		store := workload.NewStore()
		if store.Apply(workload.Update{Services: []*workload.Service{s}}) == nil {
			if store.Snapshot().Service(s.Key()) == nil {
				t.Fatal("accepted service not stored")
			}
		}
	})
}

func FuzzConvertAuthorization(f *testing.F) {
	f.Add(mustMarshal(f, pbPolicy("p", 80)))
	f.Add(mustMarshal(f, &securitypb.Authorization{Name: "a", Namespace: "ns", Rules: []*securitypb.Rule{{Clauses: []*securitypb.Clause{{
		Matches: []*securitypb.Match{{SourceIps: []*securitypb.Address{{Address: []byte{10, 0, 0, 0}, Length: 8}}}},
	}}}}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var pb securitypb.Authorization
		if proto.Unmarshal(data, &pb) != nil {
			return
		}
		p, err := ConvertAuthorization(&pb)
		if err != nil {
			return
		}
		if len(p.Rules) != len(pb.GetRules()) {
			t.Fatalf("%d rules became %d", len(pb.GetRules()), len(p.Rules))
		}
		_ = workload.NewStore().Apply(workload.Update{Policies: []*policy.Authorization{p}})
	})
}
