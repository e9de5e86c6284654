package netutil_test

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/netutil"
)

// waitDetached waits until every Link of rigs holds both its sockets
// detached.
func waitDetached(t *testing.T, rigs []*linkRig) {
	t.Helper()
	testwait.Until(t, "every idle Link to detach its sockets", 10*time.Second, func() bool {
		for _, r := range rigs {
			if a, b := netutil.Detached(r.link); !a || !b {
				return false
			}
		}
		return true
	})
}

// heapPerLink is the heap (allocated bytes, after collections) that n idle
// relays between TCP sockets hold each, detaching on or off.
func heapPerLink(t *testing.T, n int, detach bool) int64 {
	defer netutil.SetDetach(detach)()
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heap0 := ms.HeapAlloc
	rigs := make([]*linkRig, n)
	for i := range rigs {
		rigs[i] = newLinkRig(t, modeSplice)
		go rigs[i].link.Run()
		rigs[i].echoOnce(t, byte(i))
	}
	if detach {
		waitDetached(t, rigs)
	}
	time.Sleep(30 * time.Millisecond) // every direction parked (parkAfter is 10 ms here)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	per := (int64(ms.HeapAlloc) - int64(heap0)) / int64(n)
	for _, r := range rigs {
		r.link.Close()
		r.result(t)
		r.client.Close()
		r.server.Close()
	}
	return per
}

// TestLinkDetachesIdleSockets: once both directions of a Link between TCP
// sockets are parked, the Link holds its sockets as bare descriptors, which
// frees Go's state of both (netFD, addresses); the relay still wakes for
// bytes both ways, passes a half-close on, detaches again when idle again,
// and ends when closed, with every descriptor it held closed.
func TestLinkDetachesIdleSockets(t *testing.T) {
	defer netutil.SetParkAfter(10 * time.Millisecond)()
	netutil.StartParkLoop()
	const n = 40
	_, fds0 := countFDs(t)
	base := leakcheck.Baseline()
	rigs := make([]*linkRig, n)
	for i := range rigs {
		rigs[i] = newLinkRig(t, modeSplice)
		go rigs[i].link.Run()
		rigs[i].echoOnce(t, byte(i))
	}
	waitDetached(t, rigs)
	for _, r := range rigs {
		if a, b := netutil.LinkConns(r.link); a != nil || b != nil {
			t.Fatalf("a detached Link still holds %v and %v", a, b)
		}
	}
	if _, fds := countFDs(t); fds-fds0 != 4*n {
		t.Errorf("%d detached relays hold %d descriptors, want %d (4 sockets each)", n, fds-fds0, 4*n)
	}
	if got := waitGoroutines(base, 5*time.Second); got > base {
		t.Errorf("%d detached relays run %d goroutines, want none", n, got-base)
	}

	// Bytes wake a detached relay, both ways (each direction in turn
	// attaches the sockets), and it detaches again.
	for i, r := range rigs {
		r.echoOnce(t, byte(i+1))
	}
	waitDetached(t, rigs)
	for i, r := range rigs {
		r.echoOnce(t, byte(i+2))
	}

	// A half-close reaching a detached relay ends its direction cleanly.
	waitDetached(t, rigs)
	rigs[0].halfCloseBoth(t, 3)

	// Close ends detached relays: they report net.ErrClosed, their peers
	// read an orderly end, and every descriptor is closed.
	for _, r := range rigs[1:] {
		r.link.Close()
	}
	for _, r := range rigs[1:] {
		if res := r.result(t); !errors.Is(res.err, net.ErrClosed) || res.aToB != 3 {
			t.Errorf("closed detached relay reported %+v, want 3 bytes a->b and net.ErrClosed", res)
		}
		r.client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := io.ReadAll(r.client); err != nil || len(b) != 0 {
			t.Errorf("client of a closed detached relay: read %q, %v; want EOF", b, err)
		}
	}
	for _, r := range rigs {
		r.client.Close()
		r.server.Close()
	}
	waitReleased(t, fds0, base)
}

