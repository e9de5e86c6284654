package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Authorization is one L4 authorization policy, as istiod sends it (istio.security.Authorization)
// and as ztunnel's local config writes it.
//
// A policy matches a connection when any of its Rules matches. A rule matches when all of its
// clauses match; a rule without clauses matches everything. A clause matches when any of its
// Matches matches; a clause without matches matches everything. A policy without rules matches
// nothing, and neither does an empty Match (one with no field set).
//
// Values handed to a [Set] must not be modified afterwards: the Set and its readers share them.
type Authorization struct {
	// Name and Namespace identify the policy; Key() joins them. Both are required.
	Name      string `yaml:"name" json:"name"`
	Namespace string `yaml:"namespace" json:"namespace"`
	// Scope says which workloads the policy applies to. The zero value is invalid.
	Scope Scope `yaml:"scope" json:"scope"`
	// Action is what a match means. The zero value is invalid.
	Action Action `yaml:"action" json:"action"`
	// Rules are OR'ed; each rule is a list of clauses (AND'ed), each clause a list of matches
	// (OR'ed).
	Rules [][][]Match `yaml:"rules" json:"rules"`
	// DryRun policies never change a decision; their matches are only reported.
	DryRun bool `yaml:"dryRun" json:"dryRun"`
}

// Key returns "namespace/name", the key the policy is stored under and the form workloads use
// to list the policies selecting them.
func (a *Authorization) Key() string { return a.Namespace + "/" + a.Name }

// Scope is the set of workloads a policy applies to.
type Scope uint8

const (
	_ Scope = iota // the zero value is invalid
	// ScopeGlobal policies apply to every workload, whatever the policy's namespace (istiod
	// gives this scope to policies of the root namespace).
	ScopeGlobal
	// ScopeNamespace policies apply to every workload of the policy's namespace.
	ScopeNamespace
	// ScopeWorkloadSelector policies apply only to the workloads that list them
	// (Target.Policies).
	ScopeWorkloadSelector
)

var scopeNames = [...]string{ScopeGlobal: "Global", ScopeNamespace: "Namespace", ScopeWorkloadSelector: "WorkloadSelector"}

func (s Scope) String() string {
	if int(s) < len(scopeNames) && scopeNames[s] != "" {
		return scopeNames[s]
	}
	return fmt.Sprintf("Scope(%d)", uint8(s))
}

// MarshalText encodes the scope as ztunnel does: "Global", "Namespace" or "WorkloadSelector".
func (s Scope) MarshalText() ([]byte, error) {
	if int(s) >= len(scopeNames) || scopeNames[s] == "" {
		return nil, fmt.Errorf("policy: cannot encode invalid scope %d", uint8(s))
	}
	return []byte(scopeNames[s]), nil
}

// UnmarshalText accepts exactly the names MarshalText writes.
func (s *Scope) UnmarshalText(b []byte) error {
	for i, n := range scopeNames {
		if n != "" && n == string(b) {
			*s = Scope(i)
			return nil
		}
	}
	return fmt.Errorf("unknown scope %q (want Global, Namespace or WorkloadSelector)", b)
}

// Action is what a policy does with the connections it matches.
type Action uint8

const (
	_ Action = iota // the zero value is invalid
	// ActionAllow policies allow what they match; once any applies, what none matches is
	// rejected.
	ActionAllow
	// ActionDeny policies reject what they match.
	ActionDeny
)

var actionNames = [...]string{ActionAllow: "Allow", ActionDeny: "Deny"}

