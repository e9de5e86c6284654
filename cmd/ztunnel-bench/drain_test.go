package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A real /proc/net/sockstat of a harness pod after an S3 run.
const sockstat = "sockets: used 9\nTCP: inuse 5 orphan 0 tw 4096 alloc 40 mem 3\nUDP: inuse 0 mem 0\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n"

func TestParseSockstat(t *testing.T) {
	cases := []struct {
		name          string
		in            string
		inUse, twWant int
		ok            bool
	}{
		{"pod after S3", sockstat, 5, 4096, true},
		{"fresh namespace", "sockets: used 0\nTCP: inuse 0 orphan 0 tw 0 alloc 0 mem 0\n", 0, 0, true},
		{"fields reordered", "TCP: tw 7 inuse 2\n", 2, 7, true},
		{"no TCP line", "sockets: used 1\nUDP: inuse 0 mem 0\n", 0, 0, false},
		{"UDP line is not TCP", "UDP: inuse 3 tw 4\n", 0, 0, false},
		{"no tw", "TCP: inuse 5 orphan 0 alloc 40 mem 3\n", 0, 0, false},
		{"odd fields", "TCP: inuse 5 orphan\n", 0, 0, false},
		{"not a number", "TCP: inuse 5 tw many\n", 0, 0, false},
		{"negative", "TCP: inuse 5 tw -1\n", 0, 0, false},
		{"empty", "", 0, 0, false},
	}
	for _, c := range cases {
		inUse, tw, err := parseSockstat([]byte(c.in))
		if (err == nil) != c.ok || inUse != c.inUse || tw != c.twWant {
			t.Errorf("%s: got inuse %d tw %d, %v; want %d, %d, ok=%v", c.name, inUse, tw, err, c.inUse, c.twWant, c.ok)
		}
	}
}

func FuzzParseSockstat(f *testing.F) {
	f.Add([]byte(sockstat))
	f.Add([]byte("TCP: tw 1 inuse 1\n"))
	f.Add([]byte("TCP:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		inUse, tw, err := parseSockstat(b)
		if err == nil && (inUse < 0 || tw < 0) {
			t.Fatalf("negative counts %d, %d without an error", inUse, tw)
		}
	})
}

