package netutil_test

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/netutil"
)

// linkRig is client <-> a [Link] b <-> server over loopback TCP, with the
// Link's report in done.
type linkRig struct {
	client, server *net.TCPConn
	link           *netutil.Link
	done           chan relayResult
	ab, ba         atomic.Int64
}

func newLinkRig(t testing.TB, mode relayMode) *linkRig {
	t.Helper()
	// The Link's ends are the Link's alone (no cleanup refers to them), so
	// that what the Link releases is released.
	client, a := dialAccept(t)
	b, server := dialAccept(t)
	t.Cleanup(func() { client.Close(); server.Close() })
	ra, rb := mode.wrap(a, b)
	r := &linkRig{client: client, server: server, done: make(chan relayResult, 1)}
	r.link = netutil.NewLink(ra, rb, &r.ab, &r.ba, netutil.EndFunc(func(ab, ba int64, err error) {
		r.done <- relayResult{ab, ba, err}
	}))
	t.Cleanup(func() { r.link.Close() }) // closes a and b, run or not
	return r
}

func (r *linkRig) result(t testing.TB) relayResult {
	t.Helper()
	select {
	case res := <-r.done:
		return res
	case <-time.After(10 * time.Second):
		t.Fatal("the Link did not report its end")
		return relayResult{}
	}
}

// echoOnce proves the relay both ways with one byte each.
func (r *linkRig) echoOnce(t testing.TB, b byte) {
	t.Helper()
	buf := make([]byte, 1)
	for _, dir := range [][2]*net.TCPConn{{r.client, r.server}, {r.server, r.client}} {
		if _, err := dir[0].Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
		dir[1].SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(dir[1], buf); err != nil || buf[0] != b {
			t.Fatalf("read %v, %v; want %d", buf, err, b)
		}
		dir[1].SetReadDeadline(time.Time{})
	}
}

// halfCloseBoth half-closes the client's side, then the server's after it
// sent "late", and checks that each end reads the other's end of stream and
// that the relay reports a clean end with echoed bytes a->b and echoed+4
// b->a (echoed: the bytes echoOnce moved each way before).
func (r *linkRig) halfCloseBoth(t testing.TB, echoed int64) {
	t.Helper()
	r.client.CloseWrite()
	r.server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(r.server); err != nil || len(b) != 0 {
		t.Fatalf("server after the client's FIN: read %q, %v; want EOF", b, err)
	}
	if _, err := r.server.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	r.server.CloseWrite()
	r.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(r.client); err != nil || string(b) != "late" {
		t.Fatalf("client after the server's FIN: read %q, %v; want \"late\"", b, err)
	}
	if res := r.result(t); res.err != nil || res.aToB != echoed || res.bToA != echoed+4 {
		t.Fatalf("half-closed relay reported %+v, want %d and %d bytes, no error", res, echoed, echoed+4)
	}
}

// waitReleased waits until the process holds no more descriptors than fds0
// and no more goroutines than base (leakcheck.Baseline).
func waitReleased(t testing.TB, fds0, base int) {
	t.Helper()
	testwait.Until(t, "every descriptor to be closed", 5*time.Second, func() bool {
		_, fds := countFDs(t)
		return fds <= fds0
	})
	if got := waitGoroutines(base, 5*time.Second); got > base {
		t.Fatalf("%d goroutines after every relay ended, want %d", got, base)
	}
}

