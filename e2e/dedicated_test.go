package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/lab"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
)

// Addresses of the dedicated-mode topology: one node bridge, three pods on it.
var (
	nodeAddr = netip.MustParsePrefix("10.244.0.1/24")
	podA     = netip.MustParsePrefix("10.244.0.2/24") // meshed client (sa sleep)
	podB     = netip.MustParsePrefix("10.244.0.3/24") // meshed server (sa echo)
	podX     = netip.MustParsePrefix("10.244.0.4/24") // not in the mesh
	echoVIP  = "10.96.0.10"
)

const meshConfig = `workloads:
- uid: cluster1//v1/Pod/default/a
  name: a
  namespace: default
  serviceAccount: sleep
  workloadIps: ["10.244.0.2"]
  protocol: HBONE
  node: node1
- uid: cluster1//v1/Pod/default/b
  name: b
  namespace: default
  serviceAccount: echo
  workloadIps: ["10.244.0.3"]
  protocol: HBONE
  node: node1
  services:
    "default/echo.default.svc.cluster.local":
      80: 8080
services:
- name: echo
  namespace: default
  hostname: echo.default.svc.cluster.local
  vips: ["/10.96.0.10"]
  ports:
    80: 8080
`

// echoApp accepts on l and echoes each connection until EOF, then half-closes its side. It
// records the remote address of every connection it accepted.
type echoApp struct {
	mu      sync.Mutex
	remotes []string
}

func (e *echoApp) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		e.mu.Lock()
		e.remotes = append(e.remotes, c.RemoteAddr().String())
		e.mu.Unlock()
		go func() {
			defer c.Close()
			io.Copy(c, c)
			c.(*net.TCPConn).CloseWrite()
		}()
	}
}

func (e *echoApp) sources() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.remotes...)
}

type dedicatedLab struct {
	a, b, x  *lab.Netns
	za, zb   *ztunnel
	echo     *echoApp
	external *echoApp
}

// newDedicatedLab builds the topology, installs istio-cni's in-pod redirection in pods A and B,
// starts one dedicated-mode ztunnel per meshed pod sharing one LOCAL_CA_DIR, an echo app in B on
// 8080 and a plain echo server in X on 9000.
func newDedicatedLab(t *testing.T) *dedicatedLab { return newDedicatedLabWith(t, nil) }

// controlPlaneEnv starts a control plane reachable from the pods (node is the bridge's
// namespace, at nodeAddr) and returns the variables pointing ztunnel at it.
type controlPlaneEnv func(t *testing.T, node *lab.Netns) []string

// newDedicatedLabWith is newDedicatedLab with the control plane of cp instead of the local
// config and LOCAL_CA_DIR (when cp is not nil).
func newDedicatedLabWith(t *testing.T, cp controlPlaneEnv) *dedicatedLab {
	l := lab.New(t) // skips loudly when not root
	node := l.Netns("node")
	l.Bridge(node, "br0", nodeAddr)
	d := &dedicatedLab{a: l.Netns("a"), b: l.Netns("b"), x: l.Netns("x"), echo: &echoApp{}, external: &echoApp{}}
	gw := nodeAddr.Addr()
	for _, p := range []struct {
		ns   *lab.Netns
		addr netip.Prefix
	}{{d.a, podA}, {d.b, podB}, {d.x, podX}} {
		l.VethToBridge(p.ns, p.addr, node, "br0")
		p.ns.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), gw)
	}
	d.a.InstallInpodRedirect(t)
	d.b.InstallInpodRedirect(t)

	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if err := os.Mkdir(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeCA(t, caDir)
	cfgPath := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(cfgPath, []byte(meshConfig), 0o600); err != nil {
		t.Fatal(err)
	}

	appL := d.b.Listen(t, "tcp", "0.0.0.0:8080")
	go d.echo.serve(appL)
	extL := d.x.Listen(t, "tcp", "0.0.0.0:9000")
	go d.external.serve(extL)

	cpEnv := []string{"XDS_ADDRESS=", "CA_ADDRESS=", "LOCAL_XDS_PATH=" + cfgPath, "LOCAL_CA_DIR=" + caDir}
	if cp != nil {
		cpEnv = cp(t, node)
	}
	env := func(info string) []string {
		return append([]string{
			"PROXY_MODE=dedicated", "PROXY_WORKLOAD_INFO=" + info,
			"PACKET_MARK=1337", "RUST_LOG=info", "CONNECTION_TERMINATION_DEADLINE=5s",
		}, cpEnv...)
	}
	d.za = startZtunnel(t, d.a, env("default/a/sleep")...)
	d.zb = startZtunnel(t, d.b, env("default/b/echo")...)
	return d
}

