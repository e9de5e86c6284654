package proxy

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/policy"
	"github.com/ztunnel-go/ztunnel/workload"
)

// socksPipelined connects through the SOCKS5 port to dst, from src, writing the SOCKS
// greeting, the request and payload (may be empty) in one write (the client does not wait for
// the replies), so payload is in the proxy's socket before the outbound connection is handled.
// It returns the connection after reading both replies, with no deadline set.
func (e *testEnv) socksPipelined(t *testing.T, src netip.Addr, dst netip.AddrPort, payload string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
	c, err := d.Dial("tcp", netip.AddrPortFrom(serverIP, e.ports.SOCKS5).String())
	if err != nil {
		t.Fatal(err)
	}
	msg := append([]byte{5, 1, 0, 5, 1, 0, 1}, dst.Addr().AsSlice()...)
	msg = binary.BigEndian.AppendUint16(msg, dst.Port())
	msg = append(msg, payload...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, 12)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, resp); err != nil || resp[1] != 0 || resp[3] != 0 {
		t.Fatalf("socks5 replies %v, %v", resp, err)
	}
	c.SetReadDeadline(time.Time{})
	return c
}

// TestOutboundEarlyData: with EarlyData, what a client wrote before its outbound connection
// was handled reaches the destination's HBONE server with the CONNECT request (the test server
// reads it before it answers), is counted in bytes_sent, and is never sent to a waypoint.
// Without EarlyData the server reads nothing before it answers.
func TestOutboundEarlyData(t *testing.T) {
	const payload = "GET / HTTP/1.1\r\n\r\n"
	for _, on := range []bool{true, false} {
		t.Run("EarlyData="+strconv.FormatBool(on), func(t *testing.T) {
			e := newEnvConfig(t, func(c *Config) { c.EarlyData = on })
			// The peer stands for a remote workload's ztunnel, then for a waypoint.
			peer := e.startWaypoint(t, netip.AddrPortFrom(waypointIP, e.ports.RemoteHBONE), waypointID)
			peer.mu.Lock()
			peer.peek = 300 * time.Millisecond
			peer.mu.Unlock()
			gw := waypointAt(peer.addr)
			e.apply(t, workload.Update{
				Workloads: []*workload.Workload{waypointWorkload(waypointIP)},
				Services:  []*workload.Service{e.echoService(gw)},
			})

			dst := netip.AddrPortFrom(waypointIP, 9)
			c := e.socksPipelined(t, clientIP, dst, payload)
			local := c.LocalAddr().String()
			if got := roundTrip(t, c, ""); got != payload {
				t.Fatalf("echo = %q, want %q", got, payload)
			}
			want := []int{0}
			if on {
				want = []int{len(payload)}
			}
			if got := peer.earlyBytes(); !slices.Equal(got, want) {
				t.Errorf("bytes the workload's server read before answering = %v, want %v", got, want)
			}
			waitLog(t, e.access, "connection complete", "direction=outbound", "src.addr="+local,
				"bytes_sent="+strconv.Itoa(len(payload)), "bytes_recv="+strconv.Itoa(len(payload)))

			// A service with a waypoint: the waypoint answers before it gets any byte.
			c = e.socksPipelined(t, clientIP, netip.AddrPortFrom(echoVIP, 80), payload)
			if got := roundTrip(t, c, ""); got != payload {
				t.Fatalf("echo via the waypoint = %q, want %q", got, payload)
			}
			if got := peer.earlyBytes(); len(got) != 2 || got[1] != 0 {
				t.Errorf("bytes the waypoint read before answering = %v, want 0 for the second request", got)
			}
		})
	}
}

