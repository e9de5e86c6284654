package policy

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ztunnel-go/ztunnel/tls/identity"
	"gopkg.in/yaml.v3"
)

// gen turns fuzz bytes into choices; once the bytes run out every choice is 0.
type gen struct{ b []byte }

func (g *gen) n(max int) int {
	if len(g.b) == 0 {
		return 0
	}
	v := int(g.b[0])
	g.b = g.b[1:]
	return v % max
}

func pick[T any](g *gen, from []T) T { return from[g.n(len(from))] }

// Small pools, so that matches and key collisions are frequent. The strings straddle the
// boundaries between a principal's pieces.
var (
	genNamespaces = []string{"a", "b", "root"}
	genNames      = []string{"p0", "p1", "p2", "p3"}
	genStrings    = []string{"", "a", "b", "t", "td", "td/", "td/ns/a", "td/ns/a/sa/x", "d/ns/a/sa/x", "/sa/x", "a/sa/x", "x", "td/ns/", "ns/b/sa/y", "td2/ns/a/sa/x"}
	genSAs        = []ServiceAccountMatch{{"a", "x"}, {"b", "y"}, {"a", ""}, {"", "x"}}
	genPrefixes   = []netip.Prefix{pfx("10.0.0.0/8"), pfx("10.0.0.1/32"), pfx("0.0.0.0/0"), pfx("fd00::/8"), pfx("::/0"), pfx("::ffff:10.0.0.0/104"), pfx("10.1.2.3/16")}
	genPorts      = []uint16{80, 443, 0}
	genIDs        = []identity.ID{{}, id("td", "a", "x"), id("td", "b", "y"), id("td2", "a", "x"), id("td", "a", "")}
	genAddrs      = []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("192.168.0.1"), netip.MustParseAddr("fd00::1"), netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("2001:db8::1")}
)

func genList[T any](g *gen, max int, one func() T) []T {
	n := g.n(max + 1)
	if n == 0 {
		return nil
	}
	out := make([]T, n)
	for i := range out {
		out[i] = one()
	}
	return out
}

func (g *gen) stringMatch() StringMatch {
	k := MatchKind(1 + g.n(4))
	if k == KindPresence {
		return Presence()
	}
	return StringMatch{Kind: k, Value: pick(g, genStrings)}
}

func (g *gen) match() Match {
	var m Match
	// Each field is set with probability 1/4 so that most matches are small.
	sm := func() []StringMatch {
		if g.n(4) != 0 {
			return nil
		}
		return genList(g, 2, g.stringMatch)
	}
	sa := func() []ServiceAccountMatch {
		if g.n(4) != 0 {
			return nil
		}
		return genList(g, 2, func() ServiceAccountMatch { return pick(g, genSAs) })
	}
	ip := func() []netip.Prefix {
		if g.n(4) != 0 {
			return nil
		}
		return genList(g, 2, func() netip.Prefix { return pick(g, genPrefixes) })
	}
	port := func() []uint16 {
		if g.n(4) != 0 {
			return nil
		}
		return genList(g, 2, func() uint16 { return pick(g, genPorts) })
	}
	m.Namespaces, m.NotNamespaces = sm(), sm()
	m.ServiceAccounts, m.NotServiceAccounts = sa(), sa()
	m.Principals, m.NotPrincipals = sm(), sm()
	m.SourceIPs, m.NotSourceIPs = ip(), ip()
	m.DestinationIPs, m.NotDestinationIPs = ip(), ip()
	m.DestinationPorts, m.NotDestinationPorts = port(), port()
	return m
}

func (g *gen) policy() *Authorization {
	return &Authorization{
		Name:      pick(g, genNames),
		Namespace: pick(g, genNamespaces),
		Scope:     Scope(1 + g.n(3)),
		Action:    Action(1 + g.n(2)),
		DryRun:    g.n(3) == 0,
		Rules: genList(g, 2, func() [][]Match {
			return genList(g, 2, func() []Match { return genList(g, 2, g.match) })
		}),
	}
}

func (g *gen) key() string {
	if g.n(8) == 0 {
		return "junk"
	}
	return pick(g, genNamespaces) + "/" + pick(g, genNames)
}

