// Package ambientlab builds a one-machine Istio ambient topology on top of package lab: node
// namespaces with a bridge, pod namespaces attached to it with istio-cni's in-pod redirection,
// a fake istio-cni (zdstest) per node that hands the pods' namespaces to ztunnel, and routes
// between nodes. The end-to-end tests and `make demo` share it. Everything needs root.
package ambientlab

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/ztunnel-go/ztunnel/inpod/zdstest"
	"github.com/ztunnel-go/ztunnel/internal/lab"
)

// Node is one simulated node: its namespace (where ztunnel runs), its pod bridge and the fake
// istio-cni listening on Sock.
type Node struct {
	Name   string
	NS     *lab.Netns
	Bridge netip.Prefix // the bridge's address: the pods' gateway and their subnet
	// Bridge6 is the bridge's IPv6 address once AddIPv6 gave it one (dual stack).
	Bridge6 netip.Prefix
	Sock    string // INPOD_UDS of this node's ztunnel
	ZDS     *zdstest.Server

	lab *lab.Lab
	t   lab.TB
}

// Pod is one pod namespace on a node.
type Pod struct {
	Name, Namespace, ServiceAccount, UID string
	NS                                   *lab.Netns
	IP                                   netip.Addr
	IP6                                  netip.Addr // its IPv6 address once AddIPv6 gave it one
	Node                                 *Node

	dev string // its end of the veth pair to the bridge
}

// NewNode creates node name with bridge br0 at bridge (e.g. 10.244.1.1/24) and starts its
// fake istio-cni on dir/<name>.sock. The server is closed by t's cleanup.
func NewNode(l *lab.Lab, t lab.TB, name string, bridge netip.Prefix, dir string, log *slog.Logger) *Node {
	t.Helper()
	n := &Node{Name: name, NS: l.Netns(name), Bridge: bridge, Sock: filepath.Join(dir, name+".sock"), lab: l, t: t}
	l.Bridge(n.NS, "br0", bridge)
	if _, err := n.NS.Run("sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		t.Fatalf("ambientlab: ip_forward on %s: %v", name, err)
	}
	zds, err := zdstest.Listen(n.Sock, log)
	if err != nil {
		t.Fatalf("ambientlab: %v", err)
	}
	t.Cleanup(func() { zds.Close() })
	n.ZDS = zds
	return n
}

// RestartZDS closes the node's fake istio-cni (its connections drop) and starts a new one on
// the same socket that knows the same pods.
func (n *Node) RestartZDS(pods []*Pod, log *slog.Logger) {
	n.t.Helper()
	n.ZDS.Close()
	zds, err := zdstest.Listen(n.Sock, log)
	if err != nil {
		n.t.Fatalf("ambientlab: %v", err)
	}
	n.t.Cleanup(func() { zds.Close() })
	n.ZDS = zds
	for _, p := range pods {
		if err := p.Enroll(); err != nil {
			n.t.Fatalf("ambientlab: %v", err)
		}
	}
}

// AddPod creates pod <name> with ip on the node's bridge, default route via the bridge, and,
// when meshed, istio-cni's in-pod redirection. It does not enroll the pod (see Enroll).
func (n *Node) AddPod(name, namespace, sa string, ip netip.Addr, meshed bool) *Pod {
	n.t.Helper()
	p := &Pod{
		Name: name, Namespace: namespace, ServiceAccount: sa,
		UID: fmt.Sprintf("cluster1//v1/Pod/%s/%s", namespace, name),
		NS:  n.lab.Netns(name), IP: ip, Node: n,
	}
	p.dev, _ = n.lab.VethToBridge(p.NS, netip.PrefixFrom(ip, n.Bridge.Bits()), n.NS, "br0")
	p.NS.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), n.Bridge.Addr())
	if meshed {
		p.NS.InstallInpodRedirect(n.t)
	}
	return p
}

// AddIPv6 makes the node dual stack: bridge (e.g. fd00:10:244:1::1/64) on br0 and IPv6
// forwarding on. Pods then take their IPv6 address with Pod.AddIPv6.
func (n *Node) AddIPv6(bridge netip.Prefix) {
	n.t.Helper()
	n.NS.AddAddr("br0", bridge)
	if _, err := n.NS.Run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"); err != nil {
		n.t.Fatalf("ambientlab: IPv6 forwarding on %s: %v", n.Name, err)
	}
	n.Bridge6 = bridge
}

// AddIPv6 gives the pod its IPv6 address ip in the node's IPv6 subnet, with the default route
// via the bridge; the node must have one (Node.AddIPv6). The in-pod redirection installed by
// AddPod covers IPv6 already.
func (p *Pod) AddIPv6(ip netip.Addr) {
	p.Node.t.Helper()
	if !p.Node.Bridge6.IsValid() {
		p.Node.t.Fatalf("ambientlab: pod %s: node %s has no IPv6 bridge address", p.Name, p.Node.Name)
	}
	p.NS.AddAddr(p.dev, netip.PrefixFrom(ip, p.Node.Bridge6.Bits()))
	p.NS.AddRoute(netip.MustParsePrefix("::/0"), p.Node.Bridge6.Addr())
	p.IP6 = ip
	waitReachable(p.Node.t, p.NS, p.Node.Bridge6.Addr())
}

// Enroll tells the node's istio-cni about the pod (a live Add to connected ztunnels, and part
// of every later snapshot). It returns NACKs and transport errors.
func (p *Pod) Enroll() error {
	return p.Node.ZDS.Add(zdstest.Pod{
		UID: p.UID, Name: p.Name, Namespace: p.Namespace, ServiceAccount: p.ServiceAccount,
		NetnsPath: p.NS.Path(),
	})
}

// Unenroll removes the pod from ambient (a live Del).
func (p *Pod) Unenroll() error { return p.Node.ZDS.Del(p.UID) }

// LinkNodes joins two nodes with a veth pair (aAddr and bAddr in one small subnet) and routes
// each node's pod subnet of that family through it. Dual-stack nodes take one link per
// family.
func LinkNodes(l *lab.Lab, a, b *Node, aAddr, bAddr netip.Prefix) {
	l.Veth(a.NS, aAddr, b.NS, bAddr)
	aPods, bPods := a.Bridge, b.Bridge
	if aAddr.Addr().Is6() {
		aPods, bPods = a.Bridge6, b.Bridge6
	}
	a.NS.AddRoute(bPods.Masked(), bAddr.Addr())
	b.NS.AddRoute(aPods.Masked(), aAddr.Addr())
	waitReachable(a.t, a.NS, bAddr.Addr())
}

// waitReachable waits until dst answers a ping from ns. A new link drops IPv6 neighbour
// discovery until the kernel has processed its carrier (up to a second), where IPv4's ARP goes
// through at once; waiting here keeps that second out of a test's first connection.
func waitReachable(t lab.TB, ns *lab.Netns, dst netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := ns.Ping(dst, 100*time.Millisecond)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ambientlab: %s does not reach %s: %v", ns.Name(), dst, err)
		}
	}
}

// Workload renders the pod as a local-config (LOCAL_XDS_PATH) workload entry speaking HBONE.
func (p *Pod) Workload() string {
	ips := fmt.Sprintf("%q", p.IP.String())
	if p.IP6.IsValid() {
		ips += fmt.Sprintf(", %q", p.IP6.String())
	}
	return fmt.Sprintf(`- uid: %s
  name: %s
  namespace: %s
  serviceAccount: %s
  workloadIps: [%s]
  protocol: HBONE
  node: %s
`, p.UID, p.Name, p.Namespace, p.ServiceAccount, ips, p.Node.Name)
}
