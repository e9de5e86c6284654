// Package e2e runs the ztunnel binary for real: in network namespaces with istio-cni's in-pod
// redirection rules (root only), and as a plain process for start-up behaviour.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"github.com/ztunnel-go/ztunnel/tls/certs/certtest"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/lab"
	"github.com/ztunnel-go/ztunnel/internal/syncbuf"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
)

var ztunnelBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ztunnel-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ztunnelBin = filepath.Join(dir, "ztunnel")
	build := exec.Command("go", "build", "-o", ztunnelBin, "../cmd/ztunnel")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building ztunnel:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a process's output while tests read it.
type syncBuffer struct{ syncbuf.Buffer }

// lines returns the output lines containing every one of subs.
func (s *syncBuffer) lines(subs ...string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		for _, sub := range subs {
			if !strings.Contains(sc.Text(), sub) {
				continue next
			}
		}
		out = append(out, sc.Text())
	}
	return out
}

// writeCA writes an Istio plugged-in CA layout (a root that signs directly) into dir.
func writeCA(t *testing.T, dir string) {
	t.Helper()
	certtest.NewCA(t, "e2e root").WriteCACerts(t, dir, true)
}

// ztunnel is one ztunnel process started by a test.
type ztunnel struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	ns   *lab.Netns
	done chan error // receives the exit error once
}

// startZtunnel runs the binary inside ns with env and waits until /healthz/ready answers 200.
func startZtunnel(t *testing.T, ns *lab.Netns, env ...string) *ztunnel {
	t.Helper()
	z := &ztunnel{out: &syncBuffer{}, ns: ns, done: make(chan error, 1)}
	z.cmd = ns.Command(context.Background(), ztunnelBin, "proxy", "ztunnel")
	z.cmd.Env = append(os.Environ(), env...)
	z.cmd.Stdout, z.cmd.Stderr = z.out, z.out
	if err := z.cmd.Start(); err != nil {
		t.Fatalf("start ztunnel in %s: %v", ns.Name(), err)
	}
	go func() { z.done <- z.cmd.Wait() }()
	t.Cleanup(func() {
		if z.cmd.ProcessState == nil {
			z.cmd.Process.Kill()
			<-z.done
		}
		if t.Failed() {
			t.Logf("ztunnel in %s output:\n%s", ns.Name(), z.out.String())
		}
	})
	testwait.Until(t, "ztunnel ready in "+ns.Name(), 20*time.Second, func() bool {
		select {
		case err := <-z.done:
			z.done <- err
			t.Fatalf("ztunnel in %s exited early: %v\n%s", ns.Name(), err, z.out.String())
		default:
		}
		code, _ := z.get("127.0.0.1:15021", "/healthz/ready")
		return code == http.StatusOK
	})
	return z
}

// get fetches path from addr inside the ztunnel's network namespace.
func (z *ztunnel) get(addr, path string) (int, string) {
	return z.request(http.MethodGet, addr, path)
}

// post sends an empty POST to path at addr inside the ztunnel's network namespace.
func (z *ztunnel) post(addr, path string) (int, string) {
	return z.request(http.MethodPost, addr, path)
}

func (z *ztunnel) request(method, addr, path string) (int, string) {
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, a string) (net.Conn, error) { return z.ns.Dial(network, a) },
		},
	}
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// stop sends SIGTERM and returns the exit error.
func (z *ztunnel) stop(t *testing.T, timeout time.Duration) error {
	t.Helper()
	z.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-z.done:
		return err
	case <-time.After(timeout):
		t.Fatalf("ztunnel in %s did not exit within %v of SIGTERM", z.ns.Name(), timeout)
		return nil
	}
}

// TestBadConfigExits checks that a malformed variable stops start-up with its name and status 1.
func TestBadConfigExits(t *testing.T) {
	cases := []struct{ env, want string }{
		{"HTTP2_FRAME_SIZE=lots", "HTTP2_FRAME_SIZE"},
		{"PROXY_MODE=sideways", "PROXY_MODE"},
		{"POOL_UNUSED_RELEASE_TIMEOUT=soon", "POOL_UNUSED_RELEASE_TIMEOUT"},
	}
	for _, c := range cases {
		t.Run(c.env, func(t *testing.T) {
			cmd := exec.Command(ztunnelBin, "proxy", "ztunnel")
			cmd.Env = append(os.Environ(), c.env, "XDS_ADDRESS=", "CA_ADDRESS=", "FAKE_CA=true")
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit = %v, want status 1; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("output does not name %s:\n%s", c.want, out)
			}
		})
	}
}

// TestVersion checks `ztunnel version` (ztunnel's BuildInfo line, with the Istio version from
// the environment), `ztunnel help`, and that an unknown command exits with status 1.
func TestVersion(t *testing.T) {
	cmd := exec.Command(ztunnelBin, "version")
	cmd.Env = append(os.Environ(), "ISTIO_META_ISTIO_VERSION=1.30.1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), `version.BuildInfo{Version:"`) || !strings.Contains(string(out), `IstioVersion:"1.30.1"`) {
		t.Fatalf("ztunnel version: %v\n%s", err, out)
	}
	if out, err := exec.Command(ztunnelBin, "help").CombinedOutput(); err != nil || !strings.Contains(string(out), "version.BuildInfo{") {
		t.Errorf("ztunnel help: %v\n%s", err, out)
	}
	out, err = exec.Command(ztunnelBin, "bogus").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "unknown command: bogus") {
		t.Errorf("ztunnel bogus: %v\n%s", err, out)
	}
}
