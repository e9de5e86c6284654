package policy

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
)

// pol builds a policy whose single rule matches connections from the given principal
// ("*" for any connection).
func pol(ns, name string, scope Scope, action Action, from string) *Authorization {
	rules := [][][]Match{{}}
	if from != "*" {
		rules = [][][]Match{{{{Principals: []StringMatch{Exact(from)}}}}}
	}
	return &Authorization{Name: name, Namespace: ns, Scope: scope, Action: action, Rules: rules}
}

func dry(a *Authorization) *Authorization { a.DryRun = true; return a }

func connFrom(ns, sa string) *Conn {
	return &Conn{SrcID: id("cluster.local", ns, sa), SrcIP: netip.MustParseAddr("10.0.0.1"), DstIP: netip.MustParseAddr("10.0.0.2"), DstPort: 80}
}

const (
	defaultAcct = "cluster.local/ns/default/sa/defaultacct"
	denyAcct    = "cluster.local/ns/default/sa/denyacct"
)

func TestEvaluate(t *testing.T) {
	ns1 := Target{Namespace: "ns1"}
	tests := []struct {
		name     string
		policies []*Authorization
		target   Target
		conn     *Conn
		want     Decision
	}{
		{
			name:   "empty set allows",
			target: ns1, conn: connFrom("default", "x"),
			want: Decision{Allow: true, Reason: ReasonNoAllowPolicies},
		},
		{
			name:     "no allow policy for this namespace",
			policies: []*Authorization{pol("ns1", "allow", ScopeNamespace, ActionAllow, defaultAcct)},
			target:   Target{Namespace: "ns2"}, conn: connFrom("default", "x"),
			want: Decision{Allow: true, Reason: ReasonNoAllowPolicies},
		},
		{
			name:     "allow matches",
			policies: []*Authorization{pol("ns1", "allow", ScopeNamespace, ActionAllow, defaultAcct)},
			target:   ns1, conn: connFrom("default", "defaultacct"),
			want: Decision{Allow: true, Policy: "ns1/allow", Reason: "allowed by: ns1/allow"},
		},
		{
			name:     "allow exists, none matches",
			policies: []*Authorization{pol("ns1", "allow", ScopeNamespace, ActionAllow, defaultAcct)},
			target:   ns1, conn: connFrom("default", "other"),
			want: Decision{Reason: ReasonNotAllowed},
		},
		{
			name: "deny beats allow",
			policies: []*Authorization{
				pol("ns1", "allow", ScopeNamespace, ActionAllow, "*"),
				pol("ns1", "deny", ScopeNamespace, ActionDeny, denyAcct),
			},
			target: ns1, conn: connFrom("default", "denyacct"),
			want: Decision{Policy: "ns1/deny", Reason: "explicitly denied by: ns1/deny"},
		},
		{
			name: "deny not matching leaves allow",
			policies: []*Authorization{
				pol("ns1", "allow", ScopeNamespace, ActionAllow, "*"),
				pol("ns1", "deny", ScopeNamespace, ActionDeny, denyAcct),
			},
			target: ns1, conn: connFrom("default", "defaultacct"),
			want: Decision{Allow: true, Policy: "ns1/allow", Reason: "allowed by: ns1/allow"},
		},
		{
			name:     "deny alone, not matching, allows by default",
			policies: []*Authorization{pol("ns1", "deny", ScopeNamespace, ActionDeny, denyAcct)},
			target:   ns1, conn: connFrom("default", "defaultacct"),
			want: Decision{Allow: true, Reason: ReasonNoAllowPolicies},
		},
		{
			name: "dry-run policies do not decide",
			policies: []*Authorization{
				dry(pol("ns1", "wildcard-allow", ScopeNamespace, ActionAllow, "*")),
				dry(pol("ns1", "wildcard-deny", ScopeNamespace, ActionDeny, "*")),
			},
			target: ns1, conn: connFrom("default", "x"),
			want: Decision{Allow: true, Reason: ReasonNoAllowPolicies, DryRun: DryRun{Deny: "ns1/wildcard-deny", Allow: "ns1/wildcard-allow"}},
		},
		{
			name:     "dry-run allow that does not match",
			policies: []*Authorization{dry(pol("ns1", "a", ScopeNamespace, ActionAllow, defaultAcct))},
			target:   ns1, conn: connFrom("default", "x"),
			want: Decision{Allow: true, Reason: ReasonNoAllowPolicies, DryRun: DryRun{NoAllowMatched: true}},
		},
		{
			name: "dry-run allow not reported when denied",
			policies: []*Authorization{
				dry(pol("ns1", "a", ScopeNamespace, ActionAllow, "*")),
				pol("ns1", "b", ScopeNamespace, ActionDeny, "*"),
			},
			target: ns1, conn: connFrom("default", "x"),
			want: Decision{Policy: "ns1/b", Reason: "explicitly denied by: ns1/b"},
		},
		{
			name: "dry-run deny reported when denied",
			policies: []*Authorization{
				pol("ns1", "a", ScopeNamespace, ActionDeny, "*"),
				dry(pol("ns1", "b", ScopeNamespace, ActionDeny, "*")),
			},
			target: ns1, conn: connFrom("default", "x"),
			want: Decision{Policy: "ns1/a", Reason: "explicitly denied by: ns1/a", DryRun: DryRun{Deny: "ns1/b"}},
		},
		{
			name: "dry-run with real policies",
			policies: []*Authorization{
				pol("ns1", "real-deny", ScopeNamespace, ActionDeny, denyAcct),
				dry(pol("ns1", "dry-run-deny", ScopeNamespace, ActionDeny, defaultAcct)),
				pol("ns1", "real-allow", ScopeNamespace, ActionAllow, defaultAcct),
				dry(pol("ns1", "dry-run-allow", ScopeNamespace, ActionAllow, defaultAcct)),
			},
			target: ns1, conn: connFrom("default", "defaultacct"),
			want: Decision{Allow: true, Policy: "ns1/real-allow", Reason: "allowed by: ns1/real-allow", DryRun: DryRun{Deny: "ns1/dry-run-deny", Allow: "ns1/dry-run-allow"}},
		},
		{
			name:     "global scope applies to every namespace",
			policies: []*Authorization{pol("istio-system", "g", ScopeGlobal, ActionDeny, "*")},
			target:   Target{Namespace: "anything"}, conn: connFrom("default", "x"),
			want: Decision{Policy: "istio-system/g", Reason: "explicitly denied by: istio-system/g"},
		},
		{
			name:     "namespace scope of another namespace does not apply",
			policies: []*Authorization{pol("other", "n", ScopeNamespace, ActionDeny, "*")},
			target:   ns1, conn: connFrom("default", "x"),
			want: Decision{Allow: true, Reason: ReasonNoAllowPolicies},
		},
		{
			name:     "workload selector applies only when listed",
			policies: []*Authorization{pol("ns1", "w", ScopeWorkloadSelector, ActionDeny, "*")},
			target:   ns1, conn: connFrom("default", "x"),
			want: Decision{Allow: true, Reason: ReasonNoAllowPolicies},
		},
		{
			name:     "workload selector listed",
			policies: []*Authorization{pol("ns1", "w", ScopeWorkloadSelector, ActionDeny, "*")},
			target:   Target{Namespace: "ns1", Policies: []string{"ns1/w"}}, conn: connFrom("default", "x"),
			want: Decision{Policy: "ns1/w", Reason: "explicitly denied by: ns1/w"},
		},
		{
			name:     "unknown listed policy is skipped",
			policies: []*Authorization{pol("ns1", "w", ScopeWorkloadSelector, ActionAllow, "*")},
			target:   Target{Namespace: "ns1", Policies: []string{"ns1/gone", "nokey", "ns1/w"}}, conn: connFrom("default", "x"),
			want: Decision{Allow: true, Policy: "ns1/w", Reason: "allowed by: ns1/w"},
		},
		{
			name: "order: namespace, then global, then workload",
			policies: []*Authorization{
				pol("ns1", "w", ScopeWorkloadSelector, ActionDeny, "*"),
				pol("istio-system", "g", ScopeGlobal, ActionDeny, "*"),
				pol("ns1", "z", ScopeNamespace, ActionDeny, "*"),
			},
			target: Target{Namespace: "ns1", Policies: []string{"ns1/w"}}, conn: connFrom("default", "x"),
			want: Decision{Policy: "ns1/z", Reason: "explicitly denied by: ns1/z"},
		},
		{
			name: "allow in one scope, no match in another",
			policies: []*Authorization{
				pol("istio-system", "g", ScopeGlobal, ActionAllow, "nobody"),
				pol("ns1", "w", ScopeWorkloadSelector, ActionAllow, defaultAcct),
			},
			target: Target{Namespace: "ns1", Policies: []string{"ns1/w"}}, conn: connFrom("default", "defaultacct"),
			want: Decision{Allow: true, Policy: "ns1/w", Reason: "allowed by: ns1/w"},
		},
		{
			name:     "no identity against an allow on principals",
			policies: []*Authorization{pol("ns1", "allow", ScopeNamespace, ActionAllow, defaultAcct)},
			target:   ns1, conn: plaintextConn,
			want: Decision{Reason: ReasonNotAllowed},
		},
		{
			name: "no identity matches a deny on notPrincipals",
			policies: []*Authorization{{Name: "d", Namespace: "ns1", Scope: ScopeNamespace, Action: ActionDeny,
				Rules: [][][]Match{{{{NotPrincipals: []StringMatch{Presence()}}}}}}},
			target: ns1, conn: plaintextConn,
			want: Decision{Policy: "ns1/d", Reason: "explicitly denied by: ns1/d"},
		},
		{
			name: "localhost.yaml: allow all ports but 9999, port 9999",
			policies: []*Authorization{{Name: "deny-9999", Namespace: "default", Scope: ScopeNamespace, Action: ActionAllow,
				Rules: [][][]Match{{{{NotDestinationPorts: []uint16{9999}}}}}}},
			target: Target{Namespace: "default"}, conn: &Conn{SrcIP: netip.MustParseAddr("127.0.0.1"), DstIP: netip.MustParseAddr("127.0.0.1"), DstPort: 9999},
			want: Decision{Reason: ReasonNotAllowed},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSet(tt.policies...)
			if got := s.Evaluate(tt.target, tt.conn); got != tt.want {
				t.Errorf("Evaluate:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestNilAndZeroSet(t *testing.T) {
	want := Decision{Allow: true, Reason: ReasonNoAllowPolicies}
	var nilSet *Set
	for _, s := range []*Set{nilSet, {}} {
		if got := s.Evaluate(Target{Namespace: "ns", Policies: []string{"ns/a"}}, tlsConn); got != want {
			t.Errorf("Evaluate = %+v, want %+v", got, want)
		}
		if s.Len() != 0 || s.Get("ns/a") != nil || len(s.All()) != 0 {
			t.Error("empty set is not empty")
		}
	}
	s := nilSet.With([]*Authorization{pol("ns", "a", ScopeNamespace, ActionAllow, "*")}, nil)
	if s.Len() != 1 {
		t.Errorf("Len = %d, want 1", s.Len())
	}
}

func keys(s *Set) []string {
	var out []string
	for _, a := range s.All() {
		out = append(out, a.Key())
	}
	return out
}

func TestWith(t *testing.T) {
	a := pol("ns1", "a", ScopeNamespace, ActionDeny, "*")
	b := pol("ns1", "b", ScopeWorkloadSelector, ActionDeny, "*")
	g := pol("root", "g", ScopeGlobal, ActionDeny, "*")
	s0 := NewSet(a, b, g)
	if got, want := keys(s0), []string{"ns1/a", "ns1/b", "root/g"}; !slices.Equal(got, want) {
		t.Fatalf("All = %v, want %v", got, want)
	}
	if s0.Get("ns1/a") != a || s0.Get("root/g") != g || s0.Get("ns1/zz") != nil || s0.Get("bad") != nil {
		t.Fatal("Get returned the wrong policy")
	}
	before := s0.Evaluate(Target{Namespace: "ns1"}, tlsConn)

	// Change a's scope to workload selector (it must leave the namespace index), drop g,
	// add an allow in another namespace.
	a2 := pol("ns1", "a", ScopeWorkloadSelector, ActionDeny, "*")
	c := pol("ns2", "c", ScopeNamespace, ActionAllow, "nobody")
	s1 := s0.With([]*Authorization{a2, c}, []string{"root/g", "ns9/missing", "no-slash"})

	tests := []struct {
		name string
		set  *Set
		tgt  Target
		want Decision
	}{
		{"old set unchanged", s0, Target{Namespace: "ns1"}, before},
		{"old set global", s0, Target{Namespace: "zz"}, Decision{Policy: "root/g", Reason: "explicitly denied by: root/g"}},
		{"scope change leaves namespace index", s1, Target{Namespace: "ns1"}, Decision{Allow: true, Reason: ReasonNoAllowPolicies}},
		{"scope change, listed", s1, Target{Namespace: "ns1", Policies: []string{"ns1/a"}}, Decision{Policy: "ns1/a", Reason: "explicitly denied by: ns1/a"}},
		{"removed global", s1, Target{Namespace: "zz"}, Decision{Allow: true, Reason: ReasonNoAllowPolicies}},
		{"added namespace policy", s1, Target{Namespace: "ns2"}, Decision{Reason: ReasonNotAllowed}},
	}
	for _, tt := range tests {
		if got := tt.set.Evaluate(tt.tgt, tlsConn); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
	if got, want := keys(s1), []string{"ns1/a", "ns1/b", "ns2/c"}; !slices.Equal(got, want) {
		t.Errorf("All = %v, want %v", got, want)
	}
	if s1.Len() != 3 || s0.Len() != 3 {
		t.Errorf("Len = %d, %d, want 3, 3", s0.Len(), s1.Len())
	}
	if s1.Get("ns1/a") != a2 || s0.Get("ns1/a") != a {
		t.Error("upsert did not replace in the new set only")
	}

	// Remove then upsert of the same key: present. Removing everything: empty.
	s2 := s1.With([]*Authorization{b}, []string{"ns1/b"})
	if s2.Get("ns1/b") != b || s2.Len() != 3 {
		t.Error("key in both upsert and remove should end up present")
	}
	s3 := s2.With(nil, []string{"ns1/a", "ns1/b", "ns2/c"})
	if s3.Len() != 0 || len(s3.All()) != 0 {
		t.Errorf("after removing all: Len %d, All %v", s3.Len(), keys(s3))
	}
	for i, sh := range s3.shards {
		if len(sh) != 0 {
			t.Errorf("shard %d keeps %d empty buckets", i, len(sh))
		}
	}
	// Duplicate keys in NewSet: the later wins.
	d1, d2 := pol("ns", "d", ScopeNamespace, ActionDeny, "*"), pol("ns", "d", ScopeNamespace, ActionAllow, "*")
	if s := NewSet(d1, d2); s.Len() != 1 || s.Get("ns/d") != d2 || len(s.shards[shardOf("ns")]["ns"].scoped) != 1 {
		t.Error("duplicate keys in NewSet")
	}
}

// A namespace containing '/' cannot be split back from its key; the Set must still index and
// remove such a policy consistently (Validate rejects it, but Set does not depend on that).
func TestWithSlashInNamespace(t *testing.T) {
	odd := pol("a/b", "c", ScopeNamespace, ActionDeny, "*")
	s := NewSet(odd)
	if s.Get("a/b/c") != odd {
		t.Fatal("Get")
	}
	if got := s.Evaluate(Target{Namespace: "a/b"}, tlsConn); got.Allow {
		t.Errorf("Evaluate = %+v, want deny", got)
	}
	s = s.With(nil, []string{"a/b/c"})
	if s.Len() != 0 || s.Evaluate(Target{Namespace: "a/b"}, tlsConn).Policy != "" {
		t.Error("policy survived removal")
	}
}

func TestEvaluateAllocs(t *testing.T) {
	s, tgt, conn := benchSet(10000)
	allocs := testing.AllocsPerRun(1000, func() {
		if d := s.Evaluate(tgt, conn); !d.Allow {
			t.Fatalf("unexpected decision %+v", d)
		}
	})
	if allocs != 0 {
		t.Errorf("Evaluate allocates %v times per call, want 0", allocs)
	}
}

// Readers keep using a Set while a writer derives new ones (run with -race).
func TestConcurrentReaders(t *testing.T) {
	s, tgt, conn := benchSet(500)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 2000 {
				if d := s.Evaluate(tgt, conn); !d.Allow {
					t.Errorf("unexpected decision %+v", d)
					return
				}
			}
		})
	}
	next := s
	for i := range 200 {
		next = next.With([]*Authorization{pol(tgt.Namespace, fmt.Sprint("x", i), ScopeNamespace, ActionDeny, "*")}, nil)
	}
	wg.Wait()
	if d := next.Evaluate(tgt, conn); d.Allow {
		t.Errorf("new set should deny, got %+v", d)
	}
}

func TestDecisionLogValue(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	log.Info("rbac", "decision", Decision{Policy: "ns/d", Reason: "explicitly denied by: ns/d", DryRun: DryRun{Deny: "ns/x"}})
	log.Info("rbac", "decision", Decision{Allow: true, Reason: ReasonNoAllowPolicies, DryRun: DryRun{NoAllowMatched: true}})
	want := `level=INFO msg=rbac decision.allow=false decision.reason="explicitly denied by: ns/d" decision.policy=ns/d decision.dry_run_deny=ns/x
level=INFO msg=rbac decision.allow=true decision.reason="no allow policies, allow" decision.dry_run_no_allow_matched=true
`
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}
