package workload

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/ztunnel-go/ztunnel/policy"
)

const (
	benchWorkloads = 10_000
	benchServices  = 1_000
	benchPolicies  = 1_000
)

func benchIP(base byte, i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, base, byte(i >> 8), byte(i)})
}

// benchWorkload looks like what istiod sends for a pod: full identity,
// node, locality, one service with a port map and one selector policy.
func benchWorkload(i int, ip netip.Addr) *Workload {
	svc := NamespacedHostname{Namespace: fmt.Sprintf("ns%d", i%100), Hostname: fmt.Sprintf("svc%d.ns%d.svc.cluster.local", i%benchServices, i%100)}
	return &Workload{
		UID:                   fmt.Sprintf("Kubernetes//Pod/ns%d/pod-%d", i%100, i),
		Name:                  fmt.Sprintf("pod-%d", i),
		Namespace:             svc.Namespace,
		ServiceAccount:        fmt.Sprintf("sa%d", i%benchServices),
		TrustDomain:           "cluster.local",
		WorkloadIPs:           []netip.Addr{ip},
		Protocol:              ProtocolHBONE,
		Node:                  fmt.Sprintf("node-%d", i%50),
		ClusterID:             "Kubernetes",
		WorkloadName:          fmt.Sprintf("deploy-%d", i%benchServices),
		WorkloadType:          "deployment",
		CanonicalName:         fmt.Sprintf("app-%d", i%benchServices),
		CanonicalRevision:     "v1",
		Locality:              Locality{Region: "region", Zone: "zone-a"},
		AuthorizationPolicies: []string{fmt.Sprintf("ns%d/policy-%d", i%100, i%benchPolicies)},
		Services:              []NamespacedHostname{svc},
		ServicePorts:          map[NamespacedHostname]map[uint16]uint16{svc: {80: 8080}},
		Capacity:              1,
	}
}

func benchUpdate() Update {
	var u Update
	for i := range benchWorkloads {
		u.Workloads = append(u.Workloads, benchWorkload(i, benchIP(0, i)))
	}
	for i := range benchServices {
		ns := fmt.Sprintf("ns%d", i%100)
		u.Services = append(u.Services, &Service{
			Name:            fmt.Sprintf("svc%d", i),
			Namespace:       ns,
			Hostname:        fmt.Sprintf("svc%d.%s.svc.cluster.local", i, ns),
			VIPs:            []NetworkAddress{{Address: benchIP(96, i)}},
			Ports:           map[uint16]uint16{80: 8080},
			SubjectAltNames: []string{"spiffe://cluster.local/ns/" + ns + "/sa/sa"},
		})
	}
	for i := range benchPolicies {
		u.Policies = append(u.Policies, &policy.Authorization{
			Name: fmt.Sprintf("policy-%d", i), Namespace: fmt.Sprintf("ns%d", i%100),
			Scope: policy.ScopeWorkloadSelector, Action: policy.ActionAllow,
			Rules: [][][]policy.Match{{{{DestinationPorts: []uint16{80}}}}},
		})
	}
	return u
}

func fullStore(tb testing.TB) *Store {
	s := NewStore()
	if err := s.Replace(benchUpdate()); err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkFullPush applies a full push of 10,000 workloads, 1,000
// services and 1,000 policies to an empty store (target: < 1 s).
func BenchmarkFullPush(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		u := benchUpdate()
		s := NewStore()
		b.StartTimer()
		if err := s.Replace(u); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIncremental replaces one workload (new IP) in a full store
// (target: < 1 ms).
func BenchmarkIncremental(b *testing.B) {
	s := fullStore(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		w := benchWorkload(i%benchWorkloads, benchIP(byte(1+i%2), i%benchWorkloads))
		if err := s.Apply(Update{Workloads: []*Workload{w}}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkLookup is the data path: workload by address and service by VIP.
func BenchmarkLookup(b *testing.B) {
	snap := fullStore(b).Snapshot()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if snap.WorkloadByAddr("", benchIP(0, i%benchWorkloads)) == nil ||
			snap.ServiceByVIP("", benchIP(96, i%benchServices)) == nil {
			b.Fatal("lookup failed")
		}
		i++
	}
}

// BenchmarkHeapPerWorkload reports the live heap of a full store divided
// by its workloads (target: < 2 KiB). Services and policies are included,
// so the figure is an upper bound.
func BenchmarkHeapPerWorkload(b *testing.B) {
	for b.Loop() {
		b.ReportMetric(float64(heapOfFullStore(b))/benchWorkloads, "B/workload")
	}
}

func heapOfFullStore(tb testing.TB) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := fullStore(tb)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(s)
	return after.HeapAlloc - before.HeapAlloc
}

func TestHeapPerWorkload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 10,000-workload store")
	}
	if got := heapOfFullStore(t) / benchWorkloads; got > 2048 {
		t.Errorf("heap per workload = %d B, want < 2048", got)
	}
}
