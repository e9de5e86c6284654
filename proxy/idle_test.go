package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/workload"
)

// TestIdleConnectionsHoldNoGoroutines: connections through the whole path (SOCKS5 -> outbound ->
// pooled HBONE -> inbound -> app) hold no goroutine of the proxy once idle: their four relay
// directions park (the TCP legs in netutil's epoll loop, the HBONE streams on their
// notifications) and the handlers have returned. Parked connections still carry bytes both ways
// and end normally, with their access log lines.
func TestIdleConnectionsHoldNoGoroutines(t *testing.T) {
	e := newEnv(t)
	const n = 30
	// Certificates and the pooled HBONE connection (with their goroutines) exist from here on.
	e.echoOnce(t)
	time.Sleep(50 * time.Millisecond) // the warm-up connection's app goroutine ends
	base := leakcheck.Count()
	conns := e.openEchoed(t, n)
	// The test's echo app keeps one goroutine per connection; the proxy may keep none.
	want := base + n
	waitIdle := func(stage string) {
		t.Helper()
		testwait.Until(t, fmt.Sprintf("%d idle connections to run no goroutine beyond the app's (%s)", n, stage),
			5*time.Second, func() bool { return leakcheck.Count() <= want })
	}
	waitIdle("after the first echo")
	for i, c := range conns {
		echo(t, c, byte(i+100))
	}
	waitIdle("after the second echo")
	for _, c := range conns {
		c.(*net.TCPConn).CloseWrite()
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			t.Fatalf("after the client's FIN: read %q, %v; want EOF", rest, err)
		}
		c.Close()
	}
	testwait.Until(t, fmt.Sprintf("%d inbound access log lines", n+1), 5*time.Second, func() bool {
		return strings.Count(e.access.String(), "direction=inbound") >= n+1
	})
}

// TestSlowReaderIntact: a client that stops reading while its echo streams back fills its
// socket; the relay directions that write to it (on the HBONE reader's goroutine while they
// can, then on their own) must keep every byte in order.
func TestSlowReaderIntact(t *testing.T) {
	e := newEnv(t)
	c := e.socksDial(t, netip.AddrPortFrom(serverIP, e.appPort))
	defer c.Close()
	payload := make([]byte, 8<<20)
	for i := range payload {
		payload[i] = byte(i*7 + i>>11)
	}
	errc := make(chan error, 1)
	go func() {
		for off := 0; off < len(payload); off += 1000 { // many small writes: many small frames
			if _, err := c.Write(payload[off:min(off+1000, len(payload))]); err != nil {
				errc <- err
				return
			}
		}
		errc <- c.(*net.TCPConn).CloseWrite()
	}()
	time.Sleep(300 * time.Millisecond) // nobody reads: every buffer on the way back fills
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if werr := <-errc; werr != nil || err != nil {
		t.Fatalf("write err %v, read err %v", werr, err)
	}
	if len(got) != len(payload) {
		t.Fatalf("echoed %d bytes, want %d", len(got), len(payload))
	}
	for i := range got {
		if got[i] != payload[i] {
			t.Fatalf("echo differs first at byte %d", i)
		}
	}
}

