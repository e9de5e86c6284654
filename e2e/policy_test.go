package e2e

import (
	"encoding/json"
	"fmt"
	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/lab"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
)

// The L4 authorization scenarios of Istio's ambient guides, in shared mode: pod b (sa echo,
// node1) is the server; a (sa sleep, node1), d (sa echo2 in namespace other, node2) and x
// (outside the mesh, node1) are clients.

// setPolicies rewrites the mesh config with policies and waits until both ztunnels serve it.
func (s *sharedLab) setPolicies(t *testing.T, policies string) {
	t.Helper()
	cfg := s.mesh
	if policies != "" {
		cfg += "policies:\n" + policies
	}
	if err := os.WriteFile(s.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(policies, "\n") {
		if name, ok := strings.CutPrefix(line, "- name: "); ok {
			want = append(want, name)
		}
	}
	for _, z := range []*ztunnel{s.z1, s.z2} {
		testwait.Until(t, fmt.Sprintf("policies %v applied", want), 10*time.Second, func() bool {
			code, body := z.get("127.0.0.1:15000", "/config_dump")
			var d struct {
				Policies []struct{ Name string } `json:"policies"`
			}
			if code != 200 || json.Unmarshal([]byte(body), &d) != nil || len(d.Policies) != len(want) {
				return false
			}
			for i, p := range d.Policies {
				if p.Name != want[i] {
					return false
				}
			}
			return true
		})
	}
}

// tryEcho reports whether msg comes back through a new connection from ns to addr.
func tryEcho(ns *lab.Netns, addr, msg string) bool {
	c, err := ns.Dial("tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := roundTrip(c, []byte(msg))
	return err == nil && string(got) == msg
}

const (
	denyAll = `- name: deny-all
  namespace: default
  scope: Namespace
  action: Allow
  dryRun: false
  rules: []
`
	allowSleep = `- name: allow-sleep
  namespace: default
  scope: Namespace
  action: Allow
  dryRun: false
  rules:
  - - - principals:
        - !Exact cluster.local/ns/default/sa/sleep
`
)

func TestAuthorizationPolicies(t *testing.T) {
	s := newSharedLab(t)
	b := "10.244.1.3:8080"

	t.Run("NoPolicyAllowsEveryone", func(t *testing.T) {
		for name, ns := range map[string]*lab.Netns{"a": s.a.NS, "d": s.d.NS, "x": s.x.NS} {
			if !tryEcho(ns, b, "hi from "+name) {
				t.Errorf("%s -> b refused without any policy", name)
			}
		}
	})

	t.Run("DenyAllRefusesEveryone", func(t *testing.T) {
		s.setPolicies(t, denyAll)
		for name, ns := range map[string]*lab.Netns{"a": s.a.NS, "d": s.d.NS, "x": s.x.NS} {
			if tryEcho(ns, b, "hi from "+name) {
				t.Errorf("%s -> b allowed under deny-all", name)
			}
		}
		testwait.Until(t, "DENY in b's inbound log", 5*time.Second, func() bool {
			return len(s.z1.out.lines("\terror\taccess\tconnection complete", `direction="inbound"`,
				`error="connection closed due to policy rejection: allow policies exist, but none allowed"`,
				`src.identity="spiffe://cluster.local/ns/other/sa/echo2"`)) > 0
		})
	})

	t.Run("AllowPrincipalLetsOnlySleepThrough", func(t *testing.T) {
		s.setPolicies(t, allowSleep)
		if !tryEcho(s.a.NS, b, "sleep is allowed") {
			t.Error("a (sa sleep) -> b refused by an ALLOW for its principal")
		}
		if tryEcho(s.d.NS, b, "echo2 is not") {
			t.Error("d (sa echo2) -> b allowed by an ALLOW for sleep only")
		}
		if tryEcho(s.x.NS, b, "plaintext has no principal") {
			t.Error("x (no identity) -> b allowed by an ALLOW on principals")
		}
	})

	t.Run("TighteningClosesOpenConnection", func(t *testing.T) {
		s.setPolicies(t, allowSleep)
		c, err := s.a.NS.Dial("tcp", b)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("open")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
		s.setPolicies(t, denyAll)
		if _, err := io.ReadAll(c); err != nil && !isReset(err) {
			t.Fatalf("open connection not closed by the tighter policy: %v", err)
		}
		testwait.Until(t, "late DENY in b's inbound log", 5*time.Second, func() bool {
			return len(s.z1.out.lines("\terror\taccess\tconnection complete", `direction="inbound"`,
				`error="connection closed due to policy change"`,
				`src.identity="spiffe://cluster.local/ns/default/sa/sleep"`, "bytes_recv=4")) > 0
		})
		testwait.Until(t, "the policy update's reason in z1's log", 5*time.Second, func() bool {
			return len(s.z1.out.lines("connection closed because it's no longer allowed after a policy update",
				`src.identity="spiffe://cluster.local/ns/default/sa/sleep"`, `reason="allow policies exist, but none allowed"`)) > 0
		})
	})

	t.Run("BothSidesCountIdentitiesAndBytes", func(t *testing.T) {
		s.setPolicies(t, "")
		const echo2 = "spiffe://cluster.local/ns/other/sa/echo2"
		const echoID = "spiffe://cluster.local/ns/default/sa/echo"
		labels := func(reporter string) []string {
			return []string{`reporter="` + reporter + `"`, `source_principal="` + echo2 + `"`,
				`destination_principal="` + echoID + `"`, `source_workload="d"`, `destination_workload="b"`,
				`source_workload_namespace="other"`, `destination_workload_namespace="default"`}
		}
		metrics := []string{"istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total"}
		zs := map[string]*ztunnel{"source": s.z2, "destination": s.z1}
		before := map[string]float64{}
		for reporter, z := range zs {
			_, body := z.get("127.0.0.1:15020", "/metrics")
			for _, m := range metrics {
				before[reporter+m] = promtext.Sum(body, m, labels(reporter)...)
			}
		}
		msg := strings.Repeat("z", 12345)
		if !tryEcho(s.d.NS, b, msg) {
			t.Fatal("d -> b refused with no policy")
		}
		testwait.Until(t, "outbound log on node2", 5*time.Second, func() bool {
			return len(s.z2.out.lines("connection complete", `direction="outbound"`, `src.workload="d"`,
				`dst.workload="b"`, `dst.identity="`+echoID+`"`, "bytes_sent=12345", "bytes_recv=12345")) > 0
		})
		testwait.Until(t, "inbound log on node1", 5*time.Second, func() bool {
			return len(s.z1.out.lines("connection complete", `direction="inbound"`, `src.identity="`+echo2+`"`,
				`dst.workload="b"`, "bytes_sent=12345", "bytes_recv=12345")) > 0
		})
		for reporter, z := range zs {
			_, body := z.get("127.0.0.1:15020", "/metrics")
			for _, m := range metrics {
				if got := promtext.Sum(body, m, labels(reporter)...) - before[reporter+m]; got != 12345 {
					t.Errorf("%s %s grew by %v, want 12345", reporter, m, got)
				}
			}
		}
	})
}

func isReset(err error) bool {
	var ne *net.OpError
	return strings.Contains(err.Error(), "reset") || (errorAs(err, &ne) && ne.Err != nil)
}

func errorAs(err error, target **net.OpError) bool {
	for err != nil {
		if oe, ok := err.(*net.OpError); ok {
			*target = oe
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}