// TestLinkDetachSavesMemory: detaching frees most of the Go state of a
// relay's two sockets (about 700 B of heap per relay measured; the
// runtime's poll descriptors, off the heap, come on top). Medians of three
// alternated runs each way.
func TestLinkDetachSavesMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes memory use")
	}
	defer netutil.SetParkAfter(10 * time.Millisecond)()
	netutil.StartParkLoop()
	const n = 200
	heapPerLink(t, n, true) // warm-up: worker goroutines, loop slots, pools
	var on, off []int64
	for range 3 {
		off = append(off, heapPerLink(t, n, false))
		on = append(on, heapPerLink(t, n, true))
	}
	slices.Sort(on)
	slices.Sort(off)
	t.Logf("heap per idle relay: %d B detached, %d B attached (medians of %v and %v)", on[1], off[1], on, off)
	if saved := off[1] - on[1]; saved < 300 {
		t.Errorf("detaching saved %d B per idle relay, want at least 300", saved)
	}
}

// TestLinkDetachKeepsSocketOptions: net.FileConn, which attaches a socket
// again, turns TCP_NODELAY on and sets Go's keepalive defaults; the Link
// puts back what the socket had.
func TestLinkDetachKeepsSocketOptions(t *testing.T) {
	defer netutil.SetParkAfter(5 * time.Millisecond)()
	netutil.StartParkLoop()
	r := newLinkRig(t, modeSplice)
	a, b := netutil.LinkConns(r.link)
	want := [5]int{0, 1, 170, 70, 4} // NODELAY, KEEPALIVE, KEEPIDLE, KEEPINTVL, KEEPCNT
	for _, c := range []net.Conn{a, b} {
		rc, _ := c.(*net.TCPConn).SyscallConn()
		rc.Control(func(fd uintptr) {
			for i, o := range sockOpts {
				if err := syscall.SetsockoptInt(int(fd), o[0], o[1], want[i]); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	go r.link.Run()
	r.echoOnce(t, 1)
	waitDetached(t, []*linkRig{r})
	// Attach again, with detaching off so that it stays attached while the
	// options are read.
	defer netutil.SetDetach(false)()
	r.echoOnce(t, 2)
	testwait.Until(t, "the Link to attach its sockets again", 5*time.Second, func() bool {
		a, b := netutil.Detached(r.link)
		return !a && !b
	})
	a, b = netutil.LinkConns(r.link)
	for name, c := range map[string]net.Conn{"a": a, "b": b} {
		tc, ok := c.(*net.TCPConn)
		if !ok {
			t.Fatalf("%s is %T after the attach, want *net.TCPConn", name, c)
		}
		rc, _ := tc.SyscallConn()
		rc.Control(func(fd uintptr) {
			for i, o := range sockOpts {
				got, err := syscall.GetsockoptInt(int(fd), o[0], o[1])
				if err != nil || got != want[i] {
					t.Errorf("%s: socket option %d is %d (%v) after the attach, want %d", name, i, got, err, want[i])
				}
			}
		})
	}
	r.link.Close()
	r.result(t)
}

// sockOpts are TCP_NODELAY, SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and
// TCP_KEEPCNT as (level, option).
var sockOpts = [5][2]int{
	{syscall.IPPROTO_TCP, syscall.TCP_NODELAY},
	{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE},
	{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE},
	{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL},
	{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT},
}

// TestLinkDirectWriteWhileDetached: the HBONE shape (a notifying source on
// one side, a TCP socket on the other). Once both directions park, the
// socket is detached; bytes the source offers go straight into the bare
// descriptor without attaching it, and bytes from the socket's peer attach
// it and reach the source's side.
func TestLinkDirectWriteWhileDetached(t *testing.T) {
	defer netutil.SetParkAfter(5 * time.Millisecond)()
	netutil.StartParkLoop()
	a, _ := tcpPair(t)
	peer, far := dialAccept(t)
	t.Cleanup(func() { far.Close() })
	src := &directFeedConn{feedConn: newFeedConn(a)}
	var toSrc atomic.Int64
	done := make(chan relayResult, 1)
	l := netutil.NewLink(src, peer, nil, &toSrc, netutil.EndFunc(func(x, y int64, err error) { done <- relayResult{x, y, err} }))
	go l.Run()
	defer l.Close()
	detached := func() bool { _, b := netutil.Detached(l); return b }
	testwait.Until(t, "the TCP side to detach", 5*time.Second, detached)

	for i := range 5 {
		msg := []byte{'m', byte('0' + i)}
		testwait.Until(t, "the direction to park on its source", 5*time.Second, src.registered)
		src.feed(msg)
		got := make([]byte, len(msg))
		far.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(far, got); err != nil || string(got) != string(msg) {
			t.Fatalf("far read %q, %v; want %q", got, err, msg)
		}
		if !detached() {
			t.Fatal("an offered write attached the socket")
		}
	}
	src.mu.Lock()
	offered := src.offered
	src.mu.Unlock()
	if offered != 10 {
		t.Fatalf("Offer took %d bytes, want all 10", offered)
	}

	if _, err := far.Write([]byte("up")); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the peer's bytes to reach the source's side", 5*time.Second, func() bool { return toSrc.Load() == 2 })
	l.Close()
	if res := <-done; !errors.Is(res.err, net.ErrClosed) || res.aToB != 10 || res.bToA != 2 {
		t.Fatalf("reported %+v, want 10 and 2 bytes and net.ErrClosed", res)
	}
}

// TestLinkDetachesAfterHold: a Link whose directions park again within
// attachHold of an attach stays attached until the hold has passed, then
// detaches without any further park.
func TestLinkDetachesAfterHold(t *testing.T) {
	defer netutil.SetParkAfter(2 * time.Millisecond)()
	defer netutil.SetAttachHold(300 * time.Millisecond)()
	netutil.StartParkLoop()
	r := newLinkRig(t, modeSplice)
	go r.link.Run()
	r.echoOnce(t, 1)
	waitDetached(t, []*linkRig{r}) // a new Link was never attached: no hold
	attached := time.Now()         // no later than the attach
	r.echoOnce(t, 2)               // attaches
	testwait.Until(t, "both directions to park again", 5*time.Second, func() bool {
		return netutil.Parked(r.link) == 2
	})
	if a, b := netutil.Detached(r.link); (a || b) && time.Since(attached) < 250*time.Millisecond {
		t.Fatalf("detached %v after the attach, within the 300 ms hold", time.Since(attached))
	}
	waitDetached(t, []*linkRig{r})
	if held := time.Since(attached); held < 300*time.Millisecond {
		t.Fatalf("detached %v after the attach, want the 300 ms hold", held)
	}
	r.echoOnce(t, 3)
	r.link.Close()
	r.result(t)
}

// newDetachedRig starts a relay between TCP sockets, moves one byte each
// way through it and waits until it has detached both sockets.
func newDetachedRig(t *testing.T) *linkRig {
	t.Helper()
	netutil.StartParkLoop()
	r := newLinkRig(t, modeSplice)
	go r.link.Run()
	r.echoOnce(t, 1)
	waitDetached(t, []*linkRig{r})
	return r
}

// TestLinkDetachedPeerReset: a reset reaching a detached socket attaches it
// again and ends the relay with the reset (a disconnect, not a failure of
// the attach).
func TestLinkDetachedPeerReset(t *testing.T) {
	defer netutil.SetParkAfter(5 * time.Millisecond)()
	r := newDetachedRig(t)
	r.server.SetLinger(0)
	r.server.Close()
	res := r.result(t)
	if !errors.Is(res.err, syscall.ECONNRESET) || !netutil.IsDisconnect(res.err) {
		t.Fatalf("reported %v, want the peer's reset", res.err)
	}
	r.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.client.Read(make([]byte, 1)); err == nil {
		t.Fatal("the client's connection is still open")
	}
}

// refusedFeedConn is a notifying source that turns out to be a refused
// tunnel: hbone.Stream's shape when its request is refused after the relay
// started.
type refusedFeedConn struct{ *feedConn }

func (refusedFeedConn) Refused() bool { return true }

// TestLinkCloseDetachedRefused: closing a detached Link whose tunnel was
// refused after bytes went into it resets the client, through the bare
// descriptor.
func TestLinkCloseDetachedRefused(t *testing.T) {
	defer netutil.SetParkAfter(5 * time.Millisecond)()
	netutil.StartParkLoop()
	client, a := dialAccept(t)
	t.Cleanup(func() { client.Close() })
	x, _ := tcpPair(t)
	tunnel := refusedFeedConn{newFeedConn(x)}
	var toTunnel atomic.Int64
	done := make(chan relayResult, 1)
	l := netutil.NewLink(a, tunnel, &toTunnel, nil, netutil.EndFunc(func(x, y int64, err error) { done <- relayResult{x, y, err} }))
	go l.Run()
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the client's bytes to go into the tunnel", 5*time.Second, func() bool { return toTunnel.Load() == 5 })
	testwait.Until(t, "the client's socket to detach", 5*time.Second, func() bool { a, _ := netutil.Detached(l); return a })
	l.Close()
	<-done
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read %v, want a reset", err)
	}
}

// TestLinkDetachRaces moves bytes both ways through relays whose directions
// park after 1 ms, with pauses around that, so that detaches and attaches
// race with arriving bytes, with each other and with Close: every byte
// arrives in order, every relay reports its end, and no descriptor or
// goroutine is left.
func TestLinkDetachRaces(t *testing.T) {
	defer netutil.SetParkAfter(time.Millisecond)()
	defer netutil.SetAttachHold(time.Millisecond)()
	netutil.StartParkLoop()
	_, fds0 := countFDs(t)
	base := leakcheck.Baseline()
	rng := rand.New(rand.NewPCG(1, 2))
	const relays, rounds = 12, 40
	rigs := make([]*linkRig, relays)
	for i := range rigs {
		rigs[i] = newLinkRig(t, modeSplice)
		go rigs[i].link.Run()
	}
	detaches0 := netutil.Detaches()
	errc := make(chan error, relays)
	for i, r := range rigs {
		pauses := make([]time.Duration, rounds)
		for j := range pauses {
			pauses[j] = time.Duration(rng.IntN(3000)) * time.Microsecond
		}
		closeAt := rounds
		if i%3 == 0 {
			closeAt = rng.IntN(rounds) // closed from outside, mid-way
		}
		go func() {
			errc <- pingPong(r, pauses, closeAt)
		}()
	}
	for range rigs {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	detached := netutil.Detaches() - detaches0
	t.Logf("%d sockets detached during %d exchanges", detached, relays*rounds)
	if detached < relays {
		t.Errorf("only %d sockets detached: the test did not race detaching", detached)
	}
	for _, r := range rigs {
		r.link.Close()
		r.result(t)
		r.client.Close()
		r.server.Close()
	}
	waitReleased(t, fds0, base)
}

// pingPong sends a byte each way per pause, pausing between, and closes the
// Link at round closeAt: from there on, a failed exchange is expected.
func pingPong(r *linkRig, pauses []time.Duration, closeAt int) error {
	buf := make([]byte, 1)
	for j, p := range pauses {
		time.Sleep(p)
		if j == closeAt {
			r.link.Close()
			return nil
		}
		b := byte(j)
		for _, dir := range [][2]*net.TCPConn{{r.client, r.server}, {r.server, r.client}} {
			if _, err := dir[0].Write([]byte{b}); err != nil {
				return err
			}
			dir[1].SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(dir[1], buf); err != nil {
				return err
			}
			if buf[0] != b {
				return errors.New("a byte arrived out of order")
			}
		}
	}
	return nil
}

// TestLinkAttachAtDescriptorLimit: a detached relay wakes and relays both
// ways while the process has no descriptor free, as a ztunnel flooded with
// connections at its RLIMIT_NOFILE (e2e's TestResourceLimits). Attaching
// needs a second descriptor of each socket for a moment; the spare gives it.
func TestLinkAttachAtDescriptorLimit(t *testing.T) {
	defer netutil.SetParkAfter(10 * time.Millisecond)()
	r := newDetachedRig(t)

	// Lower the soft limit to just above the highest descriptor open, then
	// fill every number below it.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	highest := 0
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > highest {
			highest = n
		}
	}
	low := lim
	low.Cur = uint64(highest + 8)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var fill []int
	defer func() {
		for _, fd := range fill {
			syscall.Close(fd)
		}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Errorf("restoring RLIMIT_NOFILE: %v", err)
		}
	}()
	for {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			if !errors.Is(err, unix.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		fill = append(fill, fd)
	}
	t.Logf("%d descriptors filled up to the soft limit of %d", len(fill), low.Cur)

	// The first byte attaches both sockets, then each way relays. (Detaching
	// again needs a free descriptor: at the limit the sockets stay attached.)
	r.echoOnce(t, 2)
	r.echoOnce(t, 3)
	r.link.Close()
	r.result(t)
	r.client.Close()
	r.server.Close()
}
