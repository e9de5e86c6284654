package lab

import (
	"github.com/ztunnel-go/ztunnel/internal/cnirules"
	"os/exec"
	"strings"
)

// InstallInpodRedirect installs in n the redirection istio-cni sets up inside
// an ambient pod: the mangle and nat rules above (IPv4, and IPv6 when
// ip6tables-restore is present), the policy rule fwmark 0x111/0xfff (pref
// 32764) -> table 100 and `local default dev lo` in table 100. The rules go
// away with the namespace.
func (n *Netns) InstallInpodRedirect(t TB) {
	t.Helper()
	n.restore(t, "iptables-restore", cnirules.IPv4)
	n.MustRun(t, "ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", cnirules.RuleTable)
	n.MustRun(t, "ip", "rule", "add", "fwmark", cnirules.RuleMark, "pref", cnirules.RulePref, "lookup", cnirules.RuleTable)
	if _, err := exec.LookPath("ip6tables-restore"); err != nil {
		return
	}
	n.restore(t, "ip6tables-restore", cnirules.IPv6)
	n.MustRun(t, "ip", "-6", "route", "add", "local", "::/0", "dev", "lo", "table", cnirules.RuleTable)
	n.MustRun(t, "ip", "-6", "rule", "add", "fwmark", cnirules.RuleMark, "pref", cnirules.RulePref, "lookup", cnirules.RuleTable)
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
