package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// localConfig is the part of ztunnel's local config this package owns.
type localConfig struct {
	Policies []Authorization `yaml:"policies"`
}

func decodeStrict(src string) ([]Authorization, error) {
	d := yaml.NewDecoder(strings.NewReader(src))
	d.KnownFields(true)
	var c localConfig
	if err := d.Decode(&c); err != nil {
		return nil, err
	}
	return c.Policies, nil
}

func TestDecodeYAML(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []Authorization
	}{
		{
			// ztunnel's examples/localhost.yaml, verbatim shape.
			name: "localhost.yaml",
			src: `
policies:
  - action: Allow
    rules:
    - - - notDestinationPorts:
          - 9999
    name: deny-9999
    namespace: default
    scope: Namespace
    dryRun: false
`,
			want: []Authorization{{Name: "deny-9999", Namespace: "default", Scope: ScopeNamespace, Action: ActionAllow,
				Rules: [][][]Match{{{{NotDestinationPorts: []uint16{9999}}}}}}},
		},
		{
			// serde_yaml 0.9 writes enum variants as tags.
			name: "tagged string matches",
			src: `
policies:
- name: p
  namespace: ns
  scope: Global
  action: Deny
  dryRun: true
  rules:
  - - - namespaces: [!Exact default, !Prefix "team-"]
        notNamespaces: [!Suffix -test]
        principals:
        - !Exact cluster.local/ns/default/sa/sleep
        - !Presence []
        notPrincipals:
        - !Presence
`,
			want: []Authorization{{Name: "p", Namespace: "ns", Scope: ScopeGlobal, Action: ActionDeny, DryRun: true,
				Rules: [][][]Match{{{{
					Namespaces:    []StringMatch{Exact("default"), Prefix("team-")},
					NotNamespaces: []StringMatch{Suffix("-test")},
					Principals:    []StringMatch{Exact("cluster.local/ns/default/sa/sleep"), Presence()},
					NotPrincipals: []StringMatch{Presence()},
				}}}}}},
		},
		{
			name: "single-key mapping string matches and every field",
			src: `
policies:
- name: p
  namespace: ns
  scope: WorkloadSelector
  action: Allow
  dryRun: false
  rules:
  - - - namespaces: [{Exact: a}, {Prefix: b}, {Suffix: c}, {Presence: []}, {Presence: null}]
        serviceAccounts:
        - namespace: default
          serviceAccount: sleep
        notServiceAccounts: [{namespace: x, serviceAccount: "y.z"}]
        principals: [{Exact: "td/ns/a/sa/b"}]
        notPrincipals: [{Suffix: "/sa/b"}]
        sourceIps: [10.0.0.0/8, "fd00::/64"]
        notSourceIps: [10.1.0.0/16]
        destinationIps: [192.168.1.1/32]
        notDestinationIps: ["::1/128"]
        destinationPorts: [80, 443]
        notDestinationPorts: [15000]
    - []
  - []
`,
			want: []Authorization{{Name: "p", Namespace: "ns", Scope: ScopeWorkloadSelector, Action: ActionAllow,
				Rules: [][][]Match{
					{
						{{
							Namespaces:          []StringMatch{Exact("a"), Prefix("b"), Suffix("c"), Presence(), Presence()},
							ServiceAccounts:     []ServiceAccountMatch{{"default", "sleep"}},
							NotServiceAccounts:  []ServiceAccountMatch{{"x", "y.z"}},
							Principals:          []StringMatch{Exact("td/ns/a/sa/b")},
							NotPrincipals:       []StringMatch{Suffix("/sa/b")},
							SourceIPs:           []netip.Prefix{pfx("10.0.0.0/8"), pfx("fd00::/64")},
							NotSourceIPs:        []netip.Prefix{pfx("10.1.0.0/16")},
							DestinationIPs:      []netip.Prefix{pfx("192.168.1.1/32")},
							NotDestinationIPs:   []netip.Prefix{pfx("::1/128")},
							DestinationPorts:    []uint16{80, 443},
							NotDestinationPorts: []uint16{15000},
						}},
						{},
					},
					{},
				}}},
		},
		{
			name: "anchors and aliases",
			src: `
policies:
- name: p
  namespace: ns
  scope: Namespace
  action: Allow
  dryRun: false
  rules: [[[&m {namespaces: [&s !Exact a]}], [*m]], [[{principals: [*s]}]]]
`,
			want: []Authorization{{Name: "p", Namespace: "ns", Scope: ScopeNamespace, Action: ActionAllow,
				Rules: [][][]Match{
					{{{Namespaces: []StringMatch{Exact("a")}}}, {{Namespaces: []StringMatch{Exact("a")}}}},
					{{{Principals: []StringMatch{Exact("a")}}}},
				}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeStrict(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			for i := range got {
				if err := got[i].Validate(); err != nil {
					t.Errorf("Validate: %v", err)
				}
			}
		})
	}
}

func TestDecodeYAMLErrors(t *testing.T) {
	const head = "policies:\n- name: p\n  namespace: ns\n  scope: Global\n  action: Allow\n  dryRun: false\n"
	tests := []struct {
		name, src, want string
	}{
		{"unknown policy field", head + "  rules: []\n  extra: 1\n", `unknown field "extra"`},
		{"unknown match field", head + "  rules: [[[{sourceIP: [10.0.0.0/8]}]]]\n", `unknown field "sourceIP"`},
		{"unknown service account field", head + "  rules: [[[{serviceAccounts: [{namespace: a, serviceAccount: b, x: c}]}]]]\n", `unknown field "x"`},
		{"missing service account field", head + "  rules: [[[{serviceAccounts: [{namespace: a}]}]]]\n", `missing field "serviceAccount"`},
		{"missing rules", head, `missing field "rules"`},
		{"missing dryRun", "policies:\n- {name: p, namespace: ns, scope: Global, action: Allow, rules: []}\n", `missing field "dryRun"`},
		{"bad scope", "policies:\n- {name: p, namespace: ns, scope: global, action: Allow, rules: [], dryRun: false}\n", `unknown scope "global"`},
		{"proto scope name", "policies:\n- {name: p, namespace: ns, scope: WORKLOAD_SELECTOR, action: Allow, rules: [], dryRun: false}\n", `unknown scope`},
		{"bad action", "policies:\n- {name: p, namespace: ns, scope: Global, action: ALLOW, rules: [], dryRun: false}\n", `unknown action "ALLOW"`},
		{"bad cidr", head + "  rules: [[[{sourceIps: [10.0.0.0/33]}]]]\n", `netip.ParsePrefix`},
		{"bare ip", head + "  rules: [[[{sourceIps: [10.0.0.1]}]]]\n", `no '/'`},
		{"port out of range", head + "  rules: [[[{destinationPorts: [65536]}]]]\n", `cannot unmarshal`},
		{"unknown match tag", head + "  rules: [[[{namespaces: [!Regex a.*]}]]]\n", `unknown string match "!Regex"`},
		{"unknown match key", head + "  rules: [[[{namespaces: [{exact: a}]}]]]\n", `unknown string match "exact"`},
		{"two keys", head + "  rules: [[[{namespaces: [{Exact: a, Prefix: b}]}]]]\n", `invalid string match`},
		{"bare string", head + "  rules: [[[{namespaces: [default]}]]]\n", `invalid string match`},
		{"presence with value", head + "  rules: [[[{namespaces: [!Presence [a]]}]]]\n", `Presence takes no value`},
		{"exact with list", head + "  rules: [[[{namespaces: [{Exact: [a]}]}]]]\n", `Exact takes a string`},
		{"exact with null", head + "  rules: [[[{namespaces: [{Exact: ~}]}]]]\n", `Exact takes a string`},
		{"match not a mapping", head + "  rules: [[[ [a] ]]]\n", `expected a mapping`},
		{"policy not a mapping", "policies: [a]\n", `expected a mapping`},
		{"rules wrong depth", head + "  rules: [[{namespaces: []}]]\n", `cannot unmarshal`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeStrict(tt.src)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func fullPolicy() Authorization {
	return Authorization{Name: "p", Namespace: "ns", Scope: ScopeWorkloadSelector, Action: ActionDeny, DryRun: true,
		Rules: [][][]Match{
			{{{
				Namespaces:          []StringMatch{Exact("a\"b"), Prefix("b")},
				NotNamespaces:       []StringMatch{Suffix("c"), Presence()},
				ServiceAccounts:     []ServiceAccountMatch{{"default", "sleep"}},
				NotServiceAccounts:  []ServiceAccountMatch{{"x", "y"}},
				Principals:          []StringMatch{Exact("td/ns/a/sa/b")},
				NotPrincipals:       []StringMatch{Presence()},
				SourceIPs:           []netip.Prefix{pfx("10.0.0.0/8"), pfx("fd00::/64")},
				NotSourceIPs:        []netip.Prefix{pfx("10.1.2.3/16")},
				DestinationIPs:      []netip.Prefix{pfx("192.168.1.1/32")},
				NotDestinationIPs:   []netip.Prefix{pfx("::1/128")},
				DestinationPorts:    []uint16{80, 443},
				NotDestinationPorts: []uint16{0, 65535},
			}, {DestinationPorts: []uint16{1}}}, {}},
			{},
		}}
}

func TestJSONShape(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{
			"localhost.yaml policy",
			Authorization{Name: "deny-9999", Namespace: "default", Scope: ScopeNamespace, Action: ActionAllow,
				Rules: [][][]Match{{{{NotDestinationPorts: []uint16{9999}}}}}},
			`{"name":"deny-9999","namespace":"default","scope":"Namespace","action":"Allow","rules":[[[{"notDestinationPorts":[9999]}]]],"dryRun":false}`,
		},
		{
			"nil rules",
			Authorization{Name: "n", Namespace: "ns", Scope: ScopeGlobal, Action: ActionDeny, Rules: [][][]Match{{nil}}},
			`{"name":"n","namespace":"ns","scope":"Global","action":"Deny","rules":[[[]]],"dryRun":false}`,
		},
		{
			"no rules",
			&Authorization{Name: "n", Namespace: "ns", Scope: ScopeGlobal, Action: ActionDeny},
			`{"name":"n","namespace":"ns","scope":"Global","action":"Deny","rules":[],"dryRun":false}`,
		},
		{
			"string matches",
			[]StringMatch{Exact("a"), Prefix("b"), Suffix("c"), Presence()},
			`[{"Exact":"a"},{"Prefix":"b"},{"Suffix":"c"},{"Presence":[]}]`,
		},
		{
			"identities and addresses",
			Match{ServiceAccounts: []ServiceAccountMatch{{"ns", "sa"}}, SourceIPs: []netip.Prefix{pfx("fd00::/8")}},
			`{"serviceAccounts":[{"namespace":"ns","serviceAccount":"sa"}],"sourceIps":["fd00::/8"]}`,
		},
	}
	for _, tt := range tests {
		got, err := json.Marshal(tt.in)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	in := []Authorization{fullPolicy(), {Name: "e", Namespace: "ns", Scope: ScopeGlobal, Action: ActionAllow, Rules: [][][]Match{}}}

	j, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON []Authorization
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fromJSON); err != nil {
		t.Fatalf("decode %s: %v", j, err)
	}
	if !reflect.DeepEqual(fromJSON, in) {
		t.Errorf("JSON round trip:\n got %+v\nwant %+v\nvia %s", fromJSON, in, j)
	}

	y, err := yaml.Marshal(localConfig{Policies: in})
	if err != nil {
		t.Fatal(err)
	}
	fromYAML, err := decodeStrict(string(y))
	if err != nil {
		t.Fatalf("decode %s: %v", y, err)
	}
	if !reflect.DeepEqual(fromYAML, in) {
		t.Errorf("YAML round trip:\n got %+v\nwant %+v\nvia %s", fromYAML, in, y)
	}
	// We write serde_yaml's tagged form, which ztunnel reads.
	for _, want := range []string{`!Exact "td/ns/a/sa/b"`, `!Presence []`, `!Prefix "b"`} {
		if !strings.Contains(string(y), want) {
			t.Errorf("YAML output lacks %s:\n%s", want, y)
		}
	}
}

func TestStringMatchJSONErrors(t *testing.T) {
	for _, src := range []string{
		`"Presence"`, `{}`, `{"Exact":"a","Prefix":"b"}`, `{"exact":"a"}`, `{"Exact":1}`,
		`{"Presence":["x"]}`, `{"Presence":{}}`, `[]`,
	} {
		var m StringMatch
		if err := json.Unmarshal([]byte(src), &m); err == nil {
			t.Errorf("%s: decoded as %v, want an error", src, m)
		}
	}
	for src, want := range map[string]StringMatch{
		`{"Presence":null}`:   Presence(),
		`{"Presence":[ ]}`:    Presence(),
		`{"Suffix":"\u00e9"}`: Suffix("é"),
	} {
		var m StringMatch
		if err := json.Unmarshal([]byte(src), &m); err != nil || m != want {
			t.Errorf("%s: got %v, %v; want %v", src, m, err, want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := func() *Authorization {
		return &Authorization{Name: "p", Namespace: "ns", Scope: ScopeNamespace, Action: ActionAllow,
			Rules: [][][]Match{{{{Namespaces: []StringMatch{Exact("a")}, SourceIPs: []netip.Prefix{pfx("10.0.0.0/8")}}}}}}
	}
	tests := []struct {
		name   string
		modify func(a *Authorization)
		want   string // "" for valid
	}{
		{"valid", func(a *Authorization) {}, ""},
		{"full", func(a *Authorization) { *a = fullPolicy() }, ""},
		{"no rules", func(a *Authorization) { a.Rules = nil }, ""},
		{"empty name", func(a *Authorization) { a.Name = "" }, "name is empty"},
		{"empty namespace", func(a *Authorization) { a.Namespace = "" }, "namespace is empty"},
		{"slash in namespace", func(a *Authorization) { a.Namespace = "a/b" }, "namespace contains '/'"},
		{"unset scope", func(a *Authorization) { a.Scope = 0 }, "scope is unset"},
		{"unknown scope", func(a *Authorization) { a.Scope = 9 }, "scope is unset or unknown (9)"},
		{"unset action", func(a *Authorization) { a.Action = 0 }, "action is unset"},
		{"zero prefix", func(a *Authorization) { a.Rules[0][0][0].NotDestinationIPs = []netip.Prefix{{}} }, "rules[0][0][0].notDestinationIps[0]: invalid CIDR"},
		{"unset string match", func(a *Authorization) { a.Rules[0][0][0].Principals = []StringMatch{{Value: "x"}} }, "rules[0][0][0].principals[0]: string match kind is unset"},
		{"presence with value", func(a *Authorization) {
			a.Rules = append(a.Rules, [][]Match{{{}, {NotNamespaces: []StringMatch{{Kind: KindPresence, Value: "x"}}}}})
		}, "rules[1][0][1].notNamespaces[0]: presence match carries a value"},
	}
	for _, tt := range tests {
		a := ok()
		tt.modify(a)
		err := a.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalid)):
			t.Errorf("%s: error = %v, want ErrInvalid containing %q", tt.name, err, tt.want)
		}
	}
}

func TestTextEnums(t *testing.T) {
	for _, s := range []Scope{ScopeGlobal, ScopeNamespace, ScopeWorkloadSelector} {
		b, err := s.MarshalText()
		var back Scope
		if err != nil || back.UnmarshalText(b) != nil || back != s || s.String() != string(b) {
			t.Errorf("scope %d: %q %v -> %d", s, b, err, back)
		}
	}
	for _, a := range []Action{ActionAllow, ActionDeny} {
		b, err := a.MarshalText()
		var back Action
		if err != nil || back.UnmarshalText(b) != nil || back != a || a.String() != string(b) {
			t.Errorf("action %d: %q %v -> %d", a, b, err, back)
		}
	}
	if _, err := Scope(0).MarshalText(); err == nil {
		t.Error("zero scope encoded")
	}
	if _, err := Action(7).MarshalText(); err == nil {
		t.Error("invalid action encoded")
	}
	if _, err := json.Marshal(StringMatch{}); err == nil {
		t.Error("zero StringMatch encoded")
	}
}

// Our unmarshalers decode sub-trees with fresh yaml.v3 decoders; the outer decoder must still
// see the aliases and refuse an exponential expansion.
func TestDecodeYAMLAliasBomb(t *testing.T) {
	refs := func(name string) string { return strings.Repeat(", *"+name, 100) }
	src := "policies:\n- {name: p, namespace: ns, scope: Global, action: Allow, dryRun: false, rules: [&r [&c [&m {namespaces: [!Exact a]}" +
		refs("m") + "]" + refs("c") + "]" + refs("r") + "]}\n"
	_, err := decodeStrict(src)
	if err == nil || !strings.Contains(err.Error(), "excessive aliasing") {
		t.Errorf("error = %v, want excessive aliasing", err)
	}
}
