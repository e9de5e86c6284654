package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"golang.org/x/sys/unix"

	"github.com/ztunnel-go/ztunnel/internal/fdtable"
	"github.com/ztunnel-go/ztunnel/internal/lab"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/tls/caclient/catest"
	"github.com/ztunnel-go/ztunnel/tls/certs"
	"github.com/ztunnel-go/ztunnel/xds/xdstest"
)

// Faults of the world around ztunnel and hostile pods (issue 7). Every test here needs root
// (network namespaces) and skips loudly without it.

// launchZtunnel starts `wrapper... ztunnel proxy ztunnel` inside ns with env (the whole
// environment, as a ztunnel's cmd.Env). With wait it returns once /healthz/ready answers 200.
func launchZtunnel(t *testing.T, ns *lab.Netns, env []string, wait bool, wrapper ...string) *ztunnel {
	t.Helper()
	z := &ztunnel{out: &syncBuffer{}, ns: ns, done: make(chan error, 1)}
	argv := append(slices.Clone(wrapper), ztunnelBin, "proxy", "ztunnel")
	z.cmd = ns.Command(context.Background(), argv[0], argv[1:]...)
	z.cmd.Env = env
	z.cmd.Stdout, z.cmd.Stderr = z.out, z.out
	if err := z.cmd.Start(); err != nil {
		t.Fatalf("start ztunnel in %s: %v", ns.Name(), err)
	}
	go func() { z.done <- z.cmd.Wait() }() // its result is read by stop, the cleanup or a test
	t.Cleanup(func() {
		select {
		case err := <-z.done:
			z.done <- err
		default:
			z.cmd.Process.Kill()
			z.done <- <-z.done // kept for restart, which may run after this test ends
		}
		if t.Failed() {
			t.Logf("ztunnel in %s output:\n%s", ns.Name(), z.out.String())
		}
	})
	if wait {
		z.waitReady(t, 20*time.Second)
	}
	return z
}

func (z *ztunnel) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	testwait.Until(t, "ztunnel ready in "+z.ns.Name(), timeout, func() bool {
		select {
		case err := <-z.done:
			z.done <- err
			t.Fatalf("ztunnel in %s exited early: %v\n%s", z.ns.Name(), err, z.out.String())
		default:
		}
		code, _ := z.get("127.0.0.1:15021", "/healthz/ready")
		return code == http.StatusOK
	})
}

// restart stops z (SIGTERM) unless it already ended (a subtest's cleanup kills the ztunnels it
// started) and starts a new ztunnel in the same namespace with z's environment plus extra (later
// values win), under wrapper. The new one lives until t ends.
func (z *ztunnel) restart(t *testing.T, extra []string, wrapper ...string) *ztunnel {
	t.Helper()
	select {
	case err := <-z.done:
		z.done <- err
	default:
		if err := z.stop(t, 10*time.Second); err != nil {
			t.Fatalf("stopping ztunnel in %s: %v", z.ns.Name(), err)
		}
	}
	return launchZtunnel(t, z.ns, append(slices.Clone(z.cmd.Env), extra...), true, wrapper...)
}

