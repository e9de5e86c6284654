package netutil_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/netutil"
)

// feedConn is a ReadNotifier source the test feeds, with hbone.Stream's
// contract: Read waits while nothing is buffered; NotifyReadable keeps one
// callback, which the next feed (or the test, on purpose late) runs. Writes
// are discarded.
type feedConn struct {
	net.Conn // the unused methods' owner: a TCP end, for addresses
	mu       sync.Mutex
	cond     *sync.Cond
	buf      []byte
	closed   bool
	w        netutil.ReadWaiter // the parked direction, nil when none
}

func newFeedConn(c net.Conn) *feedConn {
	f := &feedConn{Conn: c}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func (f *feedConn) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.buf) == 0 && !f.closed {
		f.cond.Wait()
	}
	if f.closed {
		return 0, net.ErrClosed
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	return n, nil
}

func (f *feedConn) Write(p []byte) (int, error) { return len(p), nil }

func (f *feedConn) Close() error {
	f.mu.Lock()
	f.closed = true
	w := f.w
	f.w = nil
	f.mu.Unlock()
	f.cond.Broadcast()
	if w != nil {
		w.Readable()
	}
	return nil
}

func (f *feedConn) NotifyReadable(w netutil.ReadWaiter) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.buf) > 0 || f.closed {
		return false
	}
	f.w = w
	return true
}

// notify runs the kept callback, as the source's owner does after a change
// (or late, after the bytes that caused it were read).
func (f *feedConn) notify() {
	f.mu.Lock()
	w := f.w
	f.w = nil
	f.mu.Unlock()
	if w != nil {
		w.Readable()
	}
}

func (f *feedConn) feed(p []byte) {
	f.mu.Lock()
	f.buf = append(f.buf, p...)
	f.mu.Unlock()
	f.cond.Broadcast()
	f.notify()
}

// buffered is how many fed bytes the direction has not read yet.
func (f *feedConn) buffered() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.buf)
}

func (f *feedConn) registered() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.w != nil
}

// TestLinkLateNotification: a notification that arrives after the bytes that
// caused it were read (the notifier's goroutine lost the race with the
// direction's own goroutine) finds the source empty. The callback must park
// the direction again and return, never wait in Read: on an HBONE stream it
// runs on the connection's reader, which is the goroutine that would deliver
// the next bytes.
func TestLinkLateNotification(t *testing.T) {
	a, _ := tcpPair(t)
	peer, far := tcpPair(t)
	src := newFeedConn(a)
	done := make(chan relayResult, 1)
	l := netutil.NewLink(src, peer, nil, nil, netutil.EndFunc(func(x, y int64, err error) { done <- relayResult{x, y, err} }))
	go l.Run()
	waitRegistered := func() {
		t.Helper()
		testwait.Until(t, "the direction to park on its source", 5*time.Second, src.registered)
	}
	waitRegistered()

	late := make(chan struct{})
	go func() { src.notify(); close(late) }() // nothing buffered: a late notification
	select {
	case <-late:
	case <-time.After(5 * time.Second):
		t.Fatal("a late notification waited in Read on an empty source")
	}
	waitRegistered()

	src.feed([]byte("hello"))
	far.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 5)
	if _, err := io.ReadFull(far, got); err != nil || string(got) != "hello" {
		t.Fatalf("relayed %q, %v; want hello", got, err)
	}
	l.Close()
	select {
	case res := <-done:
		if !errors.Is(res.err, net.ErrClosed) || res.aToB != 5 {
			t.Fatalf("reported %+v, want 5 bytes a->b and net.ErrClosed", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the Link did not end")
	}
}

// directFeedConn is a feedConn that is also a DirectNotifier: feed offers
// the bytes to the parked direction (ReadWaiter.Offer) first, as
// hbone.Stream does, and buffers (and notifies) only what it did not take.
type directFeedConn struct {
	*feedConn
	direct  bool // the waiter came through NotifyReadableWith
	offered int  // bytes Offer took
}

func (f *directFeedConn) NotifyReadableWith(w netutil.ReadWaiter) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.buf) > 0 || f.closed {
		return false
	}
	f.w, f.direct = w, true
	return true
}

func (f *directFeedConn) feed(p []byte) {
	f.mu.Lock()
	w := f.w
	if w == nil || !f.direct || len(f.buf) > 0 {
		f.mu.Unlock()
		f.feedConn.feed(p)
		return
	}
	f.w, f.direct = nil, false
	f.mu.Unlock()
	took := w.Offer(p)
	f.mu.Lock()
	f.offered += took
	if took == len(p) {
		f.w, f.direct = w, true // still parked
		f.mu.Unlock()
		return
	}
	f.buf = append(f.buf, p[took:]...)
	f.mu.Unlock()
	f.cond.Broadcast()
	w.Readable()
}

// TestLinkDirectSink: a parked direction whose source is a DirectNotifier
// takes arriving bytes straight into the destination socket; when the
// socket is full the rest goes to a goroutine, and every byte arrives once,
// in order.
func TestLinkDirectSink(t *testing.T) {
	a, _ := tcpPair(t)
	peer, far := tcpPair(t)
	src := &directFeedConn{feedConn: newFeedConn(a)}
	done := make(chan relayResult, 1)
	l := netutil.NewLink(src, peer, nil, nil, netutil.EndFunc(func(x, y int64, err error) { done <- relayResult{x, y, err} }))
	go l.Run()
	defer l.Close()

	const total = 8 << 20 // more than the sockets buffer: the sink comes up short
	feedParked(t, src, far, total, 32<<10)
	src.mu.Lock()
	offered := src.offered
	src.mu.Unlock()
	if offered == 0 {
		t.Fatal("the sink took nothing: the bytes went through Read")
	}
	t.Logf("sink took %d of %d bytes", offered, total)
}