// refMatches is a direct reading of the matching rules, sharing no code with the engine.
func refMatches(a *Authorization, c *Conn) bool {
	authed := c.SrcID != identity.ID{}
	principal := c.SrcID.TrustDomain + "/ns/" + c.SrcID.Namespace + "/sa/" + c.SrcID.ServiceAccount
	src, dst := c.SrcIP.Unmap(), c.DstIP.Unmap()
	str := func(m StringMatch, s string) bool {
		switch m.Kind {
		case KindExact:
			return s == m.Value
		case KindPrefix:
			return strings.HasPrefix(s, m.Value)
		case KindSuffix:
			return strings.HasSuffix(s, m.Value)
		case KindPresence:
			return s != ""
		}
		panic("kind")
	}
	field := func(npos, nneg int, hit func(neg bool, i int) bool) bool {
		if npos > 0 {
			ok := false
			for i := range npos {
				ok = ok || hit(false, i)
			}
			if !ok {
				return false
			}
		}
		for i := range nneg {
			if hit(true, i) {
				return false
			}
		}
		return true
	}
	matchOne := func(m *Match) bool {
		if reflectEmpty(m) {
			return false
		}
		return field(len(m.Namespaces), len(m.NotNamespaces), func(neg bool, i int) bool {
			l := m.Namespaces
			if neg {
				l = m.NotNamespaces
			}
			return authed && str(l[i], c.SrcID.Namespace)
		}) && field(len(m.Principals), len(m.NotPrincipals), func(neg bool, i int) bool {
			l := m.Principals
			if neg {
				l = m.NotPrincipals
			}
			return authed && str(l[i], principal)
		}) && field(len(m.ServiceAccounts), len(m.NotServiceAccounts), func(neg bool, i int) bool {
			l := m.ServiceAccounts
			if neg {
				l = m.NotServiceAccounts
			}
			return authed && l[i].Namespace == c.SrcID.Namespace && l[i].ServiceAccount == c.SrcID.ServiceAccount
		}) && field(len(m.SourceIPs), len(m.NotSourceIPs), func(neg bool, i int) bool {
			l := m.SourceIPs
			if neg {
				l = m.NotSourceIPs
			}
			return l[i].Contains(src)
		}) && field(len(m.DestinationIPs), len(m.NotDestinationIPs), func(neg bool, i int) bool {
			l := m.DestinationIPs
			if neg {
				l = m.NotDestinationIPs
			}
			return l[i].Contains(dst)
		}) && field(len(m.DestinationPorts), len(m.NotDestinationPorts), func(neg bool, i int) bool {
			l := m.DestinationPorts
			if neg {
				l = m.NotDestinationPorts
			}
			return l[i] == c.DstPort
		})
	}
	for _, rule := range a.Rules {
		all := true
		for _, clause := range rule {
			anyHit := len(clause) == 0
			for i := range clause {
				anyHit = anyHit || matchOne(&clause[i])
			}
			all = all && anyHit
		}
		if all {
			return true
		}
	}
	return false
}

func reflectEmpty(m *Match) bool {
	b, _ := json.Marshal(m)
	return string(b) == "{}"
}

// refEvaluate is ztunnel's algorithm spelled out: gather the applicable policies by scanning
// everything, partition them, and walk the four lists in order.
func refEvaluate(all map[string]*Authorization, t Target, c *Conn) Decision {
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var applicable []*Authorization
	for _, k := range keys {
		if p := all[k]; p.Scope == ScopeNamespace && p.Namespace == t.Namespace {
			applicable = append(applicable, p)
		}
	}
	for _, k := range keys {
		if p := all[k]; p.Scope == ScopeGlobal {
			applicable = append(applicable, p)
		}
	}
	for _, k := range t.Policies {
		if p, ok := all[k]; ok {
			applicable = append(applicable, p)
		}
	}
	var deny, denyDry, allow, allowDry []*Authorization
	for _, p := range applicable {
		switch {
		case p.Action == ActionDeny && p.DryRun:
			denyDry = append(denyDry, p)
		case p.Action == ActionDeny:
			deny = append(deny, p)
		case p.DryRun:
			allowDry = append(allowDry, p)
		default:
			allow = append(allow, p)
		}
	}
	var d Decision
	for _, p := range denyDry {
		if refMatches(p, c) {
			d.DryRun.Deny = p.Key()
			break
		}
	}
	for _, p := range deny {
		if refMatches(p, c) {
			d.Policy, d.Reason = p.Key(), "explicitly denied by: "+p.Key()
			return d
		}
	}
	for _, p := range allowDry {
		if refMatches(p, c) {
			d.DryRun.Allow = p.Key()
			break
		}
	}
	d.DryRun.NoAllowMatched = len(allow) == 0 && len(allowDry) > 0 && d.DryRun.Allow == ""
	if len(allow) == 0 {
		d.Allow, d.Reason = true, ReasonNoAllowPolicies
		return d
	}
	for _, p := range allow {
		if refMatches(p, c) {
			d.Allow, d.Policy, d.Reason = true, p.Key(), "allowed by: "+p.Key()
			return d
		}
	}
	d.Reason = ReasonNotAllowed
	return d
}

