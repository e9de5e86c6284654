// Package lab builds throw-away network topologies for end-to-end tests:
// network namespaces joined by veth pairs and bridges, addresses and routes,
// and the in-pod redirection rules istio-cni installs, all made with the ip and
// iptables tools and removed by t.Cleanup.
//
// Everything needs root; New skips the test otherwise. Every namespace name
// carries a short random per-lab prefix, so labs of concurrent tests (and of
// other packages) never collide, and cleanup deletes only what this lab made.
// Interfaces are created directly inside lab namespaces, never in the host's.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/ztunnel-go/ztunnel/netutil"
)

// TB is the part of testing.TB a lab needs, so that a command (the ambient demo) can build one
// too: Fatalf must not return (testing.TB's stops the test's goroutine; a command exits after
// running its cleanups), Cleanup functions run in reverse order when the owner ends.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
}

// skipper is implemented by testing.TB: New skips the test instead of failing it.
type skipper interface{ Skip(args ...any) }

// Lab is one test's set of namespaces. Methods fail the test (t.Fatal) on
// setup errors, so they must be called from the test's goroutine.
type Lab struct {
	t      TB     // immutable after New
	prefix string // immutable after New, e.g. "zt3fa9c"

	mu      sync.Mutex
	nets    []*Netns // guarded by mu; deleted in reverse order at cleanup
	nextIf  int      // guarded by mu; numbers veth pairs of this lab
	cleaned bool     // guarded by mu
}

// Netns is one network namespace of a lab.
type Netns struct {
	lab  *Lab
	name string   // immutable
	f    *os.File // /var/run/netns/<name>, open until cleanup; its fd is what Do switches to
}

// netnsDir is where `ip netns` keeps its bind mounts.
const netnsDir = "/var/run/netns"

// New returns an empty lab whose namespaces are deleted when t ends. It skips
// the test when not running as root on Linux or when the ip tool is missing.
func New(t TB) *Lab {
	t.Helper()
	skip := func(msg string) {
		if s, ok := t.(skipper); ok {
			s.Skip(msg)
		}
		t.Fatalf("%s", msg)
	}
	if runtime.GOOS != "linux" {
		skip("lab: network namespaces need Linux")
	}
	if os.Geteuid() != 0 {
		skip("lab: needs root (network namespaces, veth, iptables); run the tests as root to include it")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skip("lab: the ip tool (iproute2) is not installed")
	}
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatalf("lab: random prefix: %v", err)
	}
	l := &Lab{t: t, prefix: "zt" + hex.EncodeToString(rnd[:])}
	t.Cleanup(l.cleanup)
	return l
}

// Prefix returns the lab's unique name prefix.
func (l *Lab) Prefix() string { return l.prefix }

func (l *Lab) cleanup() {
	l.mu.Lock()
	nets := l.nets
	l.nets = nil
	l.cleaned = true
	l.mu.Unlock()
	for i := len(nets) - 1; i >= 0; i-- {
		n := nets[i]
		n.f.Close()
		if out, err := exec.Command("ip", "netns", "delete", n.name).CombinedOutput(); err != nil {
			l.t.Errorf("lab: delete netns %s: %v: %s", n.name, err, out)
		}
	}
}

