package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Addresses of the topology: one node namespace with a bridge, four pods on it.
const (
	nodeCIDR  = "10.244.0.1/24"
	gateway   = "10.244.0.1"
	ipA       = "10.244.0.2" // meshed client pod: istio-cni redirection, ztunnel "client"
	ipB       = "10.244.0.3" // meshed server pod: redirection, ztunnel "server", the apps
	ipX       = "10.244.0.4" // outside the mesh: the apps, the server side of the TLS relay
	ipC       = "10.244.0.5" // outside the mesh: plain client, TLS relay client side, HAProxy
	ipRC      = "10.244.0.6" // in-pod rules, no ztunnel: the client side of the pod-borne TLS relay
	ipRX      = "10.244.0.7" // in-pod rules, no ztunnel: its server side and the apps
	ipSvc     = "10.96.0.20" // the server's service VIP: no interface has it, pod a's default route takes it
	svcHost   = "server.default.svc.cluster.local"
	prefixLen = "/24"

	tlsClientBase = 7200 // client side of the TLS relay listens on 127.0.0.1:7201..7203 in C
	tlsServerBase = 7300 // server side listens on 7301..7303 in X
	haproxyBase   = 7400 // HAProxy listens on 127.0.0.1:7401..7403 in C
	tlsInpodBase  = 7500 // client side of the pod-borne TLS relay listens on 127.0.0.1:7501..7503 in RC

	portHBONE   = 15008 // the inbound port the in-pod rules leave alone
	ztunnelMark = 1337  // PACKET_MARK of the ztunnels (0x539), which the in-pod rules let by

	// podMSS is the MSS a pod's end of a connection advertises when its peer's address routes
	// over the pod's interface (MTU 1500, less 40 bytes of IPv4 and TCP headers). Under the
	// in-pod redirection the applications see each other's pod addresses, so their
	// connections to the ztunnels, which stay inside the pod, run with it too (see
	// startTLSRelayInpod).
	podMSS = 1460
)

var appPorts = []int{portEcho, portSource, portOneShot}

// meshConfig is the two meshed pods, in ztunnel's local-config shape, and the server's service:
// its VIP's ports 80, 81 and 82 go to the echo, source and one-shot applications.
var meshConfig = fmt.Sprintf(`workloads:
- uid: bench//v1/Pod/default/client
  name: client
  namespace: default
  serviceAccount: client
  workloadIps: ["%[1]s"]
  protocol: HBONE
  node: node1
- uid: bench//v1/Pod/default/server
  name: server
  namespace: default
  serviceAccount: server
  workloadIps: ["%[2]s"]
  protocol: HBONE
  node: node1
  services:
    default/%[4]s: {80: %[5]d, 81: %[6]d, 82: %[7]d}
services:
- name: server
  namespace: default
  hostname: %[4]s
  vips: ["/%[3]s"]
  ports: {80: %[5]d, 81: %[6]d, 82: %[7]d}
`, ipA, ipB, ipSvc, svcHost, portEcho, portSource, portOneShot)

// idleConfig returns a local config with n HBONE workloads in 10.250.0.0/16; the first is the
// one the idle ztunnel runs for.
func idleConfig(n int) string {
	var b strings.Builder
	b.WriteString("workloads:\n")
	for i := range n {
		fmt.Fprintf(&b, `- uid: bench//v1/Pod/ns%d/w%d
  name: w%d
  namespace: ns%d
  serviceAccount: sa%d
  workloadIps: ["10.250.%d.%d"]
  protocol: HBONE
  node: node1
`, i%20, i, i, i%20, i%50, i/250, i%250+1)
	}
	return b.String()
}

// proc is a process the harness started. Its waiter goroutine is owned by the proc: it ends
// when the process exits, and stop waits for it.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string        // file holding its stdout and stderr
	done chan struct{} // closed once the process has exited and err is set
	err  error         // exit error, valid after done
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then kills. Only this process, by its PID.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	p.cmd.Process.Kill()
	<-p.done
}