func FuzzEvaluate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 0, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add(bytes.Repeat([]byte{1, 2, 0, 3}, 64))
	f.Add(bytes.Repeat([]byte{7, 0, 5, 1, 0, 2, 0, 0, 3}, 40))
	f.Add([]byte("a fairly long seed that mixes many choices together, to start somewhere interesting"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &gen{b: data}
		ref := map[string]*Authorization{}
		initial := genList(g, 6, g.policy)
		for _, p := range initial {
			ref[p.Key()] = p
		}
		s0 := NewSet(initial...)
		check := func(s *Set, ref map[string]*Authorization) {
			t.Helper()
			if s.Len() != len(ref) {
				t.Fatalf("Len = %d, want %d", s.Len(), len(ref))
			}
			for k, p := range ref {
				if s.Get(k) != p {
					t.Fatalf("Get(%q) = %v, want %v", k, s.Get(k), p)
				}
			}
			tgt := Target{Namespace: pick(g, genNamespaces), Policies: genList(g, 4, g.key)}
			c := &Conn{SrcID: pick(g, genIDs), SrcIP: pick(g, genAddrs), DstIP: pick(g, genAddrs), DstPort: pick(g, genPorts)}
			got, want := s.Evaluate(tgt, c), refEvaluate(ref, tgt, c)
			if got != want {
				t.Fatalf("target %+v conn %+v\n got %+v\nwant %+v", tgt, c, got, want)
			}
		}
		check(s0, ref)

		upsert := genList(g, 3, g.policy)
		remove := genList(g, 2, g.key)
		ref1 := maps(ref)
		for _, k := range remove {
			delete(ref1, k)
		}
		for _, p := range upsert {
			ref1[p.Key()] = p
		}
		s1 := s0.With(upsert, remove)
		check(s1, ref1)
		check(s0, ref) // the old set is untouched
	})
}

func maps(m map[string]*Authorization) map[string]*Authorization {
	out := make(map[string]*Authorization, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func FuzzDecodeYAML(f *testing.F) {
	f.Add("policies:\n  - action: Allow\n    rules:\n    - - - notDestinationPorts:\n          - 9999\n    name: deny-9999\n    namespace: default\n    scope: Namespace\n    dryRun: false\n")
	f.Add("policies:\n- {name: p, namespace: ns, scope: Global, action: Deny, dryRun: true, rules: [[[{namespaces: [!Exact a, !Presence []], principals: [{Suffix: /sa/b}]}]]]}\n")
	f.Add("policies:\n- {name: p, namespace: ns, scope: WorkloadSelector, action: Allow, dryRun: false, rules: [[[{serviceAccounts: [{namespace: a, serviceAccount: b}], sourceIps: [10.0.0.0/8, 'fd00::/8'], notDestinationPorts: [1]}], []], []]}\n")
	f.Add("policies: [&a {name: p, namespace: ns, scope: Global, action: Allow, dryRun: false, rules: [[[{namespaces: [*a]}]]]}]\n")
	f.Add("policies:\n- !Exact x\n")
	f.Fuzz(func(t *testing.T, src string) {
		ps, err := decodeStrict(src)
		if err != nil {
			return
		}
		for i := range ps {
			p := &ps[i]
			if p.Validate() != nil {
				continue
			}
			// A valid policy survives JSON and YAML round trips.
			j1, err := json.Marshal(p)
			if err != nil {
				t.Fatalf("marshal valid policy %+v: %v", p, err)
			}
			var back Authorization
			if err := json.Unmarshal(j1, &back); err != nil {
				t.Fatalf("unmarshal %s: %v", j1, err)
			}
			if j2, _ := json.Marshal(&back); !bytes.Equal(j1, j2) {
				t.Fatalf("JSON round trip:\n%s\n%s", j1, j2)
			}
			y, err := yaml.Marshal(localConfig{Policies: []Authorization{*p}})
			if err != nil {
				t.Fatalf("yaml marshal %+v: %v", p, err)
			}
			again, err := decodeStrict(string(y))
			if err != nil || len(again) != 1 {
				t.Fatalf("decode our own YAML %s: %v", y, err)
			}
			if j3, _ := json.Marshal(&again[0]); !bytes.Equal(j1, j3) {
				t.Fatalf("YAML round trip:\n%s\n%s\nvia %s", j1, j3, y)
			}
			// Evaluation does not panic on anything that validates.
			p.Matches(tlsConn)
			p.Matches(plaintextConn)
		}
	})
}

func FuzzPrincipal(f *testing.F) {
	f.Add("cluster.local", "default", "sleep", "cluster.local/ns/def")
	f.Add("td", "", "", "td/ns//sa/")
	f.Add("", "ns", "sa", "/sa/sa")
	f.Fuzz(func(t *testing.T, td, ns, sa, pat string) {
		full := td + "/ns/" + ns + "/sa/" + sa
		p := newPrincipal(&identity.ID{TrustDomain: td, Namespace: ns, ServiceAccount: sa})
		plen := p.len()
		if plen != len(full) {
			t.Fatalf("len = %d, want %d", plen, len(full))
		}
		for _, m := range []StringMatch{Exact(pat), Prefix(pat), Suffix(pat), Presence()} {
			if got, want := m.matchPrincipal(&p, plen), m.Match(full); got != want {
				t.Fatalf("%v on %q: got %v, want %v", m, full, got, want)
			}
		}
	})
}
