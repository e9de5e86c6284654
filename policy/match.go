package policy

import (
	"net/netip"
	"strings"

	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// Conn is what policy sees of one inbound connection.
type Conn struct {
	// SrcID is the verified peer identity; the zero ID means the source is unauthenticated
	// (plaintext inbound on 15006).
	SrcID identity.ID
	// SrcIP and DstIP are the connection's addresses. IPv4-mapped IPv6 addresses are compared
	// as the IPv4 addresses they carry.
	SrcIP, DstIP netip.Addr
	// DstPort is the port the connection was addressed to.
	DstPort uint16
}

// Match reports whether m matches s.
func (m StringMatch) Match(s string) bool {
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
	return false
}

// principal is the string "<td>/ns/<ns>/sa/<sa>" kept in pieces, so that matching it needs no
// allocation.
type principal [5]string

func newPrincipal(id *identity.ID) principal {
	return principal{id.TrustDomain, "/ns/", id.Namespace, "/sa/", id.ServiceAccount}
}

func (p *principal) len() int {
	n := 0
	for _, s := range p {
		n += len(s)
	}
	return n
}

func (p *principal) hasPrefix(pre string) bool {
	for _, s := range p {
		if len(pre) <= len(s) {
			return s[:len(pre)] == pre
		}
		if pre[:len(s)] != s {
			return false
		}
		pre = pre[len(s):]
	}
	return pre == ""
}

func (p *principal) hasSuffix(suf string) bool {
	for i := len(p) - 1; i >= 0; i-- {
		s := p[i]
		if len(suf) <= len(s) {
			return s[len(s)-len(suf):] == suf
		}
		if suf[len(suf)-len(s):] != s {
			return false
		}
		suf = suf[:len(suf)-len(s)]
	}
	return suf == ""
}

// matchPrincipal matches p, whose length is plen.
func (m *StringMatch) matchPrincipal(p *principal, plen int) bool {
	switch m.Kind {
	case KindExact:
		// Compare from the end: principals sharing a trust domain and namespace differ there.
		return len(m.Value) == plen && p.hasSuffix(m.Value)
	case KindPrefix:
		return p.hasPrefix(m.Value)
	case KindSuffix:
		return p.hasSuffix(m.Value)
	case KindPresence:
		return plen > 0
	}
	return false
}

// subject is a Conn prepared for matching: built once per evaluation, on the stack.
type subject struct {
	authenticated bool
	id            identity.ID
	principal     principal
	plen          int // principal.len()
	src, dst      netip.Addr
	port          uint16
}

func (s *subject) init(c *Conn) {
	s.authenticated = !c.SrcID.IsZero()
	s.id = c.SrcID
	s.principal = newPrincipal(&c.SrcID)
	s.plen = s.principal.len()
	s.src = c.SrcIP.Unmap()
	s.dst = c.DstIP.Unmap()
	s.port = c.DstPort
}

// Matches reports whether the policy matches c, whatever its action and dry-run setting.
func (a *Authorization) Matches(c *Conn) bool {
	var s subject
	s.init(c)
	return a.matches(&s)
}

func (a *Authorization) matches(s *subject) bool {
	for _, rule := range a.Rules {
		if ruleMatches(rule, s) {
			return true
		}
	}
	return false
}

func ruleMatches(rule [][]Match, s *subject) bool {
	for _, clause := range rule {
		if len(clause) == 0 {
			continue // an empty clause matches everything
		}
		ok := false
		for i := range clause {
			if clause[i].matches(s) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (m *Match) matches(s *subject) bool {
	// Each set field must hold; a Match with no field set matches nothing. The cheap checks
	// come first.
	set := false
	if len(m.DestinationPorts) != 0 || len(m.NotDestinationPorts) != 0 {
		if !portsMatch(m.DestinationPorts, m.NotDestinationPorts, s.port) {
			return false
		}
		set = true
	}
	if len(m.DestinationIPs) != 0 || len(m.NotDestinationIPs) != 0 {
		if !prefixesMatch(m.DestinationIPs, m.NotDestinationIPs, s.dst) {
			return false
		}
		set = true
	}
	if len(m.SourceIPs) != 0 || len(m.NotSourceIPs) != 0 {
		if !prefixesMatch(m.SourceIPs, m.NotSourceIPs, s.src) {
			return false
		}
		set = true
	}
	if len(m.Namespaces) != 0 || len(m.NotNamespaces) != 0 {
		if !(len(m.Namespaces) == 0 || anyNamespace(m.Namespaces, s)) || anyNamespace(m.NotNamespaces, s) {
			return false
		}
		set = true
	}
	if len(m.ServiceAccounts) != 0 || len(m.NotServiceAccounts) != 0 {
		if !(len(m.ServiceAccounts) == 0 || anyServiceAccount(m.ServiceAccounts, s)) || anyServiceAccount(m.NotServiceAccounts, s) {
			return false
		}
		set = true
	}
	if len(m.Principals) != 0 || len(m.NotPrincipals) != 0 {
		if !(len(m.Principals) == 0 || anyPrincipal(m.Principals, s)) || anyPrincipal(m.NotPrincipals, s) {
			return false
		}
		set = true
	}
	return set
}

// A field holds when its positive list is empty or has a matching entry, and its negative
// list has none.

func portsMatch(pos, neg []uint16, port uint16) bool {
	return (len(pos) == 0 || containsPort(pos, port)) && !containsPort(neg, port)
}

func containsPort(l []uint16, port uint16) bool {
	for _, p := range l {
		if p == port {
			return true
		}
	}
	return false
}

func prefixesMatch(pos, neg []netip.Prefix, ip netip.Addr) bool {
	return (len(pos) == 0 || anyPrefix(pos, ip)) && !anyPrefix(neg, ip)
}

func anyPrefix(l []netip.Prefix, ip netip.Addr) bool {
	for _, p := range l {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// The identity helpers below report whether any entry matches; without a peer identity none
// does.

func anyNamespace(l []StringMatch, s *subject) bool {
	if !s.authenticated {
		return false
	}
	for i := range l {
		if l[i].Match(s.id.Namespace) {
			return true
		}
	}
	return false
}

func anyPrincipal(l []StringMatch, s *subject) bool {
	if !s.authenticated {
		return false
	}
	for i := range l {
		if l[i].matchPrincipal(&s.principal, s.plen) {
			return true
		}
	}
	return false
}

func anyServiceAccount(l []ServiceAccountMatch, s *subject) bool {
	if !s.authenticated {
		return false
	}
	for _, sa := range l {
		if sa.ServiceAccount == s.id.ServiceAccount && sa.Namespace == s.id.Namespace {
			return true
		}
	}
	return false
}
