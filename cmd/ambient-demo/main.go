// Command ambient-demo builds a one-machine Istio ambient lab (root only) and walks through it:
// a node namespace with a bridge and three pod namespaces carrying istio-cni's in-pod
// redirection, a fake istio-cni that hands the pods to ztunnel over ZDS, and ztunnel in shared
// mode. It sends traffic between the pods, prints ztunnel's access log lines with the source
// and destination identities, applies a deny policy by editing the LOCAL_XDS_PATH file, shows
// the connection being refused, and tears everything down. `make demo` runs it.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/ambientlab"
	"github.com/ztunnel-go/ztunnel/internal/lab"
)

func main() {
	bin := flag.String("ztunnel", "bin/ztunnel", "the ztunnel binary to run")
	flag.Parse()
	d := &demo{}
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(fatal); !ok {
					panic(r)
				}
				code = 1
			}
		}()
		d.run(*bin)
	}()
	d.cleanup()
	os.Exit(code)
}

// fatal is the panic value of demo.Fatalf; main recovers it, tears down and exits 1.
type fatal struct{}

// demo implements lab.TB for a command: Fatalf unwinds to main, which runs the cleanups.
type demo struct {
	mu       sync.Mutex
	cleanups []func()
}

func (d *demo) Helper() {}
func (d *demo) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "demo: "+format+"\n", args...)
	panic(fatal{})
}
func (d *demo) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "demo: "+format+"\n", args...)
}
func (d *demo) Logf(format string, args ...any) { fmt.Printf(format+"\n", args...) }
func (d *demo) Cleanup(f func()) {
	d.mu.Lock()
	d.cleanups = append(d.cleanups, f)
	d.mu.Unlock()
}

func (d *demo) cleanup() {
	d.mu.Lock()
	cs := d.cleanups
	d.cleanups = nil
	d.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
	fmt.Println("== torn down: namespaces, sockets and processes removed")
}

const denyPolicy = `policies:
- name: deny-default
  namespace: default
  scope: Namespace
  action: Deny
  dryRun: false
  rules:
  - - - namespaces: [!Exact default]
`