// roundTrip sends payload on c, half-closes, and returns everything read back until EOF.
func roundTrip(c net.Conn, payload []byte) ([]byte, error) {
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		errc <- err
	}()
	got, rerr := io.ReadAll(c)
	if werr := <-errc; werr != nil {
		return got, fmt.Errorf("write: %w", werr)
	}
	return got, rerr
}

func TestDedicatedMode(t *testing.T) { checkDedicated(t, newDedicatedLab(t)) }

// checkDedicated runs the dedicated-mode checks on a lab, whatever its control plane.
func checkDedicated(t *testing.T, d *dedicatedLab) {
	const sleepID = "spiffe://cluster.local/ns/default/sa/sleep"
	const echoID = "spiffe://cluster.local/ns/default/sa/echo"

	t.Run("PodToPodOverHBONE", func(t *testing.T) {
		c, err := d.a.Dial("tcp", "10.244.0.3:8080")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got, err := roundTrip(c, []byte("hello through the mesh"))
		if err != nil || string(got) != "hello through the mesh" {
			t.Fatalf("echo = %q, %v", got, err)
		}
		// The server side saw an mTLS tunnel from A's identity, and says so in its access log.
		testwait.Until(t, "inbound access log on B", 5*time.Second, func() bool {
			return len(d.zb.out.lines("connection complete", `direction="inbound"`,
				`src.identity="`+sleepID+`"`, `dst.identity="`+echoID+`"`, "dst.hbone_addr=10.244.0.3:8080",
				"bytes_recv=22", "bytes_sent=22")) > 0
		})
		testwait.Until(t, "outbound access log on A", 5*time.Second, func() bool {
			return len(d.za.out.lines("connection complete", `direction="outbound"`,
				"dst.addr=10.244.0.3:15008", "dst.hbone_addr=10.244.0.3:8080", `dst.identity="`+echoID+`"`)) > 0
		})
		// Metrics on both sides carry the identities and mutual_tls.
		for _, z := range []*ztunnel{d.za, d.zb} {
			code, body := z.get("127.0.0.1:15020", "/metrics")
			if code != 200 {
				t.Fatalf("metrics: %d", code)
			}
			if !promtext.Has(body, "istio_tcp_connections_opened_total", `source_principal="`+sleepID+`"`,
				`destination_principal="`+echoID+`"`, `connection_security_policy="mutual_tls"`) {
				t.Errorf("metrics of %s lack the mTLS connection:\n%s", z.ns.Name(), grep(body, "istio_tcp"))
			}
		}
		// The app saw the client's own IP (transparent inbound connection).
		srcs := d.echo.sources()
		if len(srcs) == 0 || !strings.HasPrefix(srcs[len(srcs)-1], "10.244.0.2:") {
			t.Errorf("app saw sources %v, want the client's IP 10.244.0.2", srcs)
		}
	})

	t.Run("ServiceVIP", func(t *testing.T) {
		c, err := d.a.Dial("tcp", echoVIP+":80")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got, err := roundTrip(c, []byte("via the service"))
		if err != nil || string(got) != "via the service" {
			t.Fatalf("echo via VIP = %q, %v", got, err)
		}
		testwait.Until(t, "outbound log naming the service", 5*time.Second, func() bool {
			return len(d.za.out.lines("connection complete", `dst.service="echo.default.svc.cluster.local"`,
				"dst.hbone_addr=10.244.0.3:8080")) > 0
		})
	})

	t.Run("DNSProxy", func(t *testing.T) {
		// The pod asks its usual resolver on port 53; istio-cni's rules redirect it to 15053.
		for _, name := range []string{"echo.default.svc.cluster.local", "echo"} {
			out := d.a.MustRun(t, "dig", "+short", "+time=2", "+tries=1", "@10.244.0.1", name)
			if strings.TrimSpace(out) != echoVIP {
				t.Errorf("dig %s = %q, want %s", name, out, echoVIP)
			}
		}
		// Over TCP too.
		out := d.a.MustRun(t, "dig", "+short", "+tcp", "+time=2", "+tries=1", "@10.244.0.1", "echo.default.svc.cluster.local")
		if strings.TrimSpace(out) != echoVIP {
			t.Errorf("dig +tcp = %q, want %s", out, echoVIP)
		}
	})

	t.Run("FiftyConnectionsShareOnePooledConnection", func(t *testing.T) {
		const n = 50
		conns := make([]net.Conn, n)
		for i := range conns {
			c, err := d.a.Dial("tcp", "10.244.0.3:8080")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conns[i] = c
		}
		// Every connection works, concurrently.
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i, c := range conns {
			wg.Go(func() {
				msg := fmt.Sprintf("conn %d", i)
				if _, err := c.Write([]byte(msg)); err != nil {
					errs <- err
					return
				}
				buf := make([]byte, len(msg))
				if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
					errs <- fmt.Errorf("conn %d read %q: %v", i, buf, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		// While all 50 are open, pod A has exactly one TCP connection to B's HBONE port.
		out := d.a.MustRun(t, "ss", "-Htn", "state", "established", "dst", "10.244.0.3:15008")
		if lines := nonEmptyLines(out); len(lines) != 1 {
			t.Errorf("A has %d connections to 10.244.0.3:15008 with 50 streams open, want 1:\n%s", len(lines), out)
		}
	})

	t.Run("100MiBIntactWithHalfClose", func(t *testing.T) {
		c, err := d.a.Dial("tcp", "10.244.0.3:8080")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		const size = 100 << 20
		rng := rand.NewChaCha8([32]byte{1, 2, 3})
		want := sha256.New()
		errc := make(chan error, 1)
		go func() {
			buf := make([]byte, 256<<10)
			for sent := 0; sent < size; sent += len(buf) {
				rng.Read(buf)
				want.Write(buf)
				if _, err := c.Write(buf); err != nil {
					errc <- err
					return
				}
			}
			errc <- c.(*net.TCPConn).CloseWrite()
		}()
		got := sha256.New()
		n, err := io.Copy(got, c)
		if werr := <-errc; werr != nil {
			t.Fatalf("write: %v", werr)
		}
		if err != nil || n != size {
			t.Fatalf("read back %d bytes, err %v; want %d", n, err, size)
		}
		if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
			t.Fatal("100 MiB came back corrupted")
		}
	})

	t.Run("NonMeshPassthrough", func(t *testing.T) {
		c, err := d.a.Dial("tcp", "10.244.0.4:9000")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got, err := roundTrip(c, []byte("plain tcp"))
		if err != nil || string(got) != "plain tcp" {
			t.Fatalf("passthrough echo = %q, %v", got, err)
		}
		srcs := d.external.sources()
		if len(srcs) == 0 || !strings.HasPrefix(srcs[len(srcs)-1], "10.244.0.2:") {
			t.Errorf("external server saw %v, want a plain connection from 10.244.0.2", srcs)
		}
		testwait.Until(t, "passthrough log", 5*time.Second, func() bool {
			for _, line := range d.za.out.lines("connection complete", "dst.addr=10.244.0.4:9000") {
				if !strings.Contains(line, "hbone_addr") && !strings.Contains(line, "dst.identity") {
					return true
				}
			}
			return false
		})
	})

	t.Run("PlaintextInboundFromOutsideTheMesh", func(t *testing.T) {
		c, err := d.x.Dial("tcp", "10.244.0.3:8080")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got, err := roundTrip(c, []byte("from outside"))
		if err != nil || string(got) != "from outside" {
			t.Fatalf("echo = %q, %v", got, err)
		}
		testwait.Until(t, "inbound plaintext log on B", 5*time.Second, func() bool {
			for _, line := range d.zb.out.lines("connection complete", `direction="inbound"`, "src.addr=10.244.0.4:") {
				if !strings.Contains(line, "src.identity") {
					return true
				}
			}
			return false
		})
	})

	t.Run("SIGTERMDrains", func(t *testing.T) {
		c, err := d.a.Dial("tcp", "10.244.0.3:8080")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("before")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		d.za.cmd.Process.Signal(syscall.SIGTERM)
		// New connections are refused once the listeners are closed...
		testwait.Until(t, "outbound listener closed", 5*time.Second, func() bool {
			nc, err := d.a.Dial("tcp", "10.244.0.3:8080")
			if err != nil {
				return true
			}
			nc.Close()
			return false
		})
		// ...while the established one keeps working during the drain.
		if _, err := c.Write([]byte("during")); err != nil {
			t.Fatalf("write during drain: %v", err)
		}
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "during" {
			t.Fatalf("read during drain = %q, %v", buf, err)
		}
		c.Close()
		select {
		case err := <-d.za.done:
			if err != nil {
				t.Fatalf("ztunnel exited with %v after SIGTERM, want status 0", err)
			}
		case <-time.After(4 * time.Second):
			t.Fatal("ztunnel did not exit after its last connection closed")
		}
	})

	t.Run("QuitQuitQuitDrains", func(t *testing.T) {
		if code, body := d.zb.post("127.0.0.1:15000", "/quitquitquit"); code != 200 || body != "shutdown now\n" {
			t.Fatalf("POST /quitquitquit = %d %q", code, body)
		}
		select {
		case err := <-d.zb.done:
			if err != nil {
				t.Fatalf("ztunnel exited with %v after /quitquitquit, want status 0", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("ztunnel did not exit after /quitquitquit")
		}
	})
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

func grep(body, sub string) string {
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