// ip runs the ip tool (in the host namespace; use -n to address a lab netns).
func (l *Lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("lab: ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Netns creates the namespace <prefix>-<name> with its loopback up.
func (l *Lab) Netns(name string) *Netns {
	l.t.Helper()
	full := l.prefix + "-" + name
	l.mu.Lock()
	cleaned := l.cleaned
	l.mu.Unlock()
	if cleaned {
		l.t.Fatalf("lab: Netns(%q) after cleanup", name)
	}
	l.ip("netns", "add", full)
	f, err := os.Open(netnsDir + "/" + full)
	if err != nil {
		exec.Command("ip", "netns", "delete", full).Run()
		l.t.Fatalf("lab: open netns %s: %v", full, err)
	}
	n := &Netns{lab: l, name: full, f: f}
	l.mu.Lock()
	l.nets = append(l.nets, n)
	l.mu.Unlock()
	l.ip("-n", full, "link", "set", "lo", "up")
	return n
}

// ifPair returns the next pair of interface names, short enough (≤ 15) for
// the kernel: v<k>a and v<k>b.
func (l *Lab) ifPair() (string, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nextIf++
	return fmt.Sprintf("v%da", l.nextIf), fmt.Sprintf("v%db", l.nextIf)
}

// addAddr assigns p to dev in n (IPv6 without duplicate address detection, so
// it is usable at once). A zero p assigns nothing.
func (l *Lab) addAddr(n *Netns, dev string, p netip.Prefix) {
	l.t.Helper()
	if !p.IsValid() {
		return
	}
	args := []string{"-n", n.name, "addr", "add", p.String(), "dev", dev}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	l.ip(args...)
}

// Veth joins a and b with a veth pair, assigns aAddr and bAddr (either may be
// the zero Prefix for none) and brings both ends up. It returns the interface
// names in a and in b.
func (l *Lab) Veth(a *Netns, aAddr netip.Prefix, b *Netns, bAddr netip.Prefix) (aIf, bIf string) {
	l.t.Helper()
	aIf, bIf = l.ifPair()
	l.ip("link", "add", aIf, "netns", a.name, "type", "veth", "peer", "name", bIf, "netns", b.name)
	l.addAddr(a, aIf, aAddr)
	l.addAddr(b, bIf, bAddr)
	l.ip("-n", a.name, "link", "set", aIf, "up")
	l.ip("-n", b.name, "link", "set", bIf, "up")
	return aIf, bIf
}

// Bridge creates the bridge name (≤ 15 characters) in n, assigns addr (zero
// for none) and brings it up.
func (l *Lab) Bridge(n *Netns, name string, addr netip.Prefix) {
	l.t.Helper()
	if len(name) > 15 {
		l.t.Fatalf("lab: bridge name %q longer than 15 characters", name)
	}
	l.ip("-n", n.name, "link", "add", name, "type", "bridge")
	l.addAddr(n, name, addr)
	l.ip("-n", n.name, "link", "set", name, "up")
}

// VethToBridge attaches pod to the bridge of node: a veth pair whose pod end
// gets podAddr and whose node end is enslaved to bridge. It returns the
// interface names in pod and in node.
func (l *Lab) VethToBridge(pod *Netns, podAddr netip.Prefix, node *Netns, bridge string) (podIf, nodeIf string) {
	l.t.Helper()
	podIf, nodeIf = l.Veth(pod, podAddr, node, netip.Prefix{})
	l.ip("-n", node.name, "link", "set", nodeIf, "master", bridge)
	return podIf, nodeIf
}

// AddAddr assigns p to dev in n (IPv6 without duplicate address detection).
func (n *Netns) AddAddr(dev string, p netip.Prefix) {
	n.lab.t.Helper()
	n.lab.addAddr(n, dev, p)
}

// Name returns the namespace's full name (as `ip netns` knows it).
func (n *Netns) Name() string { return n.name }

// Path returns the namespace's bind mount, /var/run/netns/<name>; opening it
// gives a netns file descriptor (what istio-cni hands ztunnel over ZDS).
func (n *Netns) Path() string { return netnsDir + "/" + n.name }

// Run runs a command inside n (ip netns exec) and returns its combined output.
func (n *Netns) Run(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.name}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lab: in %s: %s: %w", n.name, strings.Join(args, " "), err)
	}
	return string(out), nil
}

// MustRun is Run that fails t on error.
func (n *Netns) MustRun(t TB, args ...string) string {
	t.Helper()
	out, err := n.Run(args...)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return out
}

// Do runs fn with the calling code's sockets created inside n (see
// netutil.InNetns for the rules).
func (n *Netns) Do(fn func() error) error {
	return netutil.InNetns(int(n.f.Fd()), fn)
}

// Listen listens inside n; the listener is closed when t ends.
func (n *Netns) Listen(t TB, network, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("lab: listen %s %s in %s: %v", network, addr, n.name, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dialTimeout bounds Dial: lab networks answer at once or never.
const dialTimeout = 5 * time.Second

// Dial connects from inside n (to an IP literal address).
func (n *Netns) Dial(network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = net.DialTimeout(network, addr, dialTimeout)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: dial %s %s from %s: %w", network, addr, n.name, err)
	}
	return c, nil
}

// Command returns a command that runs inside n (via ip netns exec, which
// execs it, so the process is the command itself). The caller starts it and
// waits for it.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name, name}, args...)...)
}

// AddRoute adds a route to dst via the gateway via in n.
func (n *Netns) AddRoute(dst netip.Prefix, via netip.Addr) {
	n.lab.t.Helper()
	args := []string{"-n", n.name, "route", "add", dst.String(), "via", via.String()}
	if dst.Addr().Is6() {
		args = append([]string{"-6"}, args...)
	}
	n.lab.ip(args...)
}
