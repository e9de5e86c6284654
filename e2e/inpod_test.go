package e2e

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/ambientlab"
	"github.com/ztunnel-go/ztunnel/internal/lab"
	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
)

// sharedLab is the in-pod topology: node1 with meshed pods a (sleep), b (echo) and e (enrolled
// and removed by a test) plus x outside the mesh; node2 with meshed pod d (echo2); one
// shared-mode ztunnel per node, each fed by its own fake istio-cni.
type sharedLab struct {
	l             *lab.Lab
	n1, n2        *ambientlab.Node
	a, b, d, e, x *ambientlab.Pod
	z1, z2        *ztunnel
	env1          []string
	echoB, echoD  *echoApp
	external      *echoApp
	zdsLog        *slog.Logger
	cfgPath       string // LOCAL_XDS_PATH of both ztunnels
	mesh          string // its workloads section; tests append policies
}

func newSharedLab(t *testing.T) *sharedLab {
	l := lab.New(t) // skips loudly when not root
	dir := t.TempDir()
	s := &sharedLab{l: l, echoB: &echoApp{}, echoD: &echoApp{}, external: &echoApp{},
		zdsLog: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.n1 = ambientlab.NewNode(l, t, "node1", netip.MustParsePrefix("10.244.1.1/24"), dir, s.zdsLog)
	s.n2 = ambientlab.NewNode(l, t, "node2", netip.MustParsePrefix("10.244.2.1/24"), dir, s.zdsLog)
	ambientlab.LinkNodes(l, s.n1, s.n2, netip.MustParsePrefix("10.0.0.1/30"), netip.MustParsePrefix("10.0.0.2/30"))
	ip := netip.MustParseAddr
	s.a = s.n1.AddPod("a", "default", "sleep", ip("10.244.1.2"), true)
	s.b = s.n1.AddPod("b", "default", "echo", ip("10.244.1.3"), true)
	s.e = s.n1.AddPod("e", "default", "extra", ip("10.244.1.5"), true)
	s.x = s.n1.AddPod("x", "default", "none", ip("10.244.1.4"), false)
	s.d = s.n2.AddPod("d", "other", "echo2", ip("10.244.2.2"), true)

	mesh := "workloads:\n"
	for _, p := range []*ambientlab.Pod{s.a, s.b, s.d, s.e} {
		mesh += p.Workload()
		if p == s.b { // b is echo-b's endpoint
			mesh += "  services:\n    default/echo-b.default.svc.cluster.local: {80: 8080}\n"
		}
	}
	// One service, for the per-pod DNS proxies and the connection dump.
	mesh += `services:
- name: echo-b
  namespace: default
  hostname: echo-b.default.svc.cluster.local
  vips: ["/10.96.1.3"]
  ports:
    80: 8080
`
	cfgPath := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(cfgPath, []byte(mesh), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cfgPath, s.mesh = cfgPath, mesh
	caDir := filepath.Join(dir, "ca")
	if err := os.Mkdir(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeCA(t, caDir)

	go s.echoB.serve(s.b.NS.Listen(t, "tcp", "0.0.0.0:8080"))
	go s.echoD.serve(s.d.NS.Listen(t, "tcp", "0.0.0.0:8080"))
	go s.external.serve(s.x.NS.Listen(t, "tcp", "0.0.0.0:9000"))

	for _, p := range []*ambientlab.Pod{s.a, s.b, s.d} {
		if err := p.Enroll(); err != nil { // no ztunnel yet: recorded for the snapshot
			t.Fatal(err)
		}
	}
	env := func(n *ambientlab.Node) []string {
		return []string{
			"PROXY_MODE=shared", "INPOD_UDS=" + n.Sock,
			"XDS_ADDRESS=", "CA_ADDRESS=", "LOCAL_XDS_PATH=" + cfgPath, "LOCAL_CA_DIR=" + caDir,
			// Long, so that a pod proxy drained gracefully where it should stop at once
			// (ListenersFollowAddAndDel) holds its connection far past the test's waits.
			// Graceful drains (RollingUpgradeSharesPodPorts) end as soon as the
			// connections do.
			"RUST_LOG=info", "CONNECTION_TERMINATION_DEADLINE=60s",
		}
	}
	s.env1 = env(s.n1)
	s.z1 = startZtunnel(t, s.n1.NS, s.env1...)
	s.z2 = startZtunnel(t, s.n2.NS, env(s.n2)...)
	return s
}

// listening returns the TCP ports listening in ns.
func listening(t *testing.T, ns *lab.Netns) string {
	return ns.MustRun(t, "ss", "-Htln")
}

// p53 returns the UDP sockets listening in ns.
func p53(t *testing.T, ns *lab.Netns) string {
	return ns.MustRun(t, "ss", "-Hlun")
}

// workloadManagerMetrics is what a shared-mode ztunnel's /metrics says of its pod proxies.
type workloadManagerMetrics struct{ active, pending, started, stopped float64 }

// workloadManager scrapes z's workload_manager_* metrics; each must be there.
func (z *ztunnel) workloadManager(t *testing.T) workloadManagerMetrics {
	t.Helper()
	code, body := z.get("127.0.0.1:15020", "/metrics")
	var m workloadManagerMetrics
	for _, f := range []struct {
		name string
		v    *float64
	}{
		{"workload_manager_active_proxy_count", &m.active},
		{"workload_manager_pending_proxy_count", &m.pending},
		{"workload_manager_proxies_started_total", &m.started},
		{"workload_manager_proxies_stopped_total", &m.stopped},
	} {
		if code != 200 || !promtext.Has(body, f.name) {
			t.Fatalf("metrics (%d) lack %s:\n%s", code, f.name, grep(body, "workload_manager"))
		}
		*f.v = promtext.Sum(body, f.name)
	}
	return m
}

func hasPorts(ss string, ports ...string) bool {
	for _, p := range ports {
		if !strings.Contains(ss, ":"+p+" ") {
			return false
		}
	}
	return true
}

func echo(t *testing.T, from *lab.Netns, addr, msg string) {
	t.Helper()
	c, err := from.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := roundTrip(c, []byte(msg))
	if err != nil || string(got) != msg {
		t.Fatalf("echo via %s = %q, %v; want %q", addr, got, err, msg)
	}
}

// openEcho dials an echo server at addr from ns and checks one round trip; the connection
// stays open until the test ends.
func openEcho(t *testing.T, from *lab.Netns, addr string) net.Conn {
	t.Helper()
	c, err := from.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := ping(c, "to "+addr); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSharedMode(t *testing.T) {
	s := newSharedLab(t)
	const sleepID = "spiffe://cluster.local/ns/default/sa/sleep"
	const echoID = "spiffe://cluster.local/ns/default/sa/echo"
	const echo2ID = "spiffe://cluster.local/ns/other/sa/echo2"

	t.Run("ListenersFollowAddAndDel", func(t *testing.T) {
		for _, p := range []*ambientlab.Pod{s.a, s.b} {
			if ss := listening(t, p.NS); !hasPorts(ss, "15001", "15006", "15008") {
				t.Errorf("pod %s listens on:\n%s\nwant 15001, 15006 and 15008", p.Name, ss)
			}
		}
		if ss := listening(t, s.e.NS); hasPorts(ss, "15001") {
			t.Fatalf("pod e listens before its Add:\n%s", ss)
		}
		before := s.z1.workloadManager(t)
		if before.active != 2 || before.pending != 0 {
			t.Errorf("before e's Add, node 1's ztunnel reports %+v, want a and b active and none pending", before)
		}
		if err := s.e.Enroll(); err != nil {
			t.Fatalf("add e: %v", err)
		}
		// The Add is acknowledged once e's proxy runs, so the scrape that follows sees it.
		if got := s.z1.workloadManager(t); got.active != before.active+1 || got.started != before.started+1 || got.pending != 0 {
			t.Errorf("after e's Add: %+v, want one more active and started than %+v", got, before)
		}
		if ss := listening(t, s.e.NS); !hasPorts(ss, "15001", "15006", "15008") {
			t.Fatalf("after Add pod e listens on:\n%s", ss)
		}
		// The listeners carry the packet mark, in the pod's netns (ss -e shows fwmark).
		if ss := s.e.NS.MustRun(t, "ss", "-Htlne", "sport", "= :15001"); !strings.Contains(ss, "fwmark:0x539") {
			t.Errorf("15001 in pod e lacks fwmark 0x539:\n%s", ss)
		}
		// A connection through e's proxy, open when e leaves the mesh.
		held := openEcho(t, s.e.NS, "10.244.1.3:8080")
		if err := s.e.Unenroll(); err != nil {
			t.Fatalf("del e: %v", err)
		}
		// A deleted pod's proxy closes its connections at once, as ztunnel's does; it does not
		// wait out the 60 s termination deadline.
		held.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := held.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("connection through e's proxy after e's Del: read %d bytes, %v; want it closed", n, err)
		}
		testwait.Until(t, "e's proxy logs the connection it closed", 5*time.Second, func() bool {
			return len(s.z1.out.lines("proxy stopped, closed its connections", "count=1")) == 1
		})
		testwait.Until(t, "pod e listeners gone", 5*time.Second, func() bool {
			return !strings.Contains(listening(t, s.e.NS), ":1500")
		})
		testwait.Until(t, "e's proxy counted as stopped", 5*time.Second, func() bool {
			got := s.z1.workloadManager(t)
			return got.active == before.active && got.stopped == before.stopped+1 && got.started == before.started+1
		})
		// The node namespace never had pod listeners.
		if ss := listening(t, s.n1.NS); hasPorts(ss, "15001") {
			t.Errorf("node netns listens on 15001:\n%s", ss)
		}
	})

	t.Run("PodToPodOverHBONE", func(t *testing.T) {
		echo(t, s.a.NS, "10.244.1.3:8080", "hello in-pod mesh")
		testwait.Until(t, "inbound access log", 5*time.Second, func() bool {
			return len(s.z1.out.lines("connection complete", `direction="inbound"`,
				`src.identity="`+sleepID+`"`, `dst.identity="`+echoID+`"`, "dst.hbone_addr=10.244.1.3:8080")) > 0
		})
		testwait.Until(t, "outbound access log", 5*time.Second, func() bool {
			return len(s.z1.out.lines("connection complete", `direction="outbound"`,
				"dst.addr=10.244.1.3:15008", `src.identity="`+sleepID+`"`, `dst.identity="`+echoID+`"`)) > 0
		})
		code, body := s.z1.get("127.0.0.1:15020", "/metrics")
		if code != 200 || !promtext.Has(body, "istio_tcp_connections_opened_total", `source_principal="`+sleepID+`"`,
			`destination_principal="`+echoID+`"`, `connection_security_policy="mutual_tls"`) {
			t.Errorf("metrics (%d) lack the mTLS connection:\n%s", code, grep(body, "istio_tcp"))
		}
		if srcs := s.echoB.sources(); len(srcs) == 0 || !strings.HasPrefix(srcs[len(srcs)-1], "10.244.1.2:") {
			t.Errorf("app saw sources %v, want the client's IP", srcs)
		}
	})

	t.Run("ConfigDumpListsConnections", func(t *testing.T) {
		// A connection to echo-b's VIP, held open: node 1's /config_dump shows it under pod
		// a (outbound: the VIP it dialed, the endpoint's ztunnel it went to) and pod b
		// (inbound: the host a's ztunnel forwarded), in ztunnel's workloadState shape.
		c := openEcho(t, s.a.NS, "10.96.1.3:80")
		type conn struct{ Src, OriginalDst, ActualDst, Protocol string }
		var dump struct {
			WorkloadState map[string]struct {
				State       string
				Connections *struct{ Inbound, Outbound []conn }
			} `json:"workloadState"`
		}
		code, body := s.z1.get("127.0.0.1:15000", "/config_dump")
		if err := json.Unmarshal([]byte(body), &dump); code != 200 || err != nil {
			t.Fatalf("config_dump: %d, %v", code, err)
		}
		src := c.LocalAddr().String()
		a, b := dump.WorkloadState[s.a.UID], dump.WorkloadState[s.b.UID]
		if a.State != "Up" || a.Connections == nil || !slices.Contains(a.Connections.Outbound,
			conn{src, "10.96.1.3:80", "10.244.1.3:15008", "HBONE"}) {
			t.Errorf("pod a's workloadState %+v lacks the outbound connection from %s to the VIP", a, src)
		}
		if b.Connections == nil || !slices.ContainsFunc(b.Connections.Inbound, func(in conn) bool {
			return in == conn{in.Src, "echo-b.default.svc.cluster.local", "10.244.1.3:8080", "HBONE"}
		}) {
			t.Errorf("pod b's workloadState %+v lacks the inbound connection for echo-b", b)
		}
	})

	t.Run("PerPodDNSProxy", func(t *testing.T) {
		// Each meshed pod has its own DNS proxy on 127.0.0.1:15053 in its netns; the pod's
		// port-53 queries are redirected there, and short names expand from its namespace.
		if ss := p53(t, s.a.NS); !strings.Contains(ss, "127.0.0.1:15053") {
			t.Fatalf("pod a has no DNS proxy listening:\n%s", ss)
		}
		for _, name := range []string{"echo-b.default.svc.cluster.local", "echo-b"} {
			out := s.a.NS.MustRun(t, "dig", "+short", "+time=2", "+tries=1", "@10.244.1.1", name)
			if strings.TrimSpace(out) != "10.96.1.3" {
				t.Errorf("dig %s in pod a = %q, want 10.96.1.3", name, out)
			}
		}
		// Pod d (namespace other, node2) resolves the FQDN through its own node's ztunnel.
		out := s.d.NS.MustRun(t, "dig", "+short", "+time=2", "+tries=1", "@10.244.2.1", "echo-b.default.svc.cluster.local")
		if strings.TrimSpace(out) != "10.96.1.3" {
			t.Errorf("dig FQDN in pod d = %q, want 10.96.1.3", out)
		}
	})

	t.Run("NonMeshPassthrough", func(t *testing.T) {
		echo(t, s.a.NS, "10.244.1.4:9000", "plain tcp")
		if srcs := s.external.sources(); len(srcs) == 0 || !strings.HasPrefix(srcs[len(srcs)-1], "10.244.1.2:") {
			t.Errorf("external server saw %v, want 10.244.1.2", srcs)
		}
		testwait.Until(t, "passthrough log", 5*time.Second, func() bool {
			for _, line := range s.z1.out.lines("connection complete", "dst.addr=10.244.1.4:9000") {
				if !strings.Contains(line, "dst.identity") {
					return true
				}
			}
			return false
		})
	})

	t.Run("CrossNode", func(t *testing.T) {
		echo(t, s.a.NS, "10.244.2.2:8080", "across nodes")
		testwait.Until(t, "inbound log on node2", 5*time.Second, func() bool {
			return len(s.z2.out.lines("connection complete", `direction="inbound"`,
				`src.identity="`+sleepID+`"`, `dst.identity="`+echo2ID+`"`)) > 0
		})
	})

	t.Run("ZDSRestartKeepsConnections", func(t *testing.T) {
		c, err := s.a.NS.Dial("tcp", "10.244.1.3:8080")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ping := func(msg string) {
			t.Helper()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte(msg)); err != nil {
				t.Fatalf("write %q: %v", msg, err)
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
				t.Fatalf("read = %q, %v; want %q", buf, err, msg)
			}
		}
		ping("before restart")
		s.n1.RestartZDS([]*ambientlab.Pod{s.a, s.b}, s.zdsLog)
		testwait.Until(t, "new snapshot acknowledged", 10*time.Second, func() bool { return s.n1.ZDS.Synced() == 1 })
		for _, a := range s.n1.ZDS.Acks() {
			if a.Error != "" {
				t.Errorf("NACK after restart: %+v", a)
			}
		}
		testwait.Until(t, "ready again", 5*time.Second, func() bool {
			code, _ := s.z1.get("127.0.0.1:15021", "/healthz/ready")
			return code == 200
		})
		ping("after restart")
		echo(t, s.a.NS, "10.244.1.3:8080", "new connection after restart")
		if n := len(s.z1.out.lines("draining its proxy")); n != 1 { // only e, deleted above
			t.Errorf("%d pod proxies drained, want only e's:\n%s", n, strings.Join(s.z1.out.lines("draining"), "\n"))
		}
	})

	t.Run("RollingUpgradeSharesPodPorts", func(t *testing.T) {
		// The new ztunnel runs in its own namespace (a new DaemonSet pod) on the same socket.
		nsNew := s.l.Netns("node1-new")
		zNew := startZtunnel(t, nsNew, s.env1...)
		for _, a := range s.n1.ZDS.Acks() {
			if a.Error != "" {
				t.Fatalf("NACK while two ztunnels share the pods: %+v", a)
			}
		}
		// Each port of pod b now has two listening sockets.
		ss := s.b.NS.MustRun(t, "ss", "-Htln", "sport", "= :15008")
		if n := len(nonEmptyLines(ss)); n != 2 {
			t.Fatalf("pod b has %d listeners on 15008, want 2 (old and new ztunnel):\n%s", n, ss)
		}
		if err := s.z1.stop(t, 10*time.Second); err != nil {
			t.Fatalf("old ztunnel exit: %v", err)
		}
		echo(t, s.a.NS, "10.244.1.3:8080", "served by the new ztunnel")
		testwait.Until(t, "new ztunnel logs the connection", 5*time.Second, func() bool {
			return len(zNew.out.lines("connection complete", `direction="inbound"`, `src.identity="`+sleepID+`"`)) > 0
		})
	})
}
