package e2e

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/ambientlab"
	"github.com/ztunnel-go/ztunnel/internal/lab"
	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
)

// TestDualStackInPod runs the in-pod data path over IPv6: two dual-stack nodes, each pod with an
// IPv4 and an IPv6 address and istio-cni's redirection for both families, shared-mode ztunnels.
// Every connection below is made to a pod's IPv6 address, so it is captured by the ip6tables
// rules, found by IP6T_SO_ORIGINAL_DST, carried over HBONE between IPv6 addresses and delivered
// with the client's IPv6 address as its source (IPV6_TRANSPARENT and the IPv6 policy routing).
func TestDualStackInPod(t *testing.T) {
	l := lab.New(t) // skips loudly when not root
	if _, err := exec.LookPath("ip6tables-restore"); err != nil {
		t.Fatalf("ip6tables-restore is needed for the IPv6 in-pod redirection (Debian package iptables): %v", err)
	}
	dir := t.TempDir()
	zdsLog := slog.New(slog.NewTextHandler(io.Discard, nil))
	pfx, ip := netip.MustParsePrefix, netip.MustParseAddr
	n1 := ambientlab.NewNode(l, t, "node1", pfx("10.244.1.1/24"), dir, zdsLog)
	n2 := ambientlab.NewNode(l, t, "node2", pfx("10.244.2.1/24"), dir, zdsLog)
	n1.AddIPv6(pfx("fd00:10:244:1::1/64"))
	n2.AddIPv6(pfx("fd00:10:244:2::1/64"))
	ambientlab.LinkNodes(l, n1, n2, pfx("10.0.0.1/30"), pfx("10.0.0.2/30"))
	ambientlab.LinkNodes(l, n1, n2, pfx("fd00:10::1/64"), pfx("fd00:10::2/64"))

	a := n1.AddPod("a", "default", "sleep", ip("10.244.1.2"), true)
	b := n1.AddPod("b", "default", "echo", ip("10.244.1.3"), true)
	x := n1.AddPod("x", "default", "none", ip("10.244.1.4"), false)
	d := n2.AddPod("d", "other", "echo2", ip("10.244.2.2"), true)
	a.AddIPv6(ip("fd00:10:244:1::2"))
	b.AddIPv6(ip("fd00:10:244:1::3"))
	x.AddIPv6(ip("fd00:10:244:1::4"))
	d.AddIPv6(ip("fd00:10:244:2::2"))

	mesh := "workloads:\n" + a.Workload() + b.Workload() + d.Workload() + `services:
- name: echo-b
  namespace: default
  hostname: echo-b.default.svc.cluster.local
  vips: ["/10.96.1.3", "/fd00:96::3"]
  ports:
    80: 8080
`
	cfgPath := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(cfgPath, []byte(mesh), 0o600); err != nil {
		t.Fatal(err)
	}
	caDir := filepath.Join(dir, "ca")
	if err := os.Mkdir(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeCA(t, caDir)

	echoB, echoD, external := &echoApp{}, &echoApp{}, &echoApp{}
	go echoB.serve(b.NS.Listen(t, "tcp", "[::]:8080"))
	go echoD.serve(d.NS.Listen(t, "tcp", "[::]:8080"))
	go external.serve(x.NS.Listen(t, "tcp", "[::]:9000"))
	for _, p := range []*ambientlab.Pod{a, b, d} {
		if err := p.Enroll(); err != nil { // recorded for the snapshot each ztunnel gets
			t.Fatal(err)
		}
	}
	env := func(n *ambientlab.Node) []string {
		return []string{
			"PROXY_MODE=shared", "INPOD_UDS=" + n.Sock,
			"XDS_ADDRESS=", "CA_ADDRESS=", "LOCAL_XDS_PATH=" + cfgPath, "LOCAL_CA_DIR=" + caDir,
			"RUST_LOG=info",
		}
	}
	z1 := startZtunnel(t, n1.NS, env(n1)...)
	z2 := startZtunnel(t, n2.NS, env(n2)...)
	for _, p := range []*ambientlab.Pod{a, b} {
		testwait.Until(t, "listeners in pod "+p.Name, 10*time.Second, func() bool {
			return hasPorts(listening(t, p.NS), "15001", "15006", "15008")
		})
	}
	testwait.Until(t, "listeners in pod d", 10*time.Second, func() bool {
		return hasPorts(listening(t, d.NS), "15001", "15006", "15008")
	})

	const sleepID = "spiffe://cluster.local/ns/default/sa/sleep"
	const echoID = "spiffe://cluster.local/ns/default/sa/echo"
	const echo2ID = "spiffe://cluster.local/ns/other/sa/echo2"
	hostPort := func(addr netip.Addr, port string) string { return net.JoinHostPort(addr.String(), port) }
	// lastSource is the newest source address an app saw.
	lastSource := func(app *echoApp) string {
		if srcs := app.sources(); len(srcs) > 0 {
			return srcs[len(srcs)-1]
		}
		return ""
	}

	t.Run("PodToPodOverHBONE", func(t *testing.T) {
		echo(t, a.NS, hostPort(b.IP6, "8080"), "hello over IPv6")
		testwait.Until(t, "inbound access log", 5*time.Second, func() bool {
			return len(z1.out.lines("connection complete", `direction="inbound"`,
				`src.identity="`+sleepID+`"`, `dst.identity="`+echoID+`"`,
				"src.addr="+hostPort(a.IP6, ""), "dst.hbone_addr="+hostPort(b.IP6, "8080"))) > 0
		})
		testwait.Until(t, "outbound access log", 5*time.Second, func() bool {
			return len(z1.out.lines("connection complete", `direction="outbound"`,
				"dst.addr="+hostPort(b.IP6, "15008"), "dst.hbone_addr="+hostPort(b.IP6, "8080"),
				`src.identity="`+sleepID+`"`, `dst.identity="`+echoID+`"`)) > 0
		})
		// The app sees the client's own IPv6 address, not ztunnel's.
		if src := lastSource(echoB); !strings.HasPrefix(src, hostPort(a.IP6, "")) {
			t.Errorf("app saw source %q, want %s", src, hostPort(a.IP6, "port"))
		}
		code, body := z1.get("127.0.0.1:15020", "/metrics")
		if code != 200 || !promtext.Has(body, "istio_tcp_connections_opened_total", `source_principal="`+sleepID+`"`,
			`destination_principal="`+echoID+`"`, `connection_security_policy="mutual_tls"`) {
			t.Errorf("metrics (%d) lack the mTLS connection:\n%s", code, grep(body, "istio_tcp"))
		}
	})

	t.Run("CrossNode", func(t *testing.T) {
		echo(t, a.NS, hostPort(d.IP6, "8080"), "across nodes over IPv6")
		testwait.Until(t, "inbound log on node2", 5*time.Second, func() bool {
			return len(z2.out.lines("connection complete", `direction="inbound"`,
				`src.identity="`+sleepID+`"`, `dst.identity="`+echo2ID+`"`,
				"dst.hbone_addr="+hostPort(d.IP6, "8080"))) > 0
		})
		if src := lastSource(echoD); !strings.HasPrefix(src, hostPort(a.IP6, "")) {
			t.Errorf("app on node2 saw source %q, want %s", src, hostPort(a.IP6, "port"))
		}
	})

	t.Run("NonMeshPassthrough", func(t *testing.T) {
		echo(t, a.NS, hostPort(x.IP6, "9000"), "plain tcp over IPv6")
		if src := lastSource(external); !strings.HasPrefix(src, hostPort(a.IP6, "")) {
			t.Errorf("external server saw source %q, want %s", src, hostPort(a.IP6, "port"))
		}
		testwait.Until(t, "passthrough log", 5*time.Second, func() bool {
			for _, line := range z1.out.lines("connection complete", "dst.addr="+hostPort(x.IP6, "9000")) {
				if !strings.Contains(line, "dst.identity") {
					return true
				}
			}
			return false
		})
	})

	t.Run("InboundPlaintextToMeshedPod", func(t *testing.T) {
		// Pod x is outside the mesh: its connection to b's IPv6 address arrives in plaintext,
		// is captured by b's ip6tables PREROUTING rule and served on 15006.
		echo(t, x.NS, hostPort(b.IP6, "8080"), "plaintext into the mesh over IPv6")
		if src := lastSource(echoB); !strings.HasPrefix(src, hostPort(x.IP6, "")) {
			t.Errorf("app saw source %q, want %s", src, hostPort(x.IP6, "port"))
		}
		testwait.Until(t, "inbound plaintext log", 5*time.Second, func() bool {
			for _, line := range z1.out.lines("connection complete", `direction="inbound"`,
				"src.addr="+hostPort(x.IP6, ""), "dst.addr="+hostPort(b.IP6, "8080")) {
				if !strings.Contains(line, "src.identity") {
					return true
				}
			}
			return false
		})
	})

	t.Run("DNSAAAA", func(t *testing.T) {
		// A query to the node's IPv6 address is redirected to the pod's DNS proxy by the
		// ip6tables rule, and the service's IPv6 VIP comes back.
		out := a.NS.MustRun(t, "dig", "+short", "+time=2", "+tries=1", "@"+n1.Bridge6.Addr().String(),
			"AAAA", "echo-b.default.svc.cluster.local")
		if strings.TrimSpace(out) != "fd00:96::3" {
			t.Errorf("dig AAAA echo-b in pod a = %q, want fd00:96::3", out)
		}
	})
}