func (d *demo) run(bin string) {
	if os.Geteuid() != 0 {
		d.Fatalf("needs root (network namespaces, iptables): run `sudo make demo`")
	}
	if _, err := os.Stat(bin); err != nil {
		d.Fatalf("ztunnel binary: %v (run `make build` first)", err)
	}
	dir, err := os.MkdirTemp("", "ambient-demo-")
	if err != nil {
		d.Fatalf("%v", err)
	}
	d.Cleanup(func() { os.RemoveAll(dir) })
	zdsLog := slog.New(slog.NewTextHandler(io.Discard, nil))

	fmt.Println("== building the lab: node namespace, bridge 10.244.1.0/24, pods a, b, c")
	l := lab.New(d)
	node := ambientlab.NewNode(l, d, "node", netip.MustParsePrefix("10.244.1.1/24"), dir, zdsLog)
	ip := netip.MustParseAddr
	a := node.AddPod("a", "default", "sleep", ip("10.244.1.2"), true)
	b := node.AddPod("b", "default", "echo", ip("10.244.1.3"), true)
	c := node.AddPod("c", "other", "curl", ip("10.244.1.4"), true)
	for _, p := range []*ambientlab.Pod{a, b, c} {
		fmt.Printf("   pod %-2s %s/%s sa=%s in netns %s (istio-cni redirection installed)\n", p.Name, p.Namespace, p.Name, p.ServiceAccount, p.NS.Name())
	}
	mesh := "workloads:\n"
	for _, p := range []*ambientlab.Pod{a, b, c} {
		mesh += p.Workload()
	}
	cfgPath := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(cfgPath, []byte(mesh), 0o600); err != nil {
		d.Fatalf("%v", err)
	}
	appL := b.NS.Listen(d, "tcp", "0.0.0.0:8080")
	go serveEcho(appL) // ends when the listener is closed at cleanup
	for _, p := range []*ambientlab.Pod{a, b, c} {
		if err := p.Enroll(); err != nil {
			d.Fatalf("%v", err)
		}
	}

	fmt.Println("== starting ztunnel (PROXY_MODE=shared) in the node namespace, INPOD_UDS=" + node.Sock)
	z := startZtunnel(d, node.NS, bin, "PROXY_MODE=shared", "INPOD_UDS="+node.Sock, "XDS_ADDRESS=", "CA_ADDRESS=",
		"FAKE_CA=true", "LOCAL_XDS_PATH="+cfgPath, "RUST_LOG=info")
	for _, p := range []*ambientlab.Pod{a, b} {
		out, _ := p.NS.Run("ss", "-Htln")
		fmt.Printf("   listening inside pod %s:\n%s\n", p.Name, indent(out))
	}

	fmt.Println("== traffic: a -> b:8080 and c -> b:8080 (captured, mTLS HBONE between the pods)")
	for _, p := range []*ambientlab.Pod{a, c} {
		msg := "hello from " + p.Name
		got, err := echo(p.NS, "10.244.1.3:8080", msg)
		fmt.Printf("   %s -> b: sent %q, got %q, err=%v\n", p.Name, msg, got, err)
	}
	time.Sleep(300 * time.Millisecond)
	fmt.Println("   ztunnel access log:")
	for _, line := range z.lines("connection complete") {
		fmt.Println(indent(line))
	}

	fmt.Println("== applying a DENY policy for sources in namespace default (editing " + cfgPath + ")")
	before := len(z.lines("connection complete"))
	if err := os.WriteFile(cfgPath, []byte(mesh+denyPolicy), 0o600); err != nil {
		d.Fatalf("%v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(z.lines("local config applied")) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for _, line := range z.lines("ztunnel::xds") {
		fmt.Println(indent(line))
	}
	for _, p := range []*ambientlab.Pod{a, c} {
		msg := "hello again from " + p.Name
		got, err := echo(p.NS, "10.244.1.3:8080", msg)
		verdict := "allowed"
		if got != msg {
			verdict = "REFUSED"
		}
		fmt.Printf("   %s -> b: %s (got %q, err=%v)\n", p.Name, verdict, got, err)
	}
	time.Sleep(300 * time.Millisecond)
	fmt.Println("   ztunnel access log since the policy:")
	for _, line := range z.lines("connection complete")[before:] {
		fmt.Println(indent(line))
	}
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "     " + strings.ReplaceAll(s, "\n", "\n     ")
}

func serveEcho(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() { // ends when the client half-closes
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// echo sends msg from ns to addr, half-closes, and returns what came back.
func echo(ns *lab.Netns, addr, msg string) (string, error) {
	c, err := ns.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err == nil && len(b) == 0 {
		err = errors.New("connection closed by the proxy")
	}
	return string(b), err
}

// ztunnelProc is the ztunnel process and its collected output.
type ztunnelProc struct {
	mu  sync.Mutex
	out []string
}

func (z *ztunnelProc) lines(sub string) []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	var out []string
	for _, l := range z.out {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

func startZtunnel(d *demo, ns *lab.Netns, bin string, env ...string) *ztunnelProc {
	z := &ztunnelProc{}
	cmd := ns.Command(context.Background(), bin, "proxy", "ztunnel")
	cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		d.Fatalf("start ztunnel: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			z.mu.Lock()
			z.out = append(z.out, sc.Text())
			z.mu.Unlock()
		}
	})
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }() // ends with the process
	d.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		wg.Wait()
		fmt.Println("== ztunnel stopped")
	})
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) { return ns.Dial(network, addr) },
	}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get("http://127.0.0.1:15021/healthz/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Println("   ztunnel is ready (snapshot from istio-cni received)")
				return z
			}
		}
		select {
		case err := <-exited:
			d.Fatalf("ztunnel exited: %v\n%s", err, strings.Join(z.lines(""), "\n"))
		default:
		}
		if time.Now().After(deadline) {
			d.Fatalf("ztunnel not ready after 20s:\n%s", strings.Join(z.lines(""), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