func (a Action) String() string {
	if int(a) < len(actionNames) && actionNames[a] != "" {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// MarshalText encodes the action as ztunnel does: "Allow" or "Deny".
func (a Action) MarshalText() ([]byte, error) {
	if int(a) >= len(actionNames) || actionNames[a] == "" {
		return nil, fmt.Errorf("policy: cannot encode invalid action %d", uint8(a))
	}
	return []byte(actionNames[a]), nil
}

// UnmarshalText accepts exactly the names MarshalText writes.
func (a *Action) UnmarshalText(b []byte) error {
	for i, n := range actionNames {
		if n != "" && n == string(b) {
			*a = Action(i)
			return nil
		}
	}
	return fmt.Errorf("unknown action %q (want Allow or Deny)", b)
}

// Match is one set of conditions. Every field that is set must hold (AND); within a field any
// value may match (OR); a not* field holds when none of its values match. A Match with no
// field set matches nothing.
//
// Identity fields (Namespaces, ServiceAccounts, Principals) never match a connection without
// a peer identity, so their not* forms always hold for one.
type Match struct {
	// Namespaces match the source identity's namespace.
	Namespaces    []StringMatch `yaml:"namespaces,omitempty" json:"namespaces,omitempty"`
	NotNamespaces []StringMatch `yaml:"notNamespaces,omitempty" json:"notNamespaces,omitempty"`
	// ServiceAccounts match the source identity's namespace and service account, both exactly.
	ServiceAccounts    []ServiceAccountMatch `yaml:"serviceAccounts,omitempty" json:"serviceAccounts,omitempty"`
	NotServiceAccounts []ServiceAccountMatch `yaml:"notServiceAccounts,omitempty" json:"notServiceAccounts,omitempty"`
	// Principals match the source identity written "<trust domain>/ns/<namespace>/sa/<account>"
	// (the SPIFFE URI without its "spiffe://" scheme).
	Principals    []StringMatch `yaml:"principals,omitempty" json:"principals,omitempty"`
	NotPrincipals []StringMatch `yaml:"notPrincipals,omitempty" json:"notPrincipals,omitempty"`
	// SourceIPs and DestinationIPs are CIDRs ("10.0.0.0/8", "fd00::/64").
	SourceIPs         []netip.Prefix `yaml:"sourceIps,omitempty" json:"sourceIps,omitempty"`
	NotSourceIPs      []netip.Prefix `yaml:"notSourceIps,omitempty" json:"notSourceIps,omitempty"`
	DestinationIPs    []netip.Prefix `yaml:"destinationIps,omitempty" json:"destinationIps,omitempty"`
	NotDestinationIPs []netip.Prefix `yaml:"notDestinationIps,omitempty" json:"notDestinationIps,omitempty"`
	// DestinationPorts match the port the connection was addressed to.
	DestinationPorts    []uint16 `yaml:"destinationPorts,omitempty" json:"destinationPorts,omitempty"`
	NotDestinationPorts []uint16 `yaml:"notDestinationPorts,omitempty" json:"notDestinationPorts,omitempty"`
}

// IsEmpty reports whether no field is set; such a Match matches nothing.
func (m *Match) IsEmpty() bool {
	return len(m.Namespaces) == 0 && len(m.NotNamespaces) == 0 &&
		len(m.ServiceAccounts) == 0 && len(m.NotServiceAccounts) == 0 &&
		len(m.Principals) == 0 && len(m.NotPrincipals) == 0 &&
		len(m.SourceIPs) == 0 && len(m.NotSourceIPs) == 0 &&
		len(m.DestinationIPs) == 0 && len(m.NotDestinationIPs) == 0 &&
		len(m.DestinationPorts) == 0 && len(m.NotDestinationPorts) == 0
}

// ServiceAccountMatch matches a source identity whose namespace and service account both equal
// the given ones. Nothing is a wildcard.
type ServiceAccountMatch struct {
	Namespace      string `yaml:"namespace" json:"namespace"`
	ServiceAccount string `yaml:"serviceAccount" json:"serviceAccount"`
}

// MatchKind is the comparison a StringMatch makes.
type MatchKind uint8

const (
	_ MatchKind = iota // the zero value is invalid
	// KindExact matches a string equal to Value.
	KindExact
	// KindPrefix matches a string starting with Value.
	KindPrefix
	// KindSuffix matches a string ending with Value.
	KindSuffix
	// KindPresence matches any non-empty string; Value is unused.
	KindPresence
)

var kindNames = [...]string{KindExact: "Exact", KindPrefix: "Prefix", KindSuffix: "Suffix", KindPresence: "Presence"}

func (k MatchKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("MatchKind(%d)", uint8(k))
}

// StringMatch is one string condition. Its encodings are ztunnel's: {"Exact": "x"} in JSON,
// `!Exact x` in YAML (the single-key mapping `{Exact: x}` is accepted too), and for presence
// {"Presence": []} or `!Presence []`.
type StringMatch struct {
	Kind  MatchKind
	Value string
}

// Exact returns a StringMatch for strings equal to v.
func Exact(v string) StringMatch { return StringMatch{Kind: KindExact, Value: v} }

// Prefix returns a StringMatch for strings starting with v.
func Prefix(v string) StringMatch { return StringMatch{Kind: KindPrefix, Value: v} }

// Suffix returns a StringMatch for strings ending with v.
func Suffix(v string) StringMatch { return StringMatch{Kind: KindSuffix, Value: v} }

// Presence returns a StringMatch for any non-empty string.
func Presence() StringMatch { return StringMatch{Kind: KindPresence} }

func (m StringMatch) String() string {
	if m.Kind == KindPresence {
		return "Presence"
	}
	return m.Kind.String() + "(" + m.Value + ")"
}

// ErrInvalid is wrapped by every error Validate returns.
var ErrInvalid = errors.New("invalid authorization policy")

// Validate reports what would make the policy impossible to index or evaluate as written:
// missing name or namespace, a '/' in the namespace (keys are "namespace/name"), an unset scope
// or action, an invalid CIDR, or a malformed string match. The error wraps ErrInvalid and names
// the offending field.
func (a *Authorization) Validate() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrInvalid, a.Key(), fmt.Sprintf(format, args...))
	}
	switch {
	case a.Name == "":
		return fail("name is empty")
	case a.Namespace == "":
		return fail("namespace is empty")
	case strings.Contains(a.Namespace, "/"):
		return fail("namespace contains '/'")
	}
	if int(a.Scope) >= len(scopeNames) || scopeNames[a.Scope] == "" {
		return fail("scope is unset or unknown (%d)", uint8(a.Scope))
	}
	if int(a.Action) >= len(actionNames) || actionNames[a.Action] == "" {
		return fail("action is unset or unknown (%d)", uint8(a.Action))
	}
	for r, rule := range a.Rules {
		for c, clause := range rule {
			for i := range clause {
				if err := clause[i].validate(); err != nil {
					return fail("rules[%d][%d][%d].%v", r, c, i, err)
				}
			}
		}
	}
	return nil
}