// runWatchConn is a feedConn whose Read records whether it was called from
// Link.Run's goroutine, inside Run.
type runWatchConn struct {
	*feedConn
	inRun atomic.Bool
}

func (f *runWatchConn) Read(p []byte) (int, error) {
	stack := make([]byte, 16<<10)
	stack = stack[:runtime.Stack(stack, false)]
	if bytes.Contains(stack, []byte("netutil.(*Link).Run(")) {
		f.inRun.Store(true)
	}
	return f.feedConn.Read(p)
}

// TestLinkRunDeliversReadySource: when a ReadNotifier source already holds
// bytes as the relay starts (data an HBONE client sent with its request),
// Run moves them to a TCP destination on its own goroutine, without handing
// them to a new one first.
func TestLinkRunDeliversReadySource(t *testing.T) {
	a, _ := tcpPair(t)
	peer, far := tcpPair(t)
	src := &runWatchConn{feedConn: newFeedConn(a)}
	src.feed([]byte("early"))
	l := netutil.NewLink(src, peer, nil, nil, nil)
	go l.Run()
	defer l.Close()
	far.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 5)
	if _, err := io.ReadFull(far, got); err != nil || string(got) != "early" {
		t.Fatalf("relayed %q, %v; want \"early\"", got, err)
	}
	if !src.inRun.Load() {
		t.Error("the source's bytes were read on another goroutine than Run's")
	}
}

// smallBufferPair is tcpPair with 16 KiB socket buffers (peer's send, far's
// receive), so a destination fills after a few tens of KiB while far does
// not read.
func smallBufferPair(t *testing.T) (peer, far *net.TCPConn) {
	t.Helper()
	peer, far = tcpPair(t)
	if err := peer.SetWriteBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	if err := far.SetReadBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	return peer, far
}

// TestLinkDeliverFullBuffer: a parked direction whose source is a
// ReadNotifier (not a DirectNotifier) reads on the notifying goroutine into a
// 64 KiB buffer and writes to the destination socket without waiting; when
// the socket is full, the rest of that buffer (up to all of it, a read that
// filled the buffer: the largest bounds dirState keeps) goes to a goroutine,
// and every byte arrives once, in order.
func TestLinkDeliverFullBuffer(t *testing.T) {
	a, _ := tcpPair(t)
	peer, far := smallBufferPair(t) // no 64 KiB write completes without waiting
	src := newFeedConn(a)
	l := netutil.NewLink(src, peer, nil, nil, nil)
	go l.Run()
	defer l.Close()

	// More than one relay buffer a feed, so reads fill it.
	feedParked(t, src, far, 6*160<<10, 160<<10)
}

// feedParked feeds total bytes to src in steps of step, each once the
// direction reading src has parked on it, and fails t unless far receives
// them all, once and in order.
func feedParked(t *testing.T, src interface {
	feed([]byte)
	registered() bool
}, far net.Conn, total, step int) {
	t.Helper()
	want := make([]byte, total)
	for i := range want {
		want[i] = byte(i*31 + i>>11)
	}
	got := make(chan []byte, 1)
	go func() {
		far.SetReadDeadline(time.Now().Add(20 * time.Second))
		b := make([]byte, total)
		n, _ := io.ReadFull(far, b)
		got <- b[:n]
	}()
	for off := 0; off < total; off += step {
		testwait.Until(t, "the direction to park on its source", 10*time.Second, src.registered)
		src.feed(want[off:min(off+step, total)])
	}
	if b := <-got; !bytes.Equal(b, want) {
		i := 0
		for i < len(b) && b[i] == want[i] {
			i++
		}
		t.Fatalf("relayed %d bytes, different from the %d sent from byte %d", len(b), total, i)
	}
}

// TestLinkNotifiedFullDestination: a direction whose source is a
// ReadNotifier and whose destination socket is full waits for room on its
// goroutine (writeDst: rawio in the netpoller's wait), then goes on, losing
// and reordering nothing; and a Close while it waits ends it. (A writeDst
// that gave up at the first EAGAIN would end the Link with a short write.)
func TestLinkNotifiedFullDestination(t *testing.T) {
	a, _ := tcpPair(t)
	peer, far := smallBufferPair(t) // one feed fills them many times over
	src := newFeedConn(a)
	ended := make(chan error, 1)
	var count atomic.Int64
	l := netutil.NewLink(src, peer, &count, nil, netutil.EndFunc(func(_, _ int64, err error) { ended <- err }))
	go l.Run()
	defer l.Close()
	testwait.Until(t, "the direction to park on its source", 5*time.Second, src.registered)

	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i * 7 / 251)
	}
	// stuck feeds data and waits until the direction holds bytes it cannot
	// write: the count stands still while the source still has some.
	stuck := func() {
		t.Helper()
		src.feed(data)
		last, still := int64(-1), 0
		testwait.Until(t, "the destination to fill", 10*time.Second, func() bool {
			select {
			case err := <-ended:
				t.Fatalf("the Link ended with %v while its destination was full", err)
			default:
			}
			if n := count.Load(); n != last {
				last, still = n, 0
				return false
			}
			still++
			return still >= 5 && src.buffered() > 0
		})
	}

	stuck()
	far.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := make([]byte, len(data))
	if _, err := io.ReadFull(far, got); err != nil {
		t.Fatalf("reading what the full destination was sent: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the bytes relayed through a full destination differ from those fed")
	}

	stuck()
	l.Close()
	select {
	case err := <-ended:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("the Link closed while writing to a full destination ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a direction waiting for room in its destination")
	}
}
