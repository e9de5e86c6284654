package policy

import (
	"fmt"
	"net/netip"
	"testing"
)

// benchSet builds n policies: two Global ones in istio-system, then namespaces of ten policies
// each (three Namespace-scoped, seven WorkloadSelector). The target sees ten: its namespace's
// three, the two global ones and five it lists; the connection is allowed only by the last
// listed one, so every applicable policy is evaluated.
func benchSet(n int) (*Set, Target, *Conn) {
	ps := []*Authorization{
		{Name: "global-deny", Namespace: "istio-system", Scope: ScopeGlobal, Action: ActionDeny,
			Rules: [][][]Match{{{{Principals: []StringMatch{Suffix("/sa/blocked")}}}}}},
		{Name: "global-metrics", Namespace: "istio-system", Scope: ScopeGlobal, Action: ActionAllow,
			Rules: [][][]Match{{{{DestinationPorts: []uint16{15020}}}}}},
	}
	for i := 0; len(ps) < n; i++ {
		ns := fmt.Sprintf("ns-%d", i)
		ps = append(ps,
			&Authorization{Name: "deny-ips", Namespace: ns, Scope: ScopeNamespace, Action: ActionDeny,
				Rules: [][][]Match{{{{SourceIPs: []netip.Prefix{pfx("192.168.0.0/16"), pfx("fd00::/8")}}}}}},
			&Authorization{Name: "allow-other", Namespace: ns, Scope: ScopeNamespace, Action: ActionAllow,
				Rules: [][][]Match{{{{Principals: []StringMatch{Exact("cluster.local/ns/other/sa/a")}}}, {{DestinationPorts: []uint16{80}}}}}},
			&Authorization{Name: "allow-team", Namespace: ns, Scope: ScopeNamespace, Action: ActionAllow,
				Rules: [][][]Match{{{{Namespaces: []StringMatch{Prefix("team-")}}}}}},
		)
		for k := 0; k < 7 && len(ps) < n; k++ {
			ps = append(ps, &Authorization{Name: fmt.Sprintf("w%d", k), Namespace: ns, Scope: ScopeWorkloadSelector, Action: ActionAllow,
				Rules: [][][]Match{{
					{{Principals: []StringMatch{Exact(fmt.Sprintf("cluster.local/ns/%s/sa/w%d", ns, k))}}},
					{{DestinationPorts: []uint16{8080, 8443}}},
				}}})
		}
	}
	ns := fmt.Sprintf("ns-%d", (n/10)/2)
	tgt := Target{Namespace: ns}
	for k := range 5 {
		tgt.Policies = append(tgt.Policies, fmt.Sprintf("%s/w%d", ns, k))
	}
	conn := &Conn{
		SrcID: id("cluster.local", ns, "w4"),
		SrcIP: netip.MustParseAddr("10.1.2.3"), DstIP: netip.MustParseAddr("10.4.5.6"), DstPort: 8080,
	}
	return NewSet(ps...), tgt, conn
}

func BenchmarkEvaluate(b *testing.B) {
	s, tgt, conn := benchSet(10000)
	if s.Len() != 10000 {
		b.Fatalf("Len = %d", s.Len())
	}
	if d := s.Evaluate(tgt, conn); !d.Allow || d.Policy != tgt.Policies[4] {
		b.Fatalf("unexpected decision %+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Evaluate(tgt, conn)
	}
}

// BenchmarkWith replaces one policy and removes another in a 10,000-policy set.
func BenchmarkWith(b *testing.B) {
	s, _, _ := benchSet(10000)
	up := []*Authorization{{Name: "allow-team", Namespace: "ns-7", Scope: ScopeNamespace, Action: ActionAllow,
		Rules: [][][]Match{{{{Namespaces: []StringMatch{Prefix("group-")}}}}}}}
	rm := []string{"ns-900/w3"}
	b.ReportAllocs()
	for b.Loop() {
		s.With(up, rm)
	}
}

func BenchmarkNewSet(b *testing.B) {
	s, _, _ := benchSet(10000)
	all := s.All()
	b.ReportAllocs()
	for b.Loop() {
		NewSet(all...)
	}
}
