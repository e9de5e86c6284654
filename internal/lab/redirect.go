package lab

import (
	"os/exec"
	"strings"
)

// inpodRulesV4 is the iptables-restore input istio-cni installs in every
// ambient pod's netns (ztunnel's scripts/ztunnel-redirect-inpod.sh and the
// contract): mark 0x539 is ztunnel's own traffic (PACKET_MARK 1337), connmark
// 0x111 sends replies of ztunnel's spoofed-source connections back to it
// through table 100, 169.254.7.127 is the kubelet health probe SNAT address.
const inpodRulesV4 = `*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_PRERT - [0:0]
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_PRERT - [0:0]
-A OUTPUT -j ISTIO_OUTPUT
-A PREROUTING -j ISTIO_PRERT
-A ISTIO_OUTPUT -d 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
-A ISTIO_OUTPUT ! -o lo -p udp -m mark ! --mark 0x539/0xfff -m udp --dport 53 -j REDIRECT --to-ports 15053
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m tcp --dport 53 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15053
-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001
-A ISTIO_PRERT -s 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006
COMMIT
`

// inpodRulesV6 mirrors inpodRulesV4 for IPv6 as istio-cni does in pods with
// IPv6 addresses: ::1 for 127.0.0.1 and Istio's IPv6 probe SNAT address.
var inpodRulesV6 = strings.NewReplacer(
	"127.0.0.1/32", "::1/128",
	"169.254.7.127/32", "fd16:9254:7127:1337:ffff:ffff:ffff:ffff/128",
).Replace(inpodRulesV4)

// InstallInpodRedirect installs in n the redirection istio-cni sets up inside
// an ambient pod: the mangle and nat rules above (IPv4, and IPv6 when
// ip6tables-restore is present), the policy rule fwmark 0x111/0xfff (pref
// 32764) -> table 100 and `local default dev lo` in table 100. The rules go
// away with the namespace.
func (n *Netns) InstallInpodRedirect(t TB) {
	t.Helper()
	n.restore(t, "iptables-restore", inpodRulesV4)
	n.MustRun(t, "ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
	n.MustRun(t, "ip", "rule", "add", "fwmark", "0x111/0xfff", "pref", "32764", "lookup", "100")
	if _, err := exec.LookPath("ip6tables-restore"); err != nil {
		return
	}
	n.restore(t, "ip6tables-restore", inpodRulesV6)
	n.MustRun(t, "ip", "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100")
	n.MustRun(t, "ip", "-6", "rule", "add", "fwmark", "0x111/0xfff", "pref", "32764", "lookup", "100")
}

// restore feeds rules to tool (iptables-restore or ip6tables-restore) inside n
// without flushing what is already there.
func (n *Netns) restore(t TB, tool, rules string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", n.name, tool, "--wait", "10", "--noflush")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lab: %s in %s: %v: %s", tool, n.name, err, out)
	}
}
