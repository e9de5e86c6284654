package netutil_test

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/netutil"
)

// acceptRig is a loopback listener served by an IdleLoop whose serve is
// serveAccepts: accepted connections arrive on conns.
type acceptRig struct {
	ln    *net.TCPListener
	loop  *netutil.IdleLoop
	conns chan net.Conn
}

func newAcceptRig(t *testing.T, idle time.Duration) *acceptRig {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &acceptRig{ln: ln, conns: make(chan net.Conn, 16)}
	r.loop, err = netutil.NewIdleLoop(ln, ln.SetDeadline, idle, r.serveAccepts)
	if err != nil {
		t.Fatal(err)
	}
	r.loop.Start()
	t.Cleanup(func() { r.loop.Close(ln.Close) })
	return r
}

// serveAccepts is the accept loop under test; its name is what the tests
// look for in goroutine stacks.
func (r *acceptRig) serveAccepts() error {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return err
		}
		r.loop.Active()
		r.conns <- c
	}
}

// serving is the number of goroutines in the rig's accept loop.
func serving() int { return leakcheck.Matching("netutil_test.(*acceptRig).serveAccepts") }

// roundTrip dials the rig and waits for the connection to be accepted.
func (r *acceptRig) roundTrip(t *testing.T) {
	t.Helper()
	c, err := net.Dial("tcp", r.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case a := <-r.conns:
		a.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("connection not accepted")
	}
}

// TestIdleLoopParksListener: an idle listener's accept loop gives up its
// goroutine after a quiet period and gets one back for the next connection,
// as many times as that happens; Close then leaves nothing running.
func TestIdleLoopParksListener(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SKIPPED: the epoll loop that parks sockets is Linux only")
	}
	base := leakcheck.Baseline()
	r := newAcceptRig(t, 30*time.Millisecond)
	for range 3 {
		r.roundTrip(t)
		testwait.Until(t, "the idle accept loop to park", 10*time.Second, func() bool { return serving() == 0 })
	}
	if err := r.loop.Close(r.ln.Close); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := net.Dial("tcp", r.ln.Addr().String()); err == nil {
		t.Fatal("the listener still accepts after Close")
	}
	leakcheck.Wait(t, base)
}

// TestIdleLoopKeepsBusyGoroutine: while connections keep coming, periods end
// but the loop keeps its goroutine (Active), so a busy listener never pays a
// park and a resume. The connections come every 20 ms, the periods last
// 150 ms: several periods pass, none of them quiet.
func TestIdleLoopKeepsBusyGoroutine(t *testing.T) {
	r := newAcceptRig(t, 150*time.Millisecond)
	r.roundTrip(t)
	id := servingID(t)
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
		r.roundTrip(t)
		if got := servingID(t); got != id {
			t.Fatalf("a busy loop changed goroutines: %s, then %s", id, got)
		}
	}
}

// servingID is the "goroutine N" of the one goroutine in serveAccepts.
func servingID(t *testing.T) string {
	t.Helper()
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var found []string
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("netutil_test.(*acceptRig).serveAccepts")) {
			f := bytes.Fields(g)
			found = append(found, string(f[0])+" "+string(f[1]))
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one serving goroutine, found %q", found)
	}
	return found[0]
}

// TestIdleLoopCloseWhileParked: Close takes a parked socket back from the
// epoll loop (else its slot and the loop would stay owed forever), and a
// connection that arrives after Close started is not served.
func TestIdleLoopCloseWhileParked(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SKIPPED: the epoll loop that parks sockets is Linux only")
	}
	base := leakcheck.Baseline()
	r := newAcceptRig(t, 10*time.Millisecond)
	testwait.Until(t, "the idle accept loop to park", 10*time.Second, func() bool { return serving() == 0 })
	closeLoop := func() error { return r.loop.Close(r.ln.Close) }
	if err := testwait.Returns(t, "Close of a parked loop", 10*time.Second, closeLoop); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Closing again is harmless; the second close of the listener reports it.
	if err := r.loop.Close(r.ln.Close); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v, want net.ErrClosed from the listener", err)
	}
	leakcheck.Wait(t, base)
}

// TestIdleLoopDatagrams: a UDP read loop parks and is resumed by the next
// datagram, which it reads whole.
func TestIdleLoopDatagrams(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SKIPPED: the epoll loop that parks sockets is Linux only")
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &udpRig{pc: pc, got: make(chan string, 4)}
	r.loop, err = netutil.NewIdleLoop(pc, pc.SetReadDeadline, 20*time.Millisecond, r.serveDatagrams)
	if err != nil {
		t.Fatal(err)
	}
	r.loop.Start()
	defer r.loop.Close(pc.Close)
	reading := func() int { return leakcheck.Matching("netutil_test.(*udpRig).serveDatagrams") }
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, msg := range []string{"one", "two"} {
		testwait.Until(t, "the idle read loop to park", 10*time.Second, func() bool { return reading() == 0 })
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-r.got:
			if m != msg {
				t.Fatalf("read %q, want %q", m, msg)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("datagram %q not read after the loop parked", msg)
		}
	}
}

// udpRig is a UDP socket served by an IdleLoop whose serve is serveDatagrams:
// the datagrams read arrive on got.
type udpRig struct {
	pc   *net.UDPConn
	loop *netutil.IdleLoop
	got  chan string
}

func (r *udpRig) serveDatagrams() error {
	buf := make([]byte, 64)
	for {
		n, _, err := r.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		r.loop.Active()
		r.got <- string(buf[:n])
	}
}

// TestIdleLoopUnparkable: a socket epoll refuses (here a regular file, which
// epoll_ctl rejects) keeps its goroutine: after the first quiet period the
// loop serves again without a deadline, and it ends when serve fails.
func TestIdleLoopUnparkable(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "plain"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	deadlines := make(chan time.Time, 4)
	calls := 0
	ended := make(chan struct{})
	serve := func() error {
		calls++
		if calls == 1 {
			return os.ErrDeadlineExceeded // a quiet first period
		}
		close(ended)
		return net.ErrClosed
	}
	loop, err := netutil.NewIdleLoop(f, func(t time.Time) error { deadlines <- t; return nil }, time.Millisecond, serve)
	if err != nil {
		t.Fatal(err)
	}
	loop.Start()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not serve again after epoll refused its socket")
	}
	if err := loop.Close(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Fatalf("serve ran %d times, want 2 (a period, then for good)", calls)
	}
	first, second := <-deadlines, <-deadlines
	if first.IsZero() {
		t.Error("the first period had no deadline")
	}
	if !second.IsZero() {
		t.Errorf("after epoll refused the socket the loop set deadline %v, want none", second)
	}
}