// tail returns the last lines of the process's output, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// harness owns everything a run builds: the namespaces, the applications, the processes.
// Built and torn down by run's goroutine; close undoes whatever setup managed to do.
type harness struct {
	opts     options
	progress io.Writer // stderr
	tmp      string    // temporary directory, removed by close
	ztunnel  string    // the ztunnel binary

	topo          *topology
	tcpCC         string // the congestion control the namespaces run, read in the node namespace
	node, a, b, x *netns
	c, idle       *netns
	rc, rx        *netns // pods with the in-pod rules for the pod-borne TLS relay (nil unless needed)
	relayCerts    string // the TLS relays' certificate directory, made by the first relay started
	apps          *apps
	procs         []*proc // stopped in reverse order by close
	caDir         string
	paths         []*path
	notes         []string

	// The ztunnel pair of pods a and b (nil when no path needs it), and whether the idle
	// scenario stopped it (ensureZtunnels starts it again). Owned by run's goroutine.
	ztunnels     *proxyGroup
	ztunnelsDown bool

	// The conntrack tool that resetConnState uses ("" when not installed), looked up once.
	// Owned by run's goroutine.
	conntrackBin     string
	conntrackChecked bool
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.progress, "ztunnel-bench: "+format+"\n", args...)
}

// close stops every process, the applications and deletes the namespaces and files.
func (h *harness) close() error {
	for i := len(h.procs) - 1; i >= 0; i-- {
		h.procs[i].stop(3 * time.Second)
	}
	h.procs = nil
	if h.apps != nil {
		h.apps.close()
	}
	var err error
	if h.topo != nil {
		err = h.topo.close()
	}
	if h.tmp != "" && h.opts.keep {
		h.logf("kept %s", h.tmp)
	} else if h.tmp != "" {
		os.RemoveAll(h.tmp)
	}
	return err
}