// TestIdleConnectionObjects counts the heap objects an idle connection keeps through the whole
// path, both proxy sides (here one proxy): per side one connState (record, job, tracker entry
// and relay completion together), one netutil.Link and one hbone.Stream. Small long-lived
// objects cost more than their size, since each keeps a heap page among the garbage of
// connection set-up resident; before they were merged a connection kept 12.7 (a job, a tracker
// entry and a func bound to it, besides its record, per side, and a stream's one-chunk list).
// The count is exact: the heap profile samples every allocation while the test runs. Objects
// allocated by the test itself (its clients and echo app) are not counted.
func TestIdleConnectionObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED: profiles every allocation")
	}
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	runtime.MemProfileRate = 1
	// A connection addressed to a service's VIP (the proxy picks its endpoint and maps the
	// port) keeps no more than one addressed to the pod.
	for _, viaService := range []bool{false, true} {
		t.Run(fmt.Sprintf("viaService=%v", viaService), func(t *testing.T) {
			e := newEnv(t)
			dst := netip.AddrPortFrom(serverIP, e.appPort)
			if viaService {
				// The server is an endpoint of the echo service, and says so as istiod's
				// workloads do.
				server := *e.store.Snapshot().WorkloadByUID("server")
				server.Services = []workload.NamespacedHostname{{Namespace: "default", Hostname: echoHost}}
				e.apply(t, workload.Update{Workloads: []*workload.Workload{&server}, Services: []*workload.Service{e.echoService(nil)}})
				dst = netip.AddrPortFrom(echoVIP, 80)
			}
			e.echoTo(t, dst, 1)

			const n = 60
			before := proxyHeapObjects()
			base := leakcheck.Count()
			e.echoTo(t, dst, n)
			testwait.Until(t, "the connections to go idle", 5*time.Second, func() bool { return leakcheck.Count() <= base+n })
			after := proxyHeapObjects()
			var total int64
			for site, k := range after {
				if d := k - before[site]; d >= n/2 { // one per connection or more; the rest is shared growth
					total += d
					t.Logf("%5.2f per connection: %s", float64(d)/n, site)
				}
			}
			per := float64(total) / n
			t.Logf("%.2f objects per idle connection through both sides", per)
			if per > 6 {
				t.Errorf("an idle connection keeps %.2f heap objects through both sides, want at most 6 "+
					"(per side: its connState, its Link and its HBONE stream)", per)
			}
		})
	}
}

// proxyHeapObjects returns the live heap objects by allocation site (the innermost frame of
// this module's non-test code), after a collection, leaving out what test code allocated.
func proxyHeapObjects() map[string]int64 {
	runtime.GC()
	runtime.GC() // the profile describes the heap as of the last completed collection
	var recs []runtime.MemProfileRecord
	for {
		n, ok := runtime.MemProfile(nil, false)
		recs = make([]runtime.MemProfileRecord, n+50)
		if n, ok = runtime.MemProfile(recs, false); ok {
			recs = recs[:n]
			break
		}
	}
	out := make(map[string]int64)
outer:
	for _, r := range recs {
		site := ""
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			if strings.HasSuffix(f.File, "_test.go") {
				continue outer
			}
			if site == "" && strings.Contains(f.Function, "ztunnel-go/ztunnel/") {
				site = fmt.Sprintf("%s:%d", f.Function, f.Line)
			}
			if !more {
				break
			}
		}
		if site != "" {
			out[site] += r.InUseObjects()
		}
	}
	return out
}

// TestParkedHBONEConnectionKeepsItsJob: an inbound HBONE connection whose read loop has parked
// (idle, no goroutine) is still an open socket: it stays counted in istio_tcp_sockets_open and
// keeps its place in the proxy's drain until it ends.
func TestParkedHBONEConnectionKeepsItsJob(t *testing.T) {
	e := newEnv(t)
	e.echoOnce(t)
	// The pooled HBONE connection stays; its read loops park after 100 ms of silence.
	time.Sleep(400 * time.Millisecond)
	body := e.metricsText(t)
	if got := promtext.Sum(body, "istio_tcp_sockets_open", `reporter="destination"`); got != 1 {
		t.Errorf("open destination sockets with the idle HBONE connection = %v, want 1", got)
	}
	if got := promtext.Sum(body, "istio_tcp_sockets_open", `reporter="source"`); got != 0 {
		t.Errorf("open source sockets after the client closed = %v, want 0", got)
	}
}

// echo writes b on c and reads it back from the test's echo app.
func echo(t *testing.T, c net.Conn, b byte) {
	t.Helper()
	buf := []byte{b}
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || buf[0] != b {
		t.Fatalf("echo: read %v, %v; want %d", buf, err, b)
	}
}

// echoOnce runs one connection through the whole path (SOCKS5, outbound, pooled HBONE,
// inbound, app) and closes it once its inbound side has logged its end: certificates and the
// pooled HBONE connection exist from then on.
func (e *testEnv) echoOnce(t *testing.T) {
	t.Helper()
	c := e.socksDial(t, netip.AddrPortFrom(serverIP, e.appPort))
	echo(t, c, 1)
	c.Close()
	waitLog(t, e.access, "connection complete", "direction=inbound")
}