func TestParseCount(t *testing.T) {
	cases := []struct {
		in   string
		want int
		ok   bool
	}{
		{"36886\n", 36886, true},
		{"0\n", 0, true},
		{"", 0, false},
		{"-1\n", 0, false},
		{"12 13\n", 0, false},
	}
	for _, c := range cases {
		got, err := parseCount([]byte(c.in))
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseCount(%q) = %d, %v; want %d, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestUndrained(t *testing.T) {
	names := []string{"a", "x"}
	lim := drainLimits{timeWait: 16, extraConntrack: 16}
	cases := []struct {
		name   string
		states []nsState
		want   string
	}{
		{"clean", []nsState{{inUse: 5, timeWait: 0, conntrack: 5}, {timeWait: 0, conntrack: 0}}, ""},
		{"at the limits", []nsState{{timeWait: 16, conntrack: 16}, {inUse: 3, timeWait: 16, conntrack: 19}}, ""},
		{"conntrack unknown", []nsState{{conntrack: -1}, {conntrack: -1}}, ""},
		{"live pooled connections after S5", []nsState{{inUse: 104, conntrack: 95}, {}}, ""},
		{"many sockets in use are not leftovers", []nsState{{inUse: 9400}, {}}, ""},
		{"time-wait left", []nsState{{}, {timeWait: 4096}}, "x: 4096 TIME_WAIT sockets"},
		{"finished connections' conntrack left", []nsState{{inUse: 5, conntrack: 36886}, {}}, "a: 36886 conntrack entries for 5 TCP sockets"},
		{"one over", []nsState{{inUse: 5, conntrack: 22}, {}}, "a: 22 conntrack entries for 5 TCP sockets"},
		{"both, both namespaces", []nsState{{timeWait: 17, conntrack: 17}, {timeWait: 4096}},
			"a: 17 TIME_WAIT sockets, a: 17 conntrack entries for 0 TCP sockets, x: 4096 TIME_WAIT sockets"},
	}
	for _, c := range cases {
		if got := undrained(names, c.states, lim); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

// closeServerFirst makes n connections from client to a listener in server, each closed by
// the server first, as S3's one-shot application does: the server side ends in TIME_WAIT.
func closeServerFirst(t *testing.T, client, server *netns, addr string, n int) {
	t.Helper()
	l, err := server.listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		for range n {
			c, err := l.Accept()
			if err != nil {
				done <- err
				return
			}
			c.Close()
		}
		done <- nil
	}()
	ctx := context.Background()
	for range n {
		c, err := client.dial(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(dialTimeout))
		if _, err := io.Copy(io.Discard, c); err != nil { // until the server's FIN
			t.Fatal(err)
		}
		c.Close()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestResetConnState leaves TIME_WAIT sockets in two namespaces, and conntrack entries in one
// that tracks connections (a conntrack match, as the redirected pods have), then checks that
// resetConnState clears them while a live connection and its conntrack entry stay.
func TestResetConnState(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("SKIPPED: ss (iproute2) is not installed")
	}
	topo, err := newTopology("")
	if err != nil {
		t.Fatal(err)
	}
	defer topo.close()
	var progress bytes.Buffer
	h := &harness{topo: topo, progress: &progress}
	tracked, plain := mustNetns(t, topo, "tracked"), mustNetns(t, topo, "plain")
	if _, err := tracked.run("iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT"); err != nil {
		t.Skipf("SKIPPED: no conntrack match: %v", err)
	}
	// The last connections' server sockets may reach TIME_WAIT a moment after the client's
	// close returns: the counts before the reset are checked with slack.
	const n, slack = 300, 10
	closeServerFirst(t, tracked, tracked, "127.0.0.1:9001", n)
	closeServerFirst(t, plain, plain, "127.0.0.1:9001", n)

	// One live connection, which must survive the reset.
	l, err := tracked.listen("127.0.0.1:9002")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	live, err := tracked.dial(context.Background(), "127.0.0.1:9002")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	peer, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	for _, c := range []struct {
		ns           *netns
		minTW, minCT int
	}{{tracked, n - slack, n - slack}, {plain, n - slack, 0}} {
		s, err := c.ns.state()
		if err != nil {
			t.Fatal(err)
		}
		if s.timeWait < c.minTW || s.conntrack < c.minCT {
			t.Fatalf("%s before the reset: %+v, want >= %d TIME_WAIT and >= %d conntrack entries", c.ns.name, s, c.minTW, c.minCT)
		}
	}
	tw, ct, err := h.resetConnState(context.Background(), drainLimits{timeWait: 0, extraConntrack: 0})
	if err != nil {
		t.Fatal(err)
	}
	if tw < 2*(n-slack) || ct < n-slack {
		t.Errorf("reset found %d TIME_WAIT sockets and %d conntrack entries, want >= %d and >= %d", tw, ct, 2*(n-slack), n-slack)
	}
	_, ctErr := exec.LookPath("conntrack")
	for _, ns := range []*netns{tracked, plain} {
		s, err := ns.state()
		if err != nil {
			t.Fatal(err)
		}
		if s.timeWait != 0 {
			t.Errorf("%s after the reset: %d TIME_WAIT sockets, want 0", ns.name, s.timeWait)
		}
		// What may stay: the live connection's entry, and entries of connections still closing
		// (never more than the sockets in use: the live pair and its listener).
		if ctErr == nil && s.conntrack > s.inUse {
			t.Errorf("%s after the reset: %d conntrack entries for %d sockets in use, want at most one per socket", ns.name, s.conntrack, s.inUse)
		}
	}
	if ctErr != nil && !strings.Contains(progress.String(), "conntrack (Debian package conntrack) is not installed") {
		t.Errorf("no note that conntrack is missing; progress:\n%s", progress.String())
	}
	if ctErr == nil && strings.Contains(progress.String(), "without drained namespaces") {
		t.Errorf("the reset timed out; progress:\n%s", progress.String())
	}
	// The live connection still carries bytes both ways.
	live.SetDeadline(time.Now().Add(dialTimeout))
	peer.SetDeadline(time.Now().Add(dialTimeout))
	if _, err := live.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(peer, b[:]); err != nil {
		t.Fatalf("live connection after the reset: %v", err)
	}
}

func mustNetns(t *testing.T, topo *topology, name string) *netns {
	t.Helper()
	n, err := topo.netns(name)
	if err != nil {
		t.Fatal(fmt.Errorf("netns %s: %w", name, err))
	}
	return n
}