// start runs bin with args inside ns, output to a log file in the temporary directory.
func (h *harness) start(name string, ns *netns, env []string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(h.tmp, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := ns.command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	var pr, dup *os.File // the pipe's read end and the log file, for stallCopy
	if h.opts.logStall > 0 && strings.HasPrefix(name, "ztunnel") {
		var pw *os.File
		if pr, pw, err = os.Pipe(); err != nil {
			return nil, err
		}
		defer pw.Close() // the child has its own copy: EOF comes when it exits
		if dup, err = os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0); err != nil {
			pr.Close()
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = pw, pw
	}
	if err := cmd.Start(); err != nil {
		if pr != nil {
			pr.Close()
			dup.Close()
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if pr != nil {
		go stallCopy(dup, pr, h.opts.logStall, h.opts.logPeriod) // closes both at EOF
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	h.procs = append(h.procs, p)
	return p, nil
}

// stallCopy copies src (a pipe) to dst until EOF, like a container runtime that copies a
// container's output to its log file, except that it stops reading for stall at the start of
// every period: the writer's pipe buffer fills and its writes wait, as they do when the runtime
// falls behind. It closes both at the end.
func stallCopy(dst io.WriteCloser, src io.ReadCloser, stall, period time.Duration) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 64<<10)
	for {
		time.Sleep(stall)
		readUntil := time.Now().Add(period - stall)
		for time.Now().Before(readUntil) {
			n, err := src.Read(buf)
			dst.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}
}

// waitFor polls cond every 20 ms until it holds, p exits, ctx ends or timeout passes.
func waitFor(ctx context.Context, what string, p *proc, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited (%v) while waiting for %s:\n%s", p.name, p.err, what, p.tail())
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("timed out after %v waiting for %s", timeout, what)
			if p != nil {
				msg += ":\n" + p.tail()
			}
			return errors.New(msg)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// canDial reports whether addr accepts a connection from ns.
func canDial(ctx context.Context, ns *netns, addr string) bool {
	c, err := ns.dial(ctx, addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// httpStatus fetches url from inside ns and returns the status code (0 on error).
func httpStatus(ctx context.Context, ns *netns, url string) int {
	code, _ := httpGet(ctx, ns, url)
	return code
}

// httpGet fetches url from inside ns and returns the status code and the body (0 and nil on
// error).
func httpGet(ctx context.Context, ns *netns, url string) (int, []byte) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       func(ctx context.Context, _, addr string) (net.Conn, error) { return ns.dial(ctx, addr) },
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil
	}
	return resp.StatusCode, body
}

// needs reports whether any selected path is one of names.
func (h *harness) needs(names ...string) bool {
	for _, n := range names {
		if h.opts.paths[n] {
			return true
		}
	}
	return false
}

// setup builds the topology and starts everything the selected paths need.
func (h *harness) setup(ctx context.Context) error {
	if cc := h.opts.tcpCC; cc != "" {
		if err := checkTCPCC(cc, "/proc/sys/net/ipv4"); err != nil {
			return err
		}
	}
	var err error
	if h.tmp, err = os.MkdirTemp("", "ztunnel-bench-"); err != nil {
		return err
	}
	if h.ztunnel, err = h.buildZtunnel(ctx); err != nil {
		return err
	}
	if h.topo, err = newTopology(h.opts.tcpCC); err != nil {
		return err
	}
	h.logf("building namespaces %s-*", h.topo.prefix)
	if h.node, err = h.topo.netns("node"); err != nil {
		return err
	}
	cc, err := h.node.run("sysctl", "-n", "net.ipv4.tcp_congestion_control")
	if err != nil {
		return err
	}
	h.tcpCC = strings.TrimSpace(cc)
	h.logf("TCP congestion control in every namespace: %s", h.tcpCC)
	if err := h.topo.bridge(h.node, "br0", nodeCIDR); err != nil {
		return err
	}
	for _, p := range []struct {
		ns   **netns
		name string
		ip   string
	}{{&h.a, "a", ipA}, {&h.b, "b", ipB}, {&h.x, "x", ipX}, {&h.c, "c", ipC}} {
		if *p.ns, err = h.topo.netns(p.name); err != nil {
			return err
		}
		if err := h.topo.vethToBridge(*p.ns, p.ip+prefixLen, h.node, "br0", gateway); err != nil {
			return err
		}
	}
	redirected, appPods := []*netns{h.a, h.b}, []*netns{h.b, h.x}
	if h.needs(pathTLSRelayInpod) {
		for _, p := range []struct {
			ns   **netns
			name string
			ip   string
		}{{&h.rc, "rc", ipRC}, {&h.rx, "rx", ipRX}} {
			if *p.ns, err = h.topo.netns(p.name); err != nil {
				return err
			}
			if err := h.topo.vethToBridge(*p.ns, p.ip+prefixLen, h.node, "br0", gateway); err != nil {
				return err
			}
		}
		redirected, appPods = append(redirected, h.rc, h.rx), append(appPods, h.rx)
	}
	for _, n := range redirected {
		if err := n.installInpodRedirect(); err != nil {
			return err
		}
	}
	h.apps = newApps()
	for _, n := range appPods {
		for _, port := range appPorts {
			l, err := n.listen(fmt.Sprintf("0.0.0.0:%d", port))
			if err != nil {
				return err
			}
			h.apps.serve(l, port)
		}
	}
	h.caDir = filepath.Join(h.tmp, "ca")
	if err := os.Mkdir(h.caDir, 0o700); err != nil {
		return err
	}
	if err := writeLocalCA(h.caDir); err != nil {
		return err
	}
	if h.opts.paths[pathDirect] {
		h.paths = append(h.paths, &path{name: pathDirect, from: h.c,
			echo: addr(ipX, portEcho), source: addr(ipX, portSource), oneShot: addr(ipX, portOneShot)})
	}
	if h.needs(pathPassthrough, pathHBONE, pathHBONEService) {
		if err := h.startZtunnels(ctx); err != nil {
			return err
		}
	}
	if h.needs(pathTLSRelay) {
		if err := h.startTLSRelay(ctx); err != nil {
			return err
		}
	}
	if h.needs(pathTLSRelayInpod) {
		if err := h.startTLSRelayInpod(ctx); err != nil {
			return err
		}
	}
	if h.needs(pathHAProxy) {
		if err := h.startHAProxy(ctx); err != nil {
			return err
		}
	}
	// Order the paths as the table does, and prove each one end to end before measuring.
	var ordered []*path
	for _, name := range allPaths {
		for _, p := range h.paths {
			if p.name == name {
				ordered = append(ordered, p)
			}
		}
	}
	h.paths = ordered
	for _, p := range h.paths {
		if _, _, err := rr(ctx, p, 10*time.Millisecond); err != nil {
			return fmt.Errorf("path %s does not work: %w", p.name, err)
		}
	}
	if h.opts.paths[pathHBONEService] {
		// The service path is only one if ztunnel took the VIP for the service: its metrics
		// name the service as the destination of what the proof above sent.
		_, body := httpGet(ctx, h.a, "http://127.0.0.1:15020/metrics")
		if !bytes.Contains(body, []byte(`destination_service="`+svcHost+`"`)) {
			return fmt.Errorf("path %s does not work: ztunnel-a counted no connection to service %s", pathHBONEService, svcHost)
		}
	}
	return nil
}

func addr(ip string, port int) string { return fmt.Sprintf("%s:%d", ip, port) }

// buildZtunnel returns -ztunnel, or builds the module's cmd/ztunnel into the temporary directory.
func (h *harness) buildZtunnel(ctx context.Context) (string, error) {
	if h.opts.ztunnel != "" {
		return filepath.Abs(h.opts.ztunnel)
	}
	out := filepath.Join(h.tmp, "ztunnel")
	h.logf("building ztunnel (go build github.com/ztunnel-go/ztunnel/cmd/ztunnel)")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "github.com/ztunnel-go/ztunnel/cmd/ztunnel")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ztunnel (run from inside the module, or pass -ztunnel): %w\n%s", err, b)
	}
	return out, nil
}

// ztunnelEnv is the environment of a dedicated-mode ztunnel for workload info, with the local
// config at cfgPath and the shared LOCAL_CA_DIR.
func (h *harness) ztunnelEnv(info, cfgPath string) []string {
	env := []string{
		"PROXY_MODE=dedicated", "PROXY_WORKLOAD_INFO=" + info,
		"XDS_ADDRESS=", "CA_ADDRESS=", "LOCAL_XDS_PATH=" + cfgPath, "LOCAL_CA_DIR=" + h.caDir,
		"PACKET_MARK=" + strconv.Itoa(ztunnelMark), "RUST_LOG=info", "CONNECTION_TERMINATION_DEADLINE=1s",
	}
	// -ztunnel-env comes last: for a name given twice, the last value is the one a process sees.
	return append(env, h.opts.ztunnelEnv...)
}

// startZtunnel runs one ztunnel in ns and waits for /healthz/ready.
func (h *harness) startZtunnel(ctx context.Context, name string, ns *netns, env []string) (*proc, error) {
	p, err := h.start(name, ns, env, h.ztunnel, "proxy", "ztunnel")
	if err != nil {
		return nil, err
	}
	err = waitFor(ctx, name+" ready", p, 30*time.Second, func() bool {
		return httpStatus(ctx, ns, "http://127.0.0.1:15021/healthz/ready") == http.StatusOK
	})
	return p, err
}

// startZtunnels runs the dedicated-mode ztunnels of pods A and B, as e2e/dedicated_test.go does.
func (h *harness) startZtunnels(ctx context.Context) error {
	// The config has a directory of its own: ztunnel watches the config's
	// directory, and the processes' logs in h.tmp must not wake that watch.
	cfgDir := filepath.Join(h.tmp, "mesh")
	if err := os.Mkdir(cfgDir, 0o700); err != nil {
		return err
	}
	cfgPath := filepath.Join(cfgDir, "mesh.yaml")
	if err := os.WriteFile(cfgPath, []byte(meshConfig), 0o600); err != nil {
		return err
	}
	g := &proxyGroup{start: func(ctx context.Context) ([]*proc, error) {
		h.logf("starting ztunnel in pods a (client) and b (server)")
		za, err := h.startZtunnel(ctx, "ztunnel-a", h.a, h.ztunnelEnv("default/client/client", cfgPath))
		if err != nil {
			return nil, err
		}
		zb, err := h.startZtunnel(ctx, "ztunnel-b", h.b, h.ztunnelEnv("default/server/server", cfgPath))
		if err != nil {
			return []*proc{za}, err
		}
		return []*proc{za, zb}, nil
	}}
	var err error
	if g.procs, err = g.start(ctx); err != nil {
		return err
	}
	h.ztunnels = g
	if h.opts.paths[pathPassthrough] {
		h.paths = append(h.paths, &path{name: pathPassthrough, from: h.a, group: g, members: []int{0},
			echo: addr(ipX, portEcho), source: addr(ipX, portSource), oneShot: addr(ipX, portOneShot)})
	}
	if h.opts.paths[pathHBONE] {
		h.paths = append(h.paths, &path{name: pathHBONE, from: h.a, group: g, members: []int{0, 1},
			echo: addr(ipB, portEcho), source: addr(ipB, portSource), oneShot: addr(ipB, portOneShot)})
	}
	if h.opts.paths[pathHBONEService] {
		h.paths = append(h.paths, &path{name: pathHBONEService, from: h.a, group: g, members: []int{0, 1},
			echo: addr(ipSvc, 80), source: addr(ipSvc, 81), oneShot: addr(ipSvc, 82)})
	}
	return nil
}

// restart stops the processes of g and starts them again.
func (h *harness) restart(ctx context.Context, g *proxyGroup) error {
	for _, p := range g.procs {
		h.stopProc(p)
	}
	var err error
	g.procs, err = g.start(ctx)
	return err
}

// stopProc stops p and forgets it.
func (h *harness) stopProc(p *proc) {
	p.stop(3 * time.Second)
	for i, q := range h.procs {
		if q == p {
			h.procs = append(h.procs[:i], h.procs[i+1:]...)
			break
		}
	}
}

// startTLSRelay runs the two sides of the Go TLS relay (this binary in a relay role) in pods c
// and x, which carry no netfilter rules.
func (h *harness) startTLSRelay(ctx context.Context) error {
	var cmap, smap []string
	for i := range appPorts {
		cmap = append(cmap, fmt.Sprintf("127.0.0.1:%d=%s", tlsClientBase+i+1, addr(ipX, tlsServerBase+i+1)))
		smap = append(smap, fmt.Sprintf("0.0.0.0:%d=127.0.0.1:%d", tlsServerBase+i+1, appPorts[i]))
	}
	g, err := h.startRelayPair(ctx, "tls", "c and x", h.c, h.x, cmap, smap, nil,
		addr("127.0.0.1", tlsServerBase+len(appPorts)), addr("127.0.0.1", tlsClientBase+len(appPorts)))
	if err != nil {
		return err
	}
	h.paths = append(h.paths, &path{name: pathTLSRelay, from: h.c, group: g, members: []int{0, 1},
		echo:    addr("127.0.0.1", tlsClientBase+1),
		source:  addr("127.0.0.1", tlsClientBase+2),
		oneShot: addr("127.0.0.1", tlsClientBase+3)})
	return nil
}

// startTLSRelayInpod runs the same relay in pods rc and rx, which carry istio-cni's in-pod
// rules as a and b do, and sends it through them as the ztunnels' own traffic goes: the client
// side dials with ztunnel's mark (0x539, so the outbound capture lets it by) to port 15008 of
// rx (the one port the inbound capture does not redirect), where the server side tells the
// applications apart by ALPN and dials them at rx's address with the mark. So every packet of
// this path passes the rules, conntrack and connmark that the HBONE path's packets pass, which
// pods c and x do not have; only the redirection of the application's own connection to
// ztunnel (one NAT per connection) is missing.
//
// Its sockets also take the segment size of the HBONE path's local legs. An application in pod
// a dials pod b's address, which routes over the pod's interface, so its SYN advertises an MSS
// of 1460 although the REDIRECT delivers the connection to ztunnel over loopback; and in pod b
// the application answers ztunnel's connection (whose source is pod a's address) with the same
// MSS. Both legs inside the pods therefore run in 1448-byte segments, where a relay dialing
// 127.0.0.1 or its own address would get loopback's, up to 65483 bytes (on this kind of host
// about 8% more CPU per byte and a quarter less throughput per leg: benchmarks/README.md).
// -mss podMSS on every socket of the relay gives its local legs the same segments; its TLS leg
// crosses the pods' interfaces, where the MTU sets that size anyway.
func (h *harness) startTLSRelayInpod(ctx context.Context) error {
	var cmap, smap []string
	for i, port := range appPorts {
		proto := fmt.Sprintf("app%d", i+1)
		cmap = append(cmap, fmt.Sprintf("127.0.0.1:%d=%s@%s", tlsInpodBase+i+1, addr(ipRX, portHBONE), proto))
		smap = append(smap, fmt.Sprintf("0.0.0.0:%d=%s@%s", portHBONE, addr(ipRX, port), proto))
	}
	opts := []string{"-mark", strconv.Itoa(ztunnelMark), "-mss", strconv.Itoa(podMSS)}
	g, err := h.startRelayPair(ctx, "tls-inpod", "rc and rx (in-pod rules)", h.rc, h.rx, cmap, smap, opts,
		addr("127.0.0.1", portHBONE), addr("127.0.0.1", tlsInpodBase+len(appPorts)))
	if err != nil {
		return err
	}
	h.paths = append(h.paths, &path{name: pathTLSRelayInpod, from: h.rc, group: g, members: []int{0, 1},
		echo:    addr("127.0.0.1", tlsInpodBase+1),
		source:  addr("127.0.0.1", tlsInpodBase+2),
		oneShot: addr("127.0.0.1", tlsInpodBase+3)})
	return nil
}

// startRelayPair starts the server side of a Go TLS relay in srvNS and its client side in
// cliNS, each with its mappings and the extra arguments, and waits until each accepts
// connections on its probe address. The processes are named name-server and name-client; the
// group's members are client (0) and server (1).
func (h *harness) startRelayPair(ctx context.Context, name, where string, cliNS, srvNS *netns, cmap, smap, extra []string, srvProbe, cliProbe string) (*proxyGroup, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if h.relayCerts == "" {
		certs := filepath.Join(h.tmp, "relay-certs")
		if err := os.Mkdir(certs, 0o700); err != nil {
			return nil, err
		}
		if err := writeRelayCerts(certs); err != nil {
			return nil, err
		}
		h.relayCerts = certs
	}
	args := func(m []string) []string {
		return append([]string{"-certs", h.relayCerts, "-map", strings.Join(m, ",")}, extra...)
	}
	g := &proxyGroup{start: func(ctx context.Context) ([]*proc, error) {
		h.logf("starting the Go TLS 1.3 relay pair in %s", where)
		srv, err := h.start(name+"-server", srvNS, []string{roleEnv + "=" + roleTLSServer}, self, args(smap)...)
		if err != nil {
			return nil, err
		}
		if err := waitFor(ctx, name+"-server listening", srv, 10*time.Second, func() bool {
			return canDial(ctx, srvNS, srvProbe)
		}); err != nil {
			return []*proc{srv}, err
		}
		cli, err := h.start(name+"-client", cliNS, []string{roleEnv + "=" + roleTLSClient}, self, args(cmap)...)
		if err != nil {
			return []*proc{srv}, err
		}
		err = waitFor(ctx, name+"-client listening", cli, 10*time.Second, func() bool {
			return canDial(ctx, cliNS, cliProbe)
		})
		return []*proc{cli, srv}, err
	}}
	if g.procs, err = g.start(ctx); err != nil {
		return nil, err
	}
	return g, nil
}

// haproxyConfig is HAProxy as a plain L4 relay with kernel splicing both ways, accepting up to
// maxconn connections (each takes two descriptors of its RLIMIT_NOFILE).
func haproxyConfig(maxconn int) string {
	var b strings.Builder
	// maxpipes bounds the splice pipes (two descriptors each; the default, maxconn/4, would not fit
	// 10,000 connections in a 20,000-descriptor limit). Only busy connections hold a pipe.
	fmt.Fprintf(&b, `global
    maxconn %d
    maxpipes 256
defaults
    mode tcp
    maxconn %d
`, maxconn, maxconn)
	b.WriteString(`    timeout connect 5s
    timeout client 10m
    timeout server 10m
    option splice-request
    option splice-response
`)
	for i, port := range appPorts {
		fmt.Fprintf(&b, "listen app%d\n    bind 127.0.0.1:%d\n    server s %s\n", port, haproxyBase+i+1, addr(ipX, port))
	}
	return b.String()
}

// startHAProxy runs HAProxy in C when it is installed; otherwise the path is skipped with a note.
func (h *harness) startHAProxy(ctx context.Context) error {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		h.note("haproxy path skipped: haproxy is not installed (Debian package haproxy)")
		return nil
	}
	cfg := filepath.Join(h.tmp, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(haproxyConfig(h.opts.idleConns+100)), 0o600); err != nil {
		return err
	}
	g := &proxyGroup{start: func(ctx context.Context) ([]*proc, error) {
		h.logf("starting HAProxy (TCP mode, splice) in c")
		p, err := h.start("haproxy", h.c, nil, bin, "-db", "-f", cfg)
		if err != nil {
			return nil, err
		}
		err = waitFor(ctx, "haproxy listening", p, 10*time.Second, func() bool {
			return canDial(ctx, h.c, addr("127.0.0.1", haproxyBase+len(appPorts)))
		})
		return []*proc{p}, err
	}}
	if g.procs, err = g.start(ctx); err != nil {
		if ctx.Err() != nil {
			return err
		}
		for _, p := range g.procs {
			h.stopProc(p)
		}
		h.note(fmt.Sprintf("haproxy path skipped: it did not start: %v", err))
		return nil
	}
	h.paths = append(h.paths, &path{name: pathHAProxy, from: h.c, group: g, members: []int{0},
		echo:    addr("127.0.0.1", haproxyBase+1),
		source:  addr("127.0.0.1", haproxyBase+2),
		oneShot: addr("127.0.0.1", haproxyBase+3)})
	return nil
}

func (h *harness) note(s string) {
	h.notes = append(h.notes, s)
	h.logf("note: %s", s)
}

// idleResult is what one idle-RSS measurement read.
type idleResult struct {
	rss    int64    // VmRSS, bytes
	split  memSplit // anonymous and file-backed, from smaps_rollup
	others []int    // PIDs of other processes running the same executable at that moment
	// scraped and scrapedSplit are read again after one scrape of the stats port: what an idle
	// ztunnel that Prometheus watches holds (the scrape faults back some of the executable's
	// pages that start-up paged out, and its garbage waits for the next GC).
	scraped      int64
	scrapedSplit memSplit
}

// idleRSS measures one ztunnel as it runs on a node: the only ztunnel there (a DaemonSet).
// Its config holds the idle workloads and sits alone in its own directory (the local config
// watcher wakes on any file event in that directory, and the harness's logs are written
// elsewhere). The path ztunnels (pods a and b, the same executable) are stopped first and
// started again by the next scenario that needs them (ensureZtunnels): the kernel keeps an
// executable page resident in every process that maps it as long as one of them uses it, so
// with them alive the figure would count code the idle ztunnel no longer touches. It waits
// until the ztunnel is ready and 2 x settle more, reads its memory, scrapes its metrics once,
// waits settle, reads its memory again and stops it.
func (h *harness) idleRSS(ctx context.Context, settle time.Duration) (idleResult, error) {
	var err error
	dir := filepath.Join(h.tmp, "idle-config")
	if h.idle == nil {
		if h.idle, err = h.topo.netns("idle"); err != nil {
			return idleResult{}, err
		}
		if err := ip("-n", h.idle.name, "addr", "add", "10.250.0.1/32", "dev", "lo"); err != nil {
			return idleResult{}, err
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return idleResult{}, err
		}
		if err := os.WriteFile(filepath.Join(dir, "idle.yaml"), []byte(idleConfig(h.opts.idleWorkloads)), 0o600); err != nil {
			return idleResult{}, err
		}
	}
	if g := h.ztunnels; g != nil && !h.ztunnelsDown {
		h.logf("stopping the ztunnels of pods a and b while the idle ztunnel is measured alone")
		for _, p := range g.procs {
			h.stopProc(p)
		}
		g.procs, h.ztunnelsDown = nil, true
	}
	env := h.ztunnelEnv("ns0/w0/sa0", filepath.Join(dir, "idle.yaml"))
	p, err := h.startZtunnel(ctx, "ztunnel-idle", h.idle, env)
	defer func() {
		if p != nil {
			h.stopProc(p)
		}
	}()
	if err != nil {
		return idleResult{}, err
	}
	select {
	case <-ctx.Done():
		return idleResult{}, ctx.Err()
	case <-time.After(2 * settle):
	}
	var r idleResult
	if r.rss, err = procRSS(p.pid()); err != nil {
		return r, err
	}
	if r.split, err = procMemSplit(p.pid()); err != nil {
		return r, err
	}
	if r.others, err = sameExecutable(p.pid()); err != nil {
		return r, err
	}
	// One scrape as Prometheus makes it (Go's client asks for gzip, as Prometheus does), then
	// settle and read again.
	if code, body := httpGet(ctx, h.idle, "http://127.0.0.1:15020/metrics"); code != http.StatusOK || len(body) == 0 {
		return r, fmt.Errorf("idle ztunnel: scraping its metrics: status %d, %d bytes", code, len(body))
	}
	select {
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(settle):
	}
	if r.scraped, err = procRSS(p.pid()); err != nil {
		return r, err
	}
	r.scrapedSplit, err = procMemSplit(p.pid())
	return r, err
}

// ensureZtunnels starts the path ztunnels again if the idle scenario stopped them, and proves
// their paths with a few round trips, as setup does (certificates, pooled connections).
func (h *harness) ensureZtunnels(ctx context.Context) error {
	g := h.ztunnels
	if g == nil || !h.ztunnelsDown {
		return nil
	}
	var err error
	g.procs, err = g.start(ctx)
	if err != nil {
		return err // the processes it started are in h.procs: close stops them
	}
	h.ztunnelsDown = false
	for _, p := range h.paths {
		if p.group != g {
			continue
		}
		if _, _, err := rr(ctx, p, 10*time.Millisecond); err != nil {
			return fmt.Errorf("path %s does not work after restarting its ztunnels: %w", p.name, err)
		}
	}
	return nil
}

// sameExecutable returns the PIDs of the other processes whose executable is the file pid runs
// (compared by device and inode). Processes that vanish or cannot be read are skipped.
func sameExecutable(pid int) ([]int, error) {
	self, err := os.Stat(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == pid {
			continue
		}
		if fi, err := os.Stat("/proc/" + e.Name() + "/exe"); err == nil && os.SameFile(fi, self) {
			out = append(out, n)
		}
	}
	return out, nil
}

// writeLocalCA writes an Istio plugged-in CA layout (a self-signed root that signs directly)
// into dir, for LOCAL_CA_DIR shared by both ztunnels.
func writeLocalCA(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"ztunnel-bench"}, CommonName: "ztunnel-bench CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for name, data := range map[string][]byte{
		"ca-cert.pem": certPEM, "root-cert.pem": certPEM, "cert-chain.pem": certPEM,
		"ca-key.pem": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}
