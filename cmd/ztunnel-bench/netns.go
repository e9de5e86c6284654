package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/ztunnel-go/ztunnel/internal/cnirules"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/ztunnel-go/ztunnel/netutil"
)

// This file is a minimal network-namespace builder made with the ip tool, kept inside the
// harness on purpose: internal/lab is shaped for tests and is being changed by other work.

// netnsDir is where `ip netns` keeps its bind mounts.
const netnsDir = "/var/run/netns"

// topology owns the namespaces the harness made. Not safe for concurrent setup calls; built
// and torn down by run's goroutine only.
type topology struct {
	prefix string   // immutable after newTopology: random, so runs never collide
	nets   []*netns // deleted in reverse order by close
	nextIf int      // numbers veth pairs
	tcpCC  string   // congestion control netns sets in each namespace ("": inherited); immutable
}

// netns is one namespace of the topology.
type netns struct {
	name string   // full name as `ip netns` knows it; immutable
	f    *os.File // open bind mount; its fd is what do switches to
}

// newTopology names a new topology; tcpCC, when set, is the TCP congestion
// control of each of its namespaces.
func newTopology(tcpCC string) (*topology, error) {
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("random prefix: %w", err)
	}
	return &topology{prefix: "zb" + hex.EncodeToString(rnd[:]), tcpCC: tcpCC}, nil
}

// ip runs the ip tool in the host namespace (use -n to address a harness namespace).
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// netns creates <prefix>-<name> with its loopback up and the sysctls a connection-rate
// benchmark needs: TIME_WAIT reuse, and at most 4,096 TIME_WAIT sockets, because tens of
// thousands of them (S3 makes ~10,000 connections per second on the direct path) made every
// path's connection rate fall from one repetition to the next. With t.tcpCC it also sets the
// namespace's TCP congestion control, which a new namespace otherwise takes from the host.
func (t *topology) netns(name string) (*netns, error) {
	full := t.prefix + "-" + name
	if err := ip("netns", "add", full); err != nil {
		return nil, err
	}
	f, err := os.Open(netnsDir + "/" + full)
	if err != nil {
		ip("netns", "delete", full)
		return nil, fmt.Errorf("open netns %s: %w", full, err)
	}
	n := &netns{name: full, f: f}
	t.nets = append(t.nets, n)
	if err := ip("-n", full, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	if _, err := n.run("sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=1", "net.ipv4.tcp_max_tw_buckets=4096"); err != nil {
		return nil, err
	}
	if t.tcpCC != "" {
		if _, err := n.run("sysctl", "-q", "-w", "net.ipv4.tcp_congestion_control="+t.tcpCC); err != nil {
			return nil, fmt.Errorf("-tcp-cc %s: %w", t.tcpCC, err)
		}
	}
	return n, nil
}

// bridge creates a bridge in n with addr ("10.0.0.1/24") and brings it up.
func (t *topology) bridge(n *netns, name, addr string) error {
	if err := ip("-n", n.name, "link", "add", name, "type", "bridge"); err != nil {
		return err
	}
	if err := ip("-n", n.name, "addr", "add", addr, "dev", name); err != nil {
		return err
	}
	return ip("-n", n.name, "link", "set", name, "up")
}

// vethToBridge joins pod to the bridge in node: the pod end gets addr and a default route via gw.
func (t *topology) vethToBridge(pod *netns, addr string, node *netns, bridge, gw string) error {
	t.nextIf++
	a, b := fmt.Sprintf("v%da", t.nextIf), fmt.Sprintf("v%db", t.nextIf)
	steps := [][]string{
		{"link", "add", a, "netns", pod.name, "type", "veth", "peer", "name", b, "netns", node.name},
		{"-n", pod.name, "addr", "add", addr, "dev", a},
		{"-n", pod.name, "link", "set", a, "up"},
		{"-n", node.name, "link", "set", b, "master", bridge},
		{"-n", node.name, "link", "set", b, "up"},
		{"-n", pod.name, "route", "add", "default", "via", gw},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// close deletes every namespace, newest first, and reports what could not be deleted.
func (t *topology) close() error {
	var errs []error
	for i := len(t.nets) - 1; i >= 0; i-- {
		n := t.nets[i]
		n.f.Close()
		if err := ip("netns", "delete", n.name); err != nil {
			errs = append(errs, err)
		}
	}
	t.nets = nil
	return errors.Join(errs...)
}

// run runs a command inside n and returns its combined output.
func (n *netns) run(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.name}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s: %w: %s", n.name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// command returns a command running inside n. ip netns exec execs it, so the process ID is the
// command's own: that is what CPU and RSS are read from.
func (n *netns) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name, name}, args...)...)
	setChildAttrs(cmd)
	return cmd
}