// pid of the ztunnel process (ip netns exec and prlimit exec it, so it is the command's).
func (z *ztunnel) fds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(z.cmd.Process.Pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// ping writes msg on c and reads it back within 5 s.
func ping(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		return fmt.Errorf("write %q: %w", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		return fmt.Errorf("read %q: %q, %v", msg, buf, err)
	}
	return nil
}

// refused reports whether a connection to addr from ns is refused or closed without one byte of
// answer to a request.
func refused(ns *lab.Netns, addr string) (bool, string) {
	c, err := ns.Dial("tcp", addr)
	if err != nil {
		return true, err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("GET /config_dump HTTP/1.1\r\nHost: localhost\r\n\r\n"))
	b, err := io.ReadAll(c)
	if len(b) > 0 {
		return false, string(b)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false, "no answer and still open after 5s"
	}
	return true, fmt.Sprint("closed: ", err)
}

// TestResourceLimits runs pod B's ztunnel under a low RLIMIT_NOFILE and floods it until it
// refuses connections to keep its descriptor headroom (established connections keep flowing,
// idle ones wake up, and it accepts again once the flood ends); then with short keepalives it
// reaps 1,000 idle connections whose peer vanished.
func TestResourceLimits(t *testing.T) {
	d := newDedicatedLab(t)

	t.Run("DescriptorTableReserved", func(t *testing.T) {
		// ztunnel sizes its descriptor table at start-up (16,384 slots, or up to the soft
		// limit), so the kernel does not grow it, stalling every new descriptor, as connections
		// come. At rest it holds a few dozen descriptors, for which the kernel keeps 256 slots.
		pid := d.zb.cmd.Process.Pid
		var lim unix.Rlimit
		if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
			t.Fatal(err)
		}
		want := min(16384, int(min(lim.Cur, 1<<30)))
		size, err := fdtable.SizeOf(pid)
		if err != nil {
			t.Fatal(err)
		}
		if size < want {
			t.Errorf("B's ztunnel: a table of %d descriptor slots with %d open, want at least %d (soft limit %d)",
				size, d.zb.fds(t), want, lim.Cur)
		}
	})

	t.Run("FileDescriptorExhaustion", func(t *testing.T) {
		// Measure what B's ztunnel needs at rest, then give it 24 descriptors more.
		base := d.zb.fds(t)
		limit := base + 24
		zb := d.zb.restart(t, nil, "prlimit", fmt.Sprintf("--nofile=%d:%d", limit, limit))
		d.zb = zb
		est, err := d.a.Dial("tcp", "10.244.0.3:8080") // A -> HBONE -> B, before the flood
		if err != nil {
			t.Fatal(err)
		}
		defer est.Close()
		if err := ping(est, "before the flood"); err != nil {
			t.Fatal(err)
		}
		// The flood: connections to B's 15008 that never handshake hold one descriptor each.
		var flood []net.Conn
		defer func() {
			for _, c := range flood {
				c.Close()
			}
		}()
		resets := 0
		for range 3 * (limit - base + 8) {
			c, err := d.x.Dial("tcp", "10.244.0.3:15008")
			if errors.Is(err, syscall.ECONNRESET) {
				resets++ // refused for the headroom as it connected
				continue
			}
			if err != nil {
				t.Logf("the flood stops at %d connections: %v", len(flood), err)
				break // the kernel's backlog is full too
			}
			flood = append(flood, c)
		}
		// It refuses connections before accept itself fails: the last descriptors stay free
		// for what the served connections need (an idle socket's attach, a dial).
		testwait.Until(t, "refusals for the descriptor headroom", 10*time.Second, func() bool {
			return len(zb.out.lines("file descriptors nearly exhausted")) > 0
		})
		if l := zb.out.lines("accept failed", "too many open files"); len(l) > 0 {
			t.Errorf("accept failed for want of descriptors despite the headroom: %s", l[0])
		}
		t.Logf("B's ztunnel: %d descriptors at rest, limit %d, %d flood connections (%d more reset as they connected), %d at the limit",
			base, limit, len(flood), resets, zb.fds(t))
		// The established connection keeps flowing while accept fails.
		for i := range 3 {
			if err := ping(est, fmt.Sprintf("during the flood %d", i)); err != nil {
				t.Fatalf("established connection during the flood: %v", err)
			}
		}
		for _, c := range flood {
			c.Close()
		}
		flood = nil
		// It recovers: new connections are served again (plaintext from X, HBONE from A).
		testwait.Until(t, "B accepts again", 10*time.Second, func() bool {
			c, err := d.x.Dial("tcp", "10.244.0.3:8080")
			if err != nil {
				return false
			}
			defer c.Close()
			return ping(c, "after the flood") == nil
		})
		echo(t, d.a, "10.244.0.3:8080", "new HBONE connection after the flood")
		if err := ping(est, "after the flood"); err != nil {
			t.Fatalf("established connection after the flood: %v", err)
		}
	})

	t.Run("KeepaliveReapsVanishedPeers", func(t *testing.T) {
		const n = 1000 // 10,000 needs 20,000 descriptors in this test process (client and app ends), over this machine's hard limit
		zb := d.zb.restart(t, []string{"KEEPALIVE_TIME=1s", "KEEPALIVE_INTERVAL=1s", "KEEPALIVE_RETRIES=2"})
		d.zb = zb
		estab := func() int {
			out := d.b.MustRun(t, "ss", "-Htn", "state", "established", "( sport = :15006 )")
			return len(nonEmptyLines(out))
		}
		conns := make([]net.Conn, 0, n)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		// Plaintext from X (outside the mesh) to B's app: captured on B's 15006.
		err := d.x.Do(func() error {
			for range n {
				c, err := net.DialTimeout("tcp", "10.244.0.3:8080", 5*time.Second)
				if err != nil {
					return err
				}
				conns = append(conns, c)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("opening %d connections: %v", len(conns), err)
		}
		testwait.Until(t, fmt.Sprintf("%d connections established on B's 15006", n), 20*time.Second, func() bool { return estab() >= n })
		if err := ping(conns[n-1], "alive"); err != nil {
			t.Fatal(err)
		}
		// X vanishes: B drops everything X sends (not the transparent connections to the app,
		// which come from X's address over lo).
		d.b.MustRun(t, "iptables", "-I", "INPUT", "!", "-i", "lo", "-s", "10.244.0.4", "-j", "DROP")
		start := time.Now()
		// Keepalive gives up after idle 1 s + 2 probes 1 s apart, plus scheduling slack.
		testwait.Until(t, "B's sockets to the vanished peer closed", 15*time.Second, func() bool { return estab() == 0 })
		t.Logf("%d idle connections reaped %v after their peer vanished (keepalive 1s+2x1s)", n, time.Since(start).Round(100*time.Millisecond))
		d.b.MustRun(t, "iptables", "-D", "INPUT", "!", "-i", "lo", "-s", "10.244.0.4", "-j", "DROP")
		// B closed the app side too, and still serves.
		testwait.Until(t, "the app connections closed", 10*time.Second, func() bool {
			out := d.b.MustRun(t, "ss", "-Htn", "state", "established", "( sport = :8080 )")
			return len(nonEmptyLines(out)) == 0
		})
		echo(t, d.a, "10.244.0.3:8080", "served after the reaping")
	})
}

// cpEnv starts an xDS server (with mesh's resources) and a CA server in node at the lab's
// gateway and returns ztunnel's variables for them, plus extra.
func cpEnv(xdsOut **xdstest.Server, caOut **catest.Server, extra ...string) controlPlaneEnv {
	return func(t *testing.T, node *lab.Netns) []string {
		const host = "istiod.istio-system.svc"
		pki := xdstest.NewPKI(t, host)
		ca, err := certs.NewFakeCA("cluster.local")
		if err != nil {
			t.Fatal(err)
		}
		gw := nodeAddr.Addr().String()
		x := xdstest.Serve(t, node.Listen(t, "tcp", gw+":15010"), pki.Server)
		x.Address.SetResources(meshResources())
		x.Authorization.SetResources(map[string]types.Resource{})
		*xdsOut = x
		*caOut = catest.Serve(t, node.Listen(t, "tcp", gw+":15012"), pki.Server, ca)
		return append([]string{
			"XDS_ADDRESS=https://" + gw + ":15010", "CA_ADDRESS=https://" + gw + ":15012",
			"XDS_ROOT_CA=" + string(pki.RootPEM), "CA_ROOT_CA=" + string(pki.RootPEM),
			"ALT_XDS_HOSTNAME=" + host, "ALT_CA_HOSTNAME=" + host,
			"CLUSTER_ID=cluster1", "NODE_NAME=node1",
		}, extra...)
	}
}

// TestIstiodDownAtStart starts ztunnel while nothing listens at XDS_ADDRESS: it is not ready
// and retries; once istiod comes up it becomes ready. Then the stream is cut: the last-known
// configuration stays, and on reconnect ztunnel presents the versions it holds.
func TestIstiodDownAtStart(t *testing.T) {
	l := lab.New(t) // skips loudly when not root
	ns := l.Netns("zt")
	const host = "istiod.istio-system.svc"
	pki := xdstest.NewPKI(t, host)
	env := append(os.Environ(), "PROXY_MODE=dedicated", "PROXY_WORKLOAD_INFO=default/a/sleep", "RUST_LOG=info",
		"XDS_ADDRESS=https://127.0.0.1:15010", "XDS_ROOT_CA="+string(pki.RootPEM), "ALT_XDS_HOSTNAME="+host,
		"CA_ADDRESS=", "FAKE_CA=true", "CLUSTER_ID=cluster1")
	z := launchZtunnel(t, ns, env, false)

	// Not ready, naming xds, for as long as istiod is away; and retrying.
	testwait.Until(t, "readiness to answer", 10*time.Second, func() bool { code, _ := z.get("127.0.0.1:15021", "/healthz/ready"); return code != 0 })
	testwait.Until(t, "two failed xds attempts", 10*time.Second, func() bool { return len(z.out.lines("xds stream ended")) >= 2 })
	code, body := z.get("127.0.0.1:15021", "/healthz/ready")
	if code != http.StatusInternalServerError || !strings.Contains(body, "xds") {
		t.Fatalf("readiness with istiod down = %d %q, want 500 naming xds", code, body)
	}

	srv := xdstest.Serve(t, ns.Listen(t, "tcp", "127.0.0.1:15010"), pki.Server)
	srv.Address.SetResources(meshResources())
	srv.Authorization.SetResources(map[string]types.Resource{})
	start := time.Now()
	z.waitReady(t, 20*time.Second)
	t.Logf("ready %v after istiod came up", time.Since(start).Round(10*time.Millisecond))
	hasWorkloads := func() bool {
		code, body := z.get("127.0.0.1:15000", "/config_dump")
		return code == 200 && strings.Contains(body, "cluster1//v1/Pod/default/b") && strings.Contains(body, "echo.default.svc.cluster.local")
	}
	testwait.Until(t, "config_dump to hold istiod's workloads", 5*time.Second, hasWorkloads)

	// Stream cut: the configuration stays, readiness too.
	srv.Stop()
	testwait.Until(t, "the cut to be noticed", 10*time.Second, func() bool { return len(z.out.lines("xds stream ended", "keeping the last known")) >= 3 })
	if !hasWorkloads() {
		t.Fatal("the workloads were dropped when the xds stream was cut")
	}
	if code, body := z.get("127.0.0.1:15021", "/healthz/ready"); code != 200 {
		t.Errorf("readiness after the cut = %d %q, want 200 (last-known config serves)", code, body)
	}
	// istiod returns (xdstest's Restart re-listens outside the namespace, so a new server).
	srv2 := xdstest.Serve(t, ns.Listen(t, "tcp", "127.0.0.1:15010"), pki.Server)
	srv2.Address.SetResources(meshResources())
	srv2.Authorization.SetResources(map[string]types.Resource{})
	srv2.WaitRequest(0, 20*time.Second, func(r *xdstest.Request) bool {
		return r.TypeUrl == xdstest.AddressType && len(r.InitialResourceVersions) >= 3
	})
}

// TestDataPathFaults: with the mesh from a control plane, the xDS stream is cut and traffic
// keeps flowing on the last-known config; then the CA goes down: the certificates are kept until
// they expire (SECRET_TTL=10s), after which an outbound HBONE connection fails closed and the app
// receives nothing, never a plaintext fallback.
func TestDataPathFaults(t *testing.T) {
	var (
		xdsSrv *xdstest.Server
		caSrv  *catest.Server
	)
	d := newDedicatedLabWith(t, cpEnv(&xdsSrv, &caSrv, "SECRET_TTL=10s", "POOL_UNUSED_RELEASE_TIMEOUT=1s"))

	xdsSrv.Stop()
	testwait.Until(t, "A notices the cut", 10*time.Second, func() bool { return len(d.za.out.lines("xds stream ended")) > 0 })
	echo(t, d.a, "10.244.0.3:8080", "last-known config")
	echo(t, d.a, echoVIP+":80", "last-known service")

	caSrv.SetDown(true)
	downAt := time.Now()
	echo(t, d.a, "10.244.0.3:8080", "certificate still valid")
	// Keep trying, one fresh connection at a time with the pool idle in between, until the
	// certificates expire.
	var failedAfter time.Duration
	for time.Since(downAt) < 20*time.Second {
		time.Sleep(1500 * time.Millisecond) // > POOL_UNUSED_RELEASE_TIMEOUT: every try dials anew
		before := len(d.echo.sources())
		c, err := d.a.Dial("tcp", "10.244.0.3:8080")
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		got, _ := roundTrip(c, []byte("after expiry?"))
		c.Close()
		if string(got) == "after expiry?" {
			continue
		}
		if len(got) != 0 {
			t.Fatalf("a failing connection returned %q", got)
		}
		failedAfter = time.Since(downAt)
		// Fail closed: the app saw no new connection, from anywhere.
		time.Sleep(500 * time.Millisecond)
		if after := d.echo.sources(); len(after) != before {
			t.Fatalf("the app accepted %v after the certificate expired", after[before:])
		}
		break
	}
	if failedAfter == 0 {
		t.Fatal("connections kept working 20 s after the CA went down with SECRET_TTL=10s")
	}
	t.Logf("with the CA down, connections failed closed %v later (SECRET_TTL=10s)", failedAfter.Round(100*time.Millisecond))
	if failedAfter < 2*time.Second {
		t.Errorf("connections failed %v after the CA went down: the valid certificate was not kept", failedAfter)
	}
	// A says why, and flags it; B logged no plaintext inbound connection from A.
	testwait.Until(t, "A logs the failed connection", 5*time.Second, func() bool {
		return len(d.za.out.lines("connection complete", `direction="outbound"`, "expired")) > 0 ||
			len(d.za.out.lines("connection complete", `direction="outbound"`, "certificate")) > 0
	})
	for _, line := range d.zb.out.lines("connection complete", `direction="inbound"`, "src.addr=10.244.0.2:") {
		if !strings.Contains(line, "src.identity") {
			t.Errorf("B logged a plaintext inbound connection from A: %s", line)
		}
	}
	// The CA comes back: connections work again.
	caSrv.SetDown(false)
	testwait.Until(t, "connections work once the CA is back", 30*time.Second, func() bool {
		c, err := d.a.Dial("tcp", "10.244.0.3:8080")
		if err != nil {
			return false
		}
		defer c.Close()
		return ping(c, "CA back") == nil
	})
}

// TestSharedModeHostilePods: pods poking at their own capture ports and the node's admin port,
// and a pod deleted while one of its connections is open.
func TestSharedModeHostilePods(t *testing.T) {
	s := newSharedLab(t)

	t.Run("OwnCapturePorts", func(t *testing.T) {
		// Straight to its own pod IP (over lo: istio-cni does not redirect it) and to loopback.
		for _, addr := range []string{"10.244.1.2:15001", "10.244.1.2:15006", "10.244.1.2:15008", "127.0.0.1:15001", "127.0.0.1:15006"} {
			if ok, why := refused(s.a.NS, addr); !ok {
				t.Errorf("pod a to its own %s was answered: %s", addr, why)
			}
		}
		// Each refusal is a "connection failed" line, as ztunnel's.
		const refusal = `error="attempted recursive call to ourselves"`
		testwait.Until(t, "the refusals logged", 5*time.Second, func() bool {
			return len(s.z1.out.lines(refusal)) >= 4
		})
		// No loop: a handful of refusals, not a storm, and the pod is served as before.
		if n := len(s.z1.out.lines(refusal)); n > 10 {
			t.Errorf("%d own-port refusals for 4 connections: a loop", n)
		}
		echo(t, s.a.NS, "10.244.1.3:8080", "still served")
	})

	t.Run("NodeAdminPort", func(t *testing.T) {
		// 15000 answers on the node's loopback...
		if code, _ := s.z1.get("127.0.0.1:15000", "/config_dump"); code != 200 {
			t.Fatalf("admin on the node's loopback = %d, want 200", code)
		}
		// ...and nowhere a pod can reach: not from a meshed pod (captured and passed through),
		// nor from one outside the mesh, nor on the node's own address.
		for _, c := range []struct {
			ns   *lab.Netns
			addr string
		}{{s.a.NS, "10.244.1.1:15000"}, {s.x.NS, "10.244.1.1:15000"}, {s.n1.NS, "10.244.1.1:15000"}} {
			if ok, why := refused(c.ns, c.addr); !ok {
				t.Errorf("%s reached the admin port at %s: %s", c.ns.Name(), c.addr, why)
			}
		}
	})

	t.Run("PodDeletedMidConnection", func(t *testing.T) {
		toB := openEcho(t, s.a.NS, "10.244.1.3:8080")
		toD := openEcho(t, s.a.NS, "10.244.2.2:8080")
		if err := s.b.Unenroll(); err != nil {
			t.Fatalf("del b: %v", err)
		}
		deleted := time.Now()
		// B's proxy drains: its listeners go at once...
		testwait.Until(t, "pod b listeners gone", 5*time.Second, func() bool {
			return !strings.Contains(listening(t, s.b.NS), ":15008")
		})
		// ...and the open connection ends at once: a deleted pod's proxy closes what it
		// carries, it does not wait out the termination deadline (60s in this lab).
		toB.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, rerr := io.Copy(io.Discard, toB)
		ended := time.Since(deleted)
		if ne, ok := rerr.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the connection to deleted pod b still open %v later, want it closed at once", ended)
		}
		t.Logf("connection to the deleted pod ended %v after Del", ended.Round(100*time.Millisecond))
		// Other pods are unaffected: the open connection to d, new ones to d and outside.
		if err := ping(toD, "after the delete"); err != nil {
			t.Fatalf("connection to pod d after b's delete: %v", err)
		}
		echo(t, s.a.NS, "10.244.2.2:8080", "new connection to d")
		echo(t, s.a.NS, "10.244.1.4:9000", "new connection outside")
		if n := len(s.z1.out.lines("draining its proxy")); n != 1 {
			t.Errorf("%d pod proxies drained, want only b's", n)
		}
	})
}
