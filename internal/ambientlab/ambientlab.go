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

	"github.com/ztunnel-go/ztunnel/inpod/zdstest"
	"github.com/ztunnel-go/ztunnel/internal/lab"
)

// Node is one simulated node: its namespace (where ztunnel runs), its pod bridge and the fake
// istio-cni listening on Sock.
type Node struct {
	Name   string
	NS     *lab.Netns
	Bridge netip.Prefix // the bridge's address: the pods' gateway and their subnet
	Sock   string       // INPOD_UDS of this node's ztunnel
	ZDS    *zdstest.Server

	lab *lab.Lab
	t   lab.TB
}

// Pod is one pod namespace on a node.
type Pod struct {
	Name, Namespace, ServiceAccount, UID string
	NS                                   *lab.Netns
	IP                                   netip.Addr
	Node                                 *Node
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
	n.lab.VethToBridge(p.NS, netip.PrefixFrom(ip, n.Bridge.Bits()), n.NS, "br0")
	p.NS.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), n.Bridge.Addr())
	if meshed {
		p.NS.InstallInpodRedirect(n.t)
	}
	return p
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
// each node's pod subnet through it.
func LinkNodes(l *lab.Lab, a, b *Node, aAddr, bAddr netip.Prefix) {
	l.Veth(a.NS, aAddr, b.NS, bAddr)
	a.NS.AddRoute(b.Bridge.Masked(), bAddr.Addr())
	b.NS.AddRoute(a.Bridge.Masked(), aAddr.Addr())
}

// Workload renders the pod as a local-config (LOCAL_XDS_PATH) workload entry speaking HBONE.
func (p *Pod) Workload() string {
	return fmt.Sprintf(`- uid: %s
  name: %s
  namespace: %s
  serviceAccount: %s
  workloadIps: [%q]
  protocol: HBONE
  node: %s
`, p.UID, p.Name, p.Namespace, p.ServiceAccount, p.IP.String(), p.Node.Name)
}