// do runs fn on a thread switched into n: sockets fn creates belong to n for their whole life.
// fn runs on one locked goroutine; goroutines it starts are not in n.
func (n *netns) do(fn func() error) error { return netutil.InNetns(int(n.f.Fd()), fn) }

// dialTimeout bounds every dial: a lab network answers at once or never.
const dialTimeout = 5 * time.Second

// dial connects from inside n to an IP literal address.
func (n *netns) dial(ctx context.Context, addr string) (*net.TCPConn, error) {
	var c net.Conn
	err := n.do(func() error {
		d := net.Dialer{Timeout: dialTimeout}
		var err error
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, n.name, err)
	}
	return c.(*net.TCPConn), nil
}

// listen listens on a TCP address inside n.
func (n *netns) listen(addr string) (*net.TCPListener, error) {
	var l net.Listener
	err := n.do(func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s in %s: %w", addr, n.name, err)
	}
	return l.(*net.TCPListener), nil
}

// installInpodRedirect installs istio-cni's in-pod redirection in n: the rules above, and
// fwmark 0x111 -> table 100 with a local default route.
func (n *netns) installInpodRedirect() error {
	cmd := exec.Command("ip", "netns", "exec", n.name, "iptables-restore", "--wait", "10", "--noflush")
	cmd.Stdin = strings.NewReader(cnirules.IPv4)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore in %s: %w: %s", n.name, err, out)
	}
	if _, err := n.run("ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", cnirules.RuleTable); err != nil {
		return err
	}
	_, err := n.run("ip", "rule", "add", "fwmark", cnirules.RuleMark, "pref", cnirules.RulePref, "lookup", cnirules.RuleTable)
	return err
}

// checkTCPCC says, before anything is built, why the namespaces could not run the congestion
// control cc, from the host's lists in dir (/proc/sys/net/ipv4): a namespace other than the
// host's may only take, as its default, one that the host's tcp_allowed_congestion_control
// names (the kernel answers EPERM otherwise), and only one that is loaded
// (tcp_available_congestion_control).
func checkTCPCC(cc, dir string) error {
	read := func(name string) ([]string, error) {
		b, err := os.ReadFile(dir + "/" + name)
		if err != nil {
			return nil, fmt.Errorf("-tcp-cc %s: %w", cc, err)
		}
		return strings.Fields(string(b)), nil
	}
	available, err := read("tcp_available_congestion_control")
	if err != nil {
		return err
	}
	allowed, err := read("tcp_allowed_congestion_control")
	if err != nil {
		return err
	}
	switch {
	case !slices.Contains(available, cc):
		return fmt.Errorf("-tcp-cc %s: not loaded in this kernel (net.ipv4.tcp_available_congestion_control: %s); load its module, e.g. modprobe tcp_%s",
			cc, strings.Join(available, " "), cc)
	case !slices.Contains(allowed, cc):
		return fmt.Errorf("-tcp-cc %s: the host does not allow it outside its own namespace (net.ipv4.tcp_allowed_congestion_control: %s); "+
			"allow it in the host first: sysctl -w net.ipv4.tcp_allowed_congestion_control=%q",
			cc, strings.Join(allowed, " "), strings.Join(append(allowed, cc), " "))
	}
	return nil
}
