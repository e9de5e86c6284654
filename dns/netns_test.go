package dns

import (
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ztunnel-go/ztunnel/internal/lab"
	"github.com/ztunnel-go/ztunnel/netutil"
)

// TestInPodDig runs dig inside a pod network namespace that has istio-cni's
// redirection: the pod asks "its" resolver 10.77.0.53:53, the rules send
// the query to our server on 127.0.0.1:15053 inside the pod, and what the
// mesh does not know is forwarded to that resolver from a socket carrying
// mark 1337 (without it the forward would be redirected back to us).
func TestInPodDig(t *testing.T) {
	l := lab.New(t) // skips unless root
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig (bind9-dnsutils) is not installed")
	}
	pod := l.Netns("pod")
	resolver := l.Netns("resolver")
	l.Veth(pod, netip.MustParsePrefix("10.77.0.2/24"), resolver, netip.MustParsePrefix("10.77.0.53/24"))
	pod.InstallInpodRedirect(t)

	// The cluster resolver, in its own namespace.
	up := &upstream{records: map[string][]string{"www.example.org.": {"93.184.216.34"}}}
	var pc net.PacketConn
	var ln net.Listener
	if err := resolver.Do(func() error {
		var err error
		if pc, err = net.ListenPacket("udp", "10.77.0.53:53"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", "10.77.0.53:53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	serveUpstream(t, up, pc, ln)

	cfg := baseConfig(t, "10.77.0.53:53")
	cfg.ClientNamespace = func(netip.Addr) string { return "ns1" } // a per-pod server knows its pod
	cfg.Socket = netutil.SocketOptions{Mark: 1337, ReusePort: true}
	cfg.Netns = pod.Do
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Listen(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), Port)); err != nil {
		t.Fatal(err)
	}

	dig := func(args ...string) string {
		t.Helper()
		out := pod.MustRun(t, append([]string{"dig", "+time=2", "+tries=1", "@10.77.0.53"}, args...)...)
		return out
	}
	short := func(args ...string) []string {
		t.Helper()
		lines := strings.Fields(dig(append([]string{"+short"}, args...)...))
		slices.Sort(lines)
		return lines
	}

	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"service fqdn", []string{"productpage.ns1.svc.cluster.local", "A"}, []string{"9.9.9.9"}},
		{"short name", []string{"productpage", "A"}, []string{"9.9.9.9"}},
		{"name.namespace over tcp", []string{"+tcp", "example.ns2", "A"}, []string{"10.10.10.10"}},
		{"headless", []string{"headless.ns1.svc.cluster.local", "A"}, []string{"30.30.30.30", "31.31.31.31"}},
		{"headless AAAA", []string{"headless.ns1.svc.cluster.local", "AAAA"}, []string{"2001:db8::30", "2001:db8::31"}},
		{"AAAA of a v4 service", []string{"productpage.ns1.svc.cluster.local", "AAAA"}, nil},
		{"wildcard", []string{"api.svc.mesh.company.net", "A"}, []string{"10.1.2.3"}},
		{"external name, forwarded", []string{"www.example.org", "A"}, []string{"93.184.216.34"}},
		{"external name over tcp, forwarded", []string{"+tcp", "www.example.org", "A"}, []string{"93.184.216.34"}},
	}
	for _, c := range cases {
		if got := short(c.args...); !slices.Equal(got, c.want) {
			t.Errorf("%s: dig %s = %q, want %q", c.name, strings.Join(c.args, " "), got, c.want)
		}
	}
	if up.queries.Load() != 2 {
		t.Errorf("the resolver saw %d queries, want only the 2 forwarded ones", up.queries.Load())
	}

	// Status and flags: mesh answers are authoritative; AAAA of a v4-only
	// name is NOERROR; unknown names come back NXDOMAIN from upstream.
	for _, c := range []struct{ args, want []string }{
		{[]string{"productpage.ns1.svc.cluster.local", "AAAA"}, []string{"status: NOERROR", "flags: qr aa rd ra;"}},
		{[]string{"nothing.example.org", "A"}, []string{"status: NXDOMAIN", "flags: qr rd ra;"}},
	} {
		out := dig(c.args...)
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("dig %s: no %q in\n%s", strings.Join(c.args, " "), w, out)
			}
		}
	}

	// TCP fallback: 100 endpoints do not fit in 512 bytes; dig sees TC and
	// retries over TCP by itself.
	out := dig("+noedns", "big.ns1.svc.cluster.local", "A")
	if !strings.Contains(out, "Truncated, retrying in TCP mode") || !strings.Contains(out, "ANSWER: 100") {
		t.Errorf("dig +noedns big: want a truncated UDP answer then 100 records over TCP, got\n%s", out)
	}

	// A malformed query through the redirect gets FORMERR, and the server
	// keeps serving.
	c, err := pod.Dial("udp", "10.77.0.53:53")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte{0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x07, 'b', 'r', 'o'}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer to a malformed query: %v", err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil || m.Rcode != dns.RcodeFormatError || m.Id != 0xabcd {
		t.Errorf("malformed query: answer %v (unpack error %v), want FORMERR with id 0xabcd", m, err)
	}
	if got := short("productpage", "A"); !slices.Equal(got, []string{"9.9.9.9"}) {
		t.Errorf("after a malformed query: %q", got)
	}
}
