// Package cnirules holds the redirection istio-cni installs inside every ambient pod's network
// namespace, as iptables-restore input: the one copy the test lab, the demo and the perf harness
// all install, so they exercise exactly what ztunnel meets in a cluster (ztunnel's
// scripts/ztunnel-redirect-inpod.sh and istio-cni's golden files are the reference).
package cnirules

import "strings"

// IPv4 is the mangle and nat rules for IPv4. Mark 0x539 (PACKET_MARK 1337) is ztunnel's own
// traffic and bypasses redirection; connmark 0x111 sends the replies of ztunnel's spoofed-source
// connections back to it through routing table 100 (see PolicyRouting); 169.254.7.127 is the
// kubelet health-probe SNAT address. Outbound TCP goes to 15001, inbound TCP (but 15008) to 15006,
// DNS to 15053.
const IPv4 = `*mangle
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

// IPv6 mirrors IPv4 as istio-cni does in pods with IPv6 addresses: ::1 for 127.0.0.1 and
// Istio's IPv6 health-probe SNAT address.
var IPv6 = strings.NewReplacer(
	"127.0.0.1/32", "::1/128",
	"169.254.7.127/32", "fd16:9254:7127:1337:ffff:ffff:ffff:ffff/128",
).Replace(IPv4)

// Policy routing that goes with the rules: packets marked 0x111 are delivered locally.
const (
	RuleMark  = "0x111/0xfff"
	RuleTable = "100"
	RulePref  = "32764"
)