// TestInboundEarlyData: our own inbound side holds data that arrives with a CONNECT until it
// has authorized the connection and connected to the app: allowed, the app gets the bytes once
// and in order; denied, the app is never connected and gets nothing.
func TestInboundEarlyData(t *testing.T) {
	const payload = "early bytes for the app"
	denyClient := &policy.Authorization{Name: "deny-client", Namespace: "default", Scope: policy.ScopeNamespace,
		Action: policy.ActionDeny, Rules: [][][]policy.Match{{{{Principals: []policy.StringMatch{policy.Exact("cluster.local/ns/default/sa/client")}}}}}}
	t.Run("allowed", func(t *testing.T) {
		e := newEnv(t)
		c := e.socksPipelined(t, clientIP, netip.AddrPortFrom(serverIP, e.appPort), payload)
		if got := roundTrip(t, c, ""); got != payload {
			t.Fatalf("echo = %q, want %q", got, payload)
		}
		waitLog(t, e.access, "connection complete", "direction=inbound", "bytes_recv="+strconv.Itoa(len(payload)))
		if n := e.appBytes.Load(); n != int64(len(payload)) {
			t.Errorf("app received %d bytes, want %d", n, len(payload))
		}
	})
	t.Run("denied", func(t *testing.T) {
		e := newEnv(t, denyClient)
		c := e.socksPipelined(t, clientIP, netip.AddrPortFrom(serverIP, e.appPort), payload)
		if got := roundTrip(t, c, ""); got != "" {
			t.Fatalf("a denied connection echoed %q", got)
		}
		waitLog(t, e.access, "connection complete", "direction=inbound", "connection closed due to policy rejection: explicitly denied by")
		if n, b := e.appConns.Load(), e.appBytes.Load(); n != 0 || b != 0 {
			t.Errorf("the app got %d connections and %d bytes of a denied client, want none", n, b)
		}
	})
}

// TestOutboundSendsBeforeAnswer: with EarlyData, bytes a client writes after its outbound
// connection was handled (so not read with the request) still reach the destination's HBONE
// server before it answers: the relay starts once the request is out. The server reads them
// before it answers, and they count in bytes_sent.
func TestOutboundSendsBeforeAnswer(t *testing.T) {
	const payload = "written after the request left"
	e := newEnvConfig(t, func(c *Config) { c.EarlyData = true })
	peer := e.startWaypoint(t, netip.AddrPortFrom(waypointIP, e.ports.RemoteHBONE), waypointID)
	peer.mu.Lock()
	peer.peek = 3 * time.Second
	peer.mu.Unlock()
	e.apply(t, workload.Update{Workloads: []*workload.Workload{waypointWorkload(waypointIP)}})

	c := e.socksPipelined(t, clientIP, netip.AddrPortFrom(waypointIP, 9), "")
	local := c.LocalAddr().String()
	// Wait until the request is at the server (its answer waits for the peek), so the
	// payload cannot go with it.
	deadline := time.Now().Add(5 * time.Second)
	for len(peer.requests()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the request did not reach the server")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if got := roundTrip(t, c, payload); got != payload {
		t.Fatalf("echo = %q, want %q", got, payload)
	}
	if got := peer.earlyBytes(); !slices.Equal(got, []int{len(payload)}) {
		t.Errorf("bytes the server read before answering = %v, want [%d]", got, len(payload))
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the round trip took %v: the server answered at the end of its peek, without the bytes", took)
	}
	waitLog(t, e.access, "connection complete", "direction=outbound", "src.addr="+local,
		"bytes_sent="+strconv.Itoa(len(payload)), "bytes_recv="+strconv.Itoa(len(payload)))
}

// TestOutboundRefusedBeforeAnswer: a connection relayed before its answer and then refused
// by the destination's ztunnel (policy: 401) is logged and counted as a failed connect, as
// when the answer is awaited: response_flags CONNECT, the status in the error, and no bytes,
// although the client's bytes had left with and after the request. Either way the client is
// reset, as the destination would have refused it, although its bytes were read.
func TestOutboundRefusedBeforeAnswer(t *testing.T) {
	const payload = "refused bytes"
	denyClient := &policy.Authorization{Name: "deny-client", Namespace: "default", Scope: policy.ScopeNamespace,
		Action: policy.ActionDeny, Rules: [][][]policy.Match{{{{Principals: []policy.StringMatch{policy.Exact("cluster.local/ns/default/sa/client")}}}}}}
	for _, on := range []bool{true, false} {
		t.Run("EarlyData="+strconv.FormatBool(on), func(t *testing.T) {
			e := newEnvConfig(t, func(c *Config) { c.EarlyData = on }, denyClient)
			c := e.socksPipelined(t, clientIP, netip.AddrPortFrom(serverIP, e.appPort), payload)
			local := c.LocalAddr().String()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			c.Close()
			if len(got) != 0 || !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("a refused connection read %q, %v; want a reset", got, err)
			}
			waitLog(t, e.access, "connection complete", "direction=outbound", "src.addr="+local,
				"bytes_sent=0", "bytes_recv=0", `error="http status: 401 Unauthorized"`)
			waitFailed(t, e, "source", "CONNECT")
		})
	}
}
