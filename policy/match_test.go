package policy

import (
	"net/netip"
	"testing"

	"github.com/ztunnel-go/ztunnel/tls/identity"
)

func id(td, ns, sa string) identity.ID {
	return identity.ID{TrustDomain: td, Namespace: ns, ServiceAccount: sa}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// The three connections ztunnel's own rbac tests use, plus IPv6 ones.
var (
	plaintextConn = &Conn{SrcIP: netip.MustParseAddr("127.0.0.1"), DstIP: netip.MustParseAddr("127.0.0.2"), DstPort: 8080}
	tlsConn       = &Conn{SrcID: id("td", "namespace", "account"), SrcIP: netip.MustParseAddr("127.0.0.1"), DstIP: netip.MustParseAddr("127.0.0.2"), DstPort: 8080}
	tlsConnAlt    = &Conn{SrcID: id("td-alt", "ns-alt", "sa=alt"), SrcIP: netip.MustParseAddr("127.0.0.3"), DstIP: netip.MustParseAddr("127.0.0.4"), DstPort: 9090}
	v6Conn        = &Conn{SrcID: id("td", "namespace", "account"), SrcIP: netip.MustParseAddr("fd00::1"), DstIP: netip.MustParseAddr("fd00:1::2"), DstPort: 8080}
	mappedConn    = &Conn{SrcIP: netip.MustParseAddr("::ffff:127.0.0.1"), DstIP: netip.MustParseAddr("::ffff:127.0.0.2"), DstPort: 8080}
)

func oneMatch(m Match) *Authorization {
	return &Authorization{Name: "p", Namespace: "ns", Scope: ScopeGlobal, Action: ActionAllow, Rules: [][][]Match{{{m}}}}
}

func TestMatchFields(t *testing.T) {
	type want struct {
		plain, tls, alt, v6, mapped bool
	}
	tests := []struct {
		name string
		m    Match
		want want
	}{
		{"namespaces", Match{Namespaces: []StringMatch{Exact("namespace")}}, want{false, true, false, true, false}},
		{"notNamespaces", Match{NotNamespaces: []StringMatch{Exact("namespace")}}, want{true, false, true, false, true}},
		{"namespaces presence", Match{Namespaces: []StringMatch{Presence()}}, want{false, true, true, true, false}},
		{"notNamespaces presence", Match{NotNamespaces: []StringMatch{Presence()}}, want{true, false, false, false, true}},
		{"namespaces any of two", Match{Namespaces: []StringMatch{Exact("x"), Prefix("ns-")}}, want{false, false, true, false, false}},
		// No identity: an identity field never matches, even one that would match "".
		{"namespaces empty prefix", Match{Namespaces: []StringMatch{Prefix("")}}, want{false, true, true, true, false}},
		{"namespaces empty exact", Match{Namespaces: []StringMatch{Exact("")}}, want{false, false, false, false, false}},
		{"notNamespaces empty exact", Match{NotNamespaces: []StringMatch{Exact("")}}, want{true, true, true, true, true}},

		{"serviceAccounts", Match{ServiceAccounts: []ServiceAccountMatch{{"namespace", "account"}}}, want{false, true, false, true, false}},
		{"notServiceAccounts", Match{NotServiceAccounts: []ServiceAccountMatch{{"namespace", "account"}}}, want{true, false, true, false, true}},
		{"serviceAccounts other namespace", Match{ServiceAccounts: []ServiceAccountMatch{{"ns-alt", "account"}}}, want{false, false, false, false, false}},
		{"serviceAccounts dot is literal", Match{ServiceAccounts: []ServiceAccountMatch{{"namespace", "accoun."}}}, want{false, false, false, false, false}},
		{"serviceAccounts second entry", Match{ServiceAccounts: []ServiceAccountMatch{{"x", "y"}, {"ns-alt", "sa=alt"}}}, want{false, false, true, false, false}},

		{"principals", Match{Principals: []StringMatch{Exact("td/ns/namespace/sa/account")}}, want{false, true, false, true, false}},
		{"notPrincipals", Match{NotPrincipals: []StringMatch{Exact("td/ns/namespace/sa/account")}}, want{true, false, true, false, true}},
		{"principals with scheme never match", Match{Principals: []StringMatch{Exact("spiffe://td/ns/namespace/sa/account")}}, want{false, false, false, false, false}},
		{"principals prefix", Match{Principals: []StringMatch{Prefix("td/ns/")}}, want{false, true, false, true, false}},
		{"principals prefix across pieces", Match{Principals: []StringMatch{Prefix("td-alt/ns/ns-alt/s")}}, want{false, false, true, false, false}},
		{"principals suffix", Match{Principals: []StringMatch{Suffix("/sa/sa=alt")}}, want{false, false, true, false, false}},
		{"principals suffix across pieces", Match{Principals: []StringMatch{Suffix("ace/sa/account")}}, want{false, true, false, true, false}},
		{"principals presence", Match{Principals: []StringMatch{Presence()}}, want{false, true, true, true, false}},
		{"notPrincipals presence", Match{NotPrincipals: []StringMatch{Presence()}}, want{true, false, false, false, true}},
		{"principals dot is literal", Match{Principals: []StringMatch{Exact("td/ns/namespace/sa/accoun.")}}, want{false, false, false, false, false}},
		{"principals exact too long", Match{Principals: []StringMatch{Exact("td/ns/namespace/sa/accountx")}}, want{false, false, false, false, false}},

		{"sourceIps", Match{SourceIPs: []netip.Prefix{pfx("127.0.0.1/32")}}, want{true, true, false, false, true}},
		{"notSourceIps", Match{NotSourceIPs: []netip.Prefix{pfx("127.0.0.1/32")}}, want{false, false, true, true, false}},
		{"sourceIps v6", Match{SourceIPs: []netip.Prefix{pfx("fd00::/64")}}, want{false, false, false, true, false}},
		{"notSourceIps v6", Match{NotSourceIPs: []netip.Prefix{pfx("fd00::/64")}}, want{true, true, true, false, true}},
		{"destinationIps", Match{DestinationIPs: []netip.Prefix{pfx("127.0.0.2/32")}}, want{true, true, false, false, true}},
		{"notDestinationIps", Match{NotDestinationIPs: []netip.Prefix{pfx("127.0.0.2/32")}}, want{false, false, true, true, false}},
		{"destinationIps cidr", Match{DestinationIPs: []netip.Prefix{pfx("127.0.0.1/24")}}, want{true, true, true, false, true}},
		{"destinationIps v6 cidr", Match{DestinationIPs: []netip.Prefix{pfx("fd00::/16")}}, want{false, false, false, true, false}},
		{"destinationIps v4 or v6", Match{DestinationIPs: []netip.Prefix{pfx("fd00:1::/32"), pfx("127.0.0.4/32")}}, want{false, false, true, true, false}},
		{"destinationIps all v4", Match{DestinationIPs: []netip.Prefix{pfx("0.0.0.0/0")}}, want{true, true, true, false, true}},

		{"destinationPorts", Match{DestinationPorts: []uint16{8080}}, want{true, true, false, true, true}},
		{"notDestinationPorts", Match{NotDestinationPorts: []uint16{8080}}, want{false, false, true, false, false}},
		{"destinationPorts any of two", Match{DestinationPorts: []uint16{1, 9090}}, want{false, false, true, false, false}},

		// Fields are AND'ed.
		{"port and namespace", Match{DestinationPorts: []uint16{8080}, Namespaces: []StringMatch{Exact("namespace")}}, want{false, true, false, true, false}},
		{"positive and negative", Match{SourceIPs: []netip.Prefix{pfx("127.0.0.0/8")}, NotSourceIPs: []netip.Prefix{pfx("127.0.0.3/32")}}, want{true, true, false, false, true}},
		{"empty match", Match{}, want{false, false, false, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := oneMatch(tt.m)
			got := want{p.Matches(plaintextConn), p.Matches(tlsConn), p.Matches(tlsConnAlt), p.Matches(v6Conn), p.Matches(mappedConn)}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestStringMatch(t *testing.T) {
	tests := []struct {
		m    StringMatch
		s    string
		want bool
	}{
		{Exact("foo"), "foo", true},
		{Exact("foo"), "not", false},
		{Exact("foo"), "", false},
		{Exact("f.o"), "foo", false},
		{Prefix("foo"), "foobar", true},
		{Prefix("foo"), "notfoo", false},
		{Prefix("foo"), "", false},
		{Suffix("foo"), "barfoo", true},
		{Suffix("foo"), "foonot", false},
		{Suffix("foo"), "", false},
		{Presence(), "foo", true},
		{Presence(), "", false},
		{StringMatch{}, "foo", false},
	}
	for _, tt := range tests {
		if got := tt.m.Match(tt.s); got != tt.want {
			t.Errorf("%v.Match(%q) = %v, want %v", tt.m, tt.s, got, tt.want)
		}
	}
}

func TestRuleNesting(t *testing.T) {
	nsA := Match{Namespaces: []StringMatch{Exact("a")}}
	nsB := Match{Namespaces: []StringMatch{Exact("b")}}
	port80 := Match{DestinationPorts: []uint16{80}}
	conn := func(ns string, port uint16) *Conn {
		return &Conn{SrcID: id("td", ns, "account"), SrcIP: netip.MustParseAddr("10.0.0.1"), DstIP: netip.MustParseAddr("10.0.0.2"), DstPort: port}
	}
	tests := []struct {
		name  string
		rules [][][]Match
		conn  *Conn
		want  bool
	}{
		{"no rules match nothing", nil, conn("a", 80), false},
		{"rule without clauses matches all", [][][]Match{{}}, plaintextConn, true},
		{"empty clause matches all", [][][]Match{{{}}}, plaintextConn, true},
		{"clause of an empty match matches nothing", [][][]Match{{{{}}}}, plaintextConn, false},
		{"empty match beside a matching one", [][][]Match{{{{}, nsA}}}, conn("a", 1), true},
		{"clause OR first", [][][]Match{{{nsA, nsB}, {port80}}}, conn("a", 80), true},
		{"clause OR second", [][][]Match{{{nsA, nsB}, {port80}}}, conn("b", 80), true},
		{"clause AND wrong namespace", [][][]Match{{{nsA, nsB}, {port80}}}, conn("bad", 80), false},
		{"clause AND wrong port", [][][]Match{{{nsA, nsB}, {port80}}}, conn("b", 12345), false},
		{"rules OR first", [][][]Match{{{nsA}}, {{nsB}}}, conn("a", 1), true},
		{"rules OR second", [][][]Match{{{nsA}}, {{nsB}}}, conn("b", 1), true},
		{"rules OR none", [][][]Match{{{nsA}}, {{nsB}}}, conn("c", 1), false},
		{"empty clause ANDed with failing clause", [][][]Match{{{}, {nsA}}}, conn("b", 1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Authorization{Name: "p", Namespace: "ns", Scope: ScopeGlobal, Action: ActionAllow, Rules: tt.rules}
			if got := p.Matches(tt.conn); got != tt.want {
				t.Errorf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPrincipalPieces(t *testing.T) {
	p := newPrincipal(&identity.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "sleep"})
	full := "cluster.local/ns/default/sa/sleep"
	for i := 0; i <= len(full); i++ {
		pre, suf := full[:i], full[i:]
		if !p.hasPrefix(pre) {
			t.Errorf("hasPrefix(%q) = false", pre)
		}
		if !p.hasSuffix(suf) {
			t.Errorf("hasSuffix(%q) = false", suf)
		}
		if p.hasPrefix(pre+"x") && i < len(full) && full[i] != 'x' {
			t.Errorf("hasPrefix(%q) = true", pre+"x")
		}
		if p.hasSuffix("x"+suf) && i > 0 && full[i-1] != 'x' {
			t.Errorf("hasSuffix(%q) = true", "x"+suf)
		}
	}
	if p.hasPrefix(full+"/") || p.hasSuffix("/"+full) {
		t.Error("matched a string longer than the principal")
	}
	if got := p.len(); got != len(full) {
		t.Errorf("len = %d, want %d", got, len(full))
	}
}