// openEchoed opens n connections through both legs to the echo app, makes one round trip on
// each, and closes them when the test ends.
func (e *testEnv) openEchoed(t *testing.T, n int) []net.Conn {
	t.Helper()
	return e.echoTo(t, netip.AddrPortFrom(serverIP, e.appPort), n)
}

// echoTo is openEchoed to dst (the app's address, or a service's that it backs).
func (e *testEnv) echoTo(t *testing.T, dst netip.AddrPort, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = e.socksDial(t, dst)
		t.Cleanup(func() { conns[i].Close() })
		echo(t, conns[i], byte(i))
	}
	return conns
}

// TestIdleListenersHoldNoGoroutines: once its listeners have been quiet for acceptParkAfter, a
// proxy holds no goroutine in their accept loops (in shared mode every pod has three or four);
// the next connection wakes the loop of its listener, here SOCKS5 and then inbound HBONE, and
// Drain ends loops that are parked.
func TestIdleListenersHoldNoGoroutines(t *testing.T) {
	old := acceptParkAfter
	acceptParkAfter = 20 * time.Millisecond
	defer func() { acceptParkAfter = old }()
	e := newEnv(t)
	accepting := func() int { return leakcheck.Matching("proxy.(*acceptor).serve") }
	for _, stage := range []string{"after Listen", "after a connection through both listeners"} {
		testwait.Until(t, "the quiet accept loops to park ("+stage+")", 5*time.Second, func() bool { return accepting() == 0 })
		e.echoOnce(t)
	}
	drain := func() error { return e.proxy.Drain(context.Background()) }
	if err := testwait.Returns(t, "Drain with parked accept loops", 10*time.Second, drain); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if n := accepting(); n != 0 {
		t.Fatalf("%d accept loops run after Drain", n)
	}
	if c, err := net.Dial("tcp", netip.AddrPortFrom(serverIP, e.ports.InboundHBONE).String()); err == nil {
		c.Close()
		t.Fatal("the inbound HBONE listener still accepts after Drain")
	}
}

// TestByteFlushOnlyWhileTracked: the byte flusher's timer runs only while the proxy tracks a
// connection. A tick that finds none does not arm the next (an idle pod's proxy has no timer
// to wake for); the next connection arms it again, so its bytes reach the metrics while it is
// open, without anyone calling flushBytes.
func TestByteFlushOnlyWhileTracked(t *testing.T) {
	old := flushInterval
	flushInterval = 20 * time.Millisecond
	defer func() { flushInterval = old }()
	e := newEnv(t)
	// Read under flushMu: a running tick sets flushIdle before it counts the connections and
	// clears it again when it finds some, all while holding flushMu.
	idle := func() bool {
		e.proxy.flushMu.Lock()
		defer e.proxy.flushMu.Unlock()
		return e.proxy.flushIdle.Load()
	}
	testwait.Until(t, "a tick to find no connection", 5*time.Second, idle)

	c := e.socksDial(t, netip.AddrPortFrom(serverIP, e.appPort))
	defer c.Close()
	payload := bytes.Repeat([]byte("x"), 3000)
	c.Write(payload)
	if _, err := io.ReadFull(c, make([]byte, len(payload))); err != nil {
		t.Fatal(err)
	}
	// The echo came back through the relay, so the connection is tracked (the SOCKS5 reply
	// alone does not say so: it precedes the outbound path).
	if idle() {
		t.Fatal("the flusher is still idle with a connection tracked")
	}
	testwait.Until(t, "the open connection's bytes to reach the metrics", 5*time.Second, func() bool {
		return promtext.Sum(e.metricsText(t), "istio_tcp_received_bytes_total") == 6000
	})
	if idle() {
		t.Fatal("a tick went idle while a connection was open")
	}
	c.Close()
	testwait.Until(t, "the flusher to go idle after the connection", 5*time.Second, idle)
}
