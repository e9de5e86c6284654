package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/bits"

	"gopkg.in/yaml.v3"
)

// YAML decoding is strict on its own: Authorization, Match and ServiceAccountMatch reject
// unknown fields (and Authorization and ServiceAccountMatch missing ones, as ztunnel's serde
// shape does) whatever the caller's yaml.Decoder settings, because yaml.v3 does not carry
// KnownFields into custom unmarshalers.

var (
	authorizationFields = []string{"name", "namespace", "scope", "action", "rules", "dryRun"}
	matchFields         = []string{
		"namespaces", "notNamespaces", "serviceAccounts", "notServiceAccounts",
		"principals", "notPrincipals", "sourceIps", "notSourceIps",
		"destinationIps", "notDestinationIps", "destinationPorts", "notDestinationPorts",
	}
	serviceAccountFields = []string{"namespace", "serviceAccount"}
)

// checkFields verifies that n is a mapping whose keys are all in known, and that every known
// field is present when required is set.
func checkFields(n *yaml.Node, what string, known []string, required bool) error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s: expected a mapping", n.Line, what)
	}
	var seen uint64
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		idx := -1
		for j, f := range known {
			if k.Kind == yaml.ScalarNode && k.Value == f {
				idx = j
				break
			}
		}
		if idx < 0 {
			return fmt.Errorf("line %d: %s: unknown field %q", k.Line, what, k.Value)
		}
		seen |= 1 << idx
	}
	if required && bits.OnesCount64(seen) != len(known) {
		for j, f := range known {
			if seen&(1<<j) == 0 {
				return fmt.Errorf("line %d: %s: missing field %q", n.Line, what, f)
			}
		}
	}
	return nil
}

// UnmarshalYAML decodes ztunnel's local-config shape strictly: every field is required and
// unknown fields are errors. It does not call Validate.
func (a *Authorization) UnmarshalYAML(n *yaml.Node) error {
	if err := checkFields(n, "policy", authorizationFields, true); err != nil {
		return err
	}
	type plain Authorization
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*a = Authorization(p)
	return nil
}

// UnmarshalYAML decodes one match strictly; every field is optional.
func (m *Match) UnmarshalYAML(n *yaml.Node) error {
	if err := checkFields(n, "policy match", matchFields, false); err != nil {
		return err
	}
	type plain Match
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*m = Match(p)
	return nil
}

// UnmarshalYAML decodes {namespace, serviceAccount}; both are required.
func (s *ServiceAccountMatch) UnmarshalYAML(n *yaml.Node) error {
	if err := checkFields(n, "service account match", serviceAccountFields, true); err != nil {
		return err
	}
	type plain ServiceAccountMatch
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*s = ServiceAccountMatch(p)
	return nil
}

func kindByName(name string) MatchKind {
	for i, n := range kindNames {
		if n != "" && n == name {
			return MatchKind(i)
		}
	}
	return 0
}

const stringMatchForms = "want !Exact v, !Prefix v, !Suffix v, !Presence [], or a single-key mapping such as {Exact: v}"

// UnmarshalYAML accepts serde_yaml's tagged form (`!Exact v`, `!Presence []`) and the
// single-key mapping form (`{Exact: v}`, `{Presence: []}`).
func (m *StringMatch) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if len(n.Tag) > 1 && n.Tag[0] == '!' && n.Tag[1] != '!' {
		k := kindByName(n.Tag[1:])
		if k == 0 {
			return fmt.Errorf("line %d: unknown string match %q: %s", n.Line, n.Tag, stringMatchForms)
		}
		return m.set(k, n)
	}
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 || n.Content[0].Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: invalid string match: %s", n.Line, stringMatchForms)
	}
	k := kindByName(n.Content[0].Value)
	if k == 0 {
		return fmt.Errorf("line %d: unknown string match %q: %s", n.Line, n.Content[0].Value, stringMatchForms)
	}
	return m.set(k, n.Content[1])
}

// set fills m from the value node v of a match of kind k.
func (m *StringMatch) set(k MatchKind, v *yaml.Node) error {
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if k == KindPresence {
		// serde writes the empty tuple variant as an empty sequence; an empty or null value
		// says the same.
		empty := (v.Kind == yaml.SequenceNode && len(v.Content) == 0) ||
			(v.Kind == yaml.ScalarNode && (v.Value == "" || v.ShortTag() == "!!null"))
		if !empty {
			return fmt.Errorf("line %d: Presence takes no value", v.Line)
		}
		*m = Presence()
		return nil
	}
	if v.Kind != yaml.ScalarNode || v.ShortTag() == "!!null" {
		return fmt.Errorf("line %d: %v takes a string", v.Line, k)
	}
	*m = StringMatch{Kind: k, Value: v.Value}
	return nil
}

// MarshalYAML writes serde_yaml's tagged form, which ztunnel itself reads.
func (m StringMatch) MarshalYAML() (any, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	if m.Kind == KindPresence {
		return &yaml.Node{Kind: yaml.SequenceNode, Tag: "!Presence", Style: yaml.FlowStyle}, nil
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!" + m.Kind.String(), Value: m.Value, Style: yaml.DoubleQuotedStyle}, nil
}

// MarshalJSON writes serde_json's externally tagged form: {"Exact":"v"}, {"Presence":[]}.
func (m StringMatch) MarshalJSON() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	if m.Kind == KindPresence {
		return []byte(`{"Presence":[]}`), nil
	}
	v, err := json.Marshal(m.Value)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(v)+12)
	b = append(b, `{"`...)
	b = append(b, m.Kind.String()...)
	b = append(b, `":`...)
	b = append(b, v...)
	return append(b, '}'), nil
}

// UnmarshalJSON reads what MarshalJSON writes; {"Presence":null} is accepted too.
func (m *StringMatch) UnmarshalJSON(b []byte) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("string match: %w", err)
	}
	if len(obj) != 1 {
		return fmt.Errorf(`string match: want exactly one of "Exact", "Prefix", "Suffix", "Presence"`)
	}
	for name, raw := range obj {
		k := kindByName(name)
		switch k {
		case 0:
			return fmt.Errorf("string match: unknown kind %q", name)
		case KindPresence:
			t := bytes.TrimSpace(raw)
			if !bytes.Equal(t, []byte("null")) && !emptyJSONArray(t) {
				return fmt.Errorf("string match: Presence takes no value")
			}
			*m = Presence()
		default:
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("string match %s: %w", name, err)
			}
			*m = StringMatch{Kind: k, Value: s}
		}
	}
	return nil
}

func emptyJSONArray(b []byte) bool {
	if len(b) < 2 || b[0] != '[' || b[len(b)-1] != ']' {
		return false
	}
	return len(bytes.TrimSpace(b[1:len(b)-1])) == 0
}

// MarshalJSON writes ztunnel's shape; nil rule, clause and match lists are written as [] as
// serde does.
func (a Authorization) MarshalJSON() ([]byte, error) {
	type plain Authorization
	p := plain(a)
	p.Rules = make([][][]Match, len(a.Rules))
	for i, rule := range a.Rules {
		p.Rules[i] = make([][]Match, len(rule))
		for j, clause := range rule {
			if clause == nil {
				clause = []Match{}
			}
			p.Rules[i][j] = clause
		}
	}
	return json.Marshal(&p)
}