func (m *Match) validate() error {
	strs := []struct {
		name string
		v    []StringMatch
	}{
		{"namespaces", m.Namespaces}, {"notNamespaces", m.NotNamespaces},
		{"principals", m.Principals}, {"notPrincipals", m.NotPrincipals},
	}
	for _, f := range strs {
		for i, s := range f.v {
			if err := s.validate(); err != nil {
				return fmt.Errorf("%s[%d]: %w", f.name, i, err)
			}
		}
	}
	nets := []struct {
		name string
		v    []netip.Prefix
	}{
		{"sourceIps", m.SourceIPs}, {"notSourceIps", m.NotSourceIPs},
		{"destinationIps", m.DestinationIPs}, {"notDestinationIps", m.NotDestinationIPs},
	}
	for _, f := range nets {
		for i, p := range f.v {
			if !p.IsValid() {
				return fmt.Errorf("%s[%d]: invalid CIDR", f.name, i)
			}
		}
	}
	return nil
}

func (m StringMatch) validate() error {
	switch m.Kind {
	case KindExact, KindPrefix, KindSuffix:
		return nil
	case KindPresence:
		if m.Value != "" {
			return fmt.Errorf("presence match carries a value %q", m.Value)
		}
		return nil
	default:
		return fmt.Errorf("string match kind is unset or unknown (%d)", uint8(m.Kind))
	}
}