// waitGoroutines waits until at most want goroutines run, and returns the
// last count. Like base counts (leakcheck.Baseline), it leaves out the
// goroutines that live as long as the process: the epoll loop and idle
// internal/workers goroutines, which a run of relays leaves behind without
// holding them per connection.
func waitGoroutines(want int, within time.Duration) int {
	deadline := time.Now().Add(within)
	for {
		n := leakcheck.Count()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLinkIdleHoldsNoGoroutine: relays between TCP sockets give up their
// goroutines once idle, and parked relays still move bytes both ways, pass
// half-closes on, and end when closed from outside.
func TestLinkIdleHoldsNoGoroutine(t *testing.T) {
	defer netutil.SetParkAfter(10 * time.Millisecond)()
	netutil.StartParkLoop()
	const n = 40
	for _, tc := range []struct {
		name string
		mode relayMode
		// goroutines an idle relay keeps: a source that is not a socket
		// keeps its reader (the wrapped side of "mixed").
		kept int
	}{{"splice", modeSplice, 0}, {"mixed", modeMixed, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			base := leakcheck.Baseline()
			rigs := make([]*linkRig, n)
			for i := range rigs {
				rigs[i] = newLinkRig(t, tc.mode)
				go rigs[i].link.Run()
				rigs[i].echoOnce(t, byte(i))
			}
			want := base + tc.kept*n
			if got := waitGoroutines(want, 5*time.Second); got > want {
				t.Fatalf("%d idle relays run %d goroutines, want %d", n, got-base, want-base)
			}

			// Parked relays wake for data, both ways, and park again.
			for i, r := range rigs {
				r.echoOnce(t, byte(i+1))
			}
			if got := waitGoroutines(want, 5*time.Second); got > want {
				t.Fatalf("after a second echo, %d relays run %d goroutines, want %d", n, got-base, want-base)
			}

			// A half-close reaching a parked direction ends it cleanly.
			rigs[0].halfCloseBoth(t, 2)

			// Close ends parked relays, which report net.ErrClosed.
			for _, r := range rigs[1:] {
				r.link.Close()
			}
			for _, r := range rigs[1:] {
				res := r.result(t)
				if !errors.Is(res.err, net.ErrClosed) {
					t.Errorf("closed relay reported %v, want net.ErrClosed", res.err)
				}
				if res.aToB != 2 || r.ab.Load() != 2 {
					t.Errorf("closed relay counted %d (live %d) bytes a->b, want 2", res.aToB, r.ab.Load())
				}
			}
			if got := waitGoroutines(base, 5*time.Second); got > base {
				t.Fatalf("%d goroutines after every relay ended, want %d", got, base)
			}
		})
	}
}

// TestLinkCloseRacesPark closes relays at the moment their directions park,
// many times: every relay must still report its end.
func TestLinkCloseRacesPark(t *testing.T) {
	defer netutil.SetParkAfter(time.Millisecond)()
	netutil.StartParkLoop()
	for i := range 200 {
		r := newLinkRig(t, modeSplice)
		go r.link.Run()
		r.echoOnce(t, byte(i))
		time.Sleep(time.Duration(i%4) * 500 * time.Microsecond)
		r.link.Close()
		r.result(t)
		r.client.Close()
		r.server.Close()
	}
}

// TestLinkCloseBeforeRun: a Link closed before it runs ends at once and
// closes both connections.
func TestLinkCloseBeforeRun(t *testing.T) {
	r := newLinkRig(t, modeSplice)
	r.link.Close()
	r.link.Run()
	if res := r.result(t); !errors.Is(res.err, net.ErrClosed) {
		t.Fatalf("reported %v, want net.ErrClosed", res.err)
	}
	r.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.client.Read(make([]byte, 1)); err == nil {
		t.Fatal("the client's connection is still open")
	}
}

// benchmarkWake is a 1-byte round trip client -> relay -> server -> relay ->
// client over a Link between TCP sockets, with parkAfter set to after: 0
// parks every direction at every empty read (each byte resumes it from the
// epoll loop; with detach on, each park detaches the Link's sockets and each
// resume attaches them again), a long one never parks.
func benchmarkWake(b *testing.B, after time.Duration, detach bool) {
	defer netutil.SetParkAfter(after)()
	defer netutil.SetAttachHold(0)()
	defer netutil.SetDetach(detach)()
	netutil.StartParkLoop()
	r := newLinkRig(b, modeSplice)
	go r.link.Run()
	b.Cleanup(func() { r.link.Close(); r.result(b) })
	buf := []byte{0}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.client.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(r.server, buf); err != nil {
			b.Fatal(err)
		}
		if _, err := r.server.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(r.client, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLinkWakeParked measures round trips whose every hop resumes a
// parked direction (epoll loop, new goroutine): the cost of a park and a
// resume, against BenchmarkLinkWakeActive. Every park also detaches the
// sockets and every resume attaches them (the worst case: a real Link
// detaches at most once per parkAfter); BenchmarkLinkWakeParkedAttached is
// the same without.
func BenchmarkLinkWakeParked(b *testing.B) { benchmarkWake(b, 0, true) }

// BenchmarkLinkWakeParkedAttached is BenchmarkLinkWakeParked with detaching
// off.
func BenchmarkLinkWakeParkedAttached(b *testing.B) { benchmarkWake(b, 0, false) }

// BenchmarkLinkWakeActive is BenchmarkLinkWakeParked with directions that
// never park (they wait in Go's netpoller).
func BenchmarkLinkWakeActive(b *testing.B) { benchmarkWake(b, time.Hour, true) }

// closeRecorder is a connection that records that it was closed.
type closeRecorder struct {
	*net.TCPConn
	closed atomic.Bool
}

func (c *closeRecorder) Close() error {
	c.closed.Store(true)
	return c.TCPConn.Close()
}

// TestLinkReportsOnceAfterClose ends relays from both sides at once, many times: the
// directions end (the peers closed) while Close runs from outside. Every Link reports exactly
// once, and only after it closed both of its connections, whichever of its two closers came
// first.
func TestLinkReportsOnceAfterClose(t *testing.T) {
	const n = 300
	reports := make([]atomic.Int32, n)
	var early atomic.Int32 // reports made while a connection was still open
	for i := range n {
		client, a := dialAccept(t)
		b, server := dialAccept(t)
		ra, rb := &closeRecorder{TCPConn: a}, &closeRecorder{TCPConn: b}
		done := make(chan struct{}, 1)
		l := netutil.NewLink(ra, rb, nil, nil, netutil.EndFunc(func(_, _ int64, _ error) {
			if !ra.closed.Load() || !rb.closed.Load() {
				early.Add(1)
			}
			reports[i].Add(1)
			done <- struct{}{}
		}))
		go l.Run()
		if _, err := client.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		server.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(server, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		go l.Close()
		client.Close()
		server.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("relay %d did not report its end", i)
		}
	}
	time.Sleep(50 * time.Millisecond) // room for a second report, which must not come
	for i := range reports {
		if got := reports[i].Load(); got != 1 {
			t.Errorf("relay %d reported %d times, want once", i, got)
		}
	}
	if got := early.Load(); got != 0 {
		t.Errorf("%d of %d relays reported their end before both connections were closed", got, n)
	}
}
