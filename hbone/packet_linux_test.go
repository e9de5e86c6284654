package hbone

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/tls/record"
)

// writeSizes is a net.Conn that records the size of every write it passes on, and keeps
// its socket findable (NetConn), as the WriteBuffer the proxy puts there does.
type writeSizes struct {
	net.Conn
	mu    sync.Mutex
	sizes []int
}

func (w *writeSizes) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.sizes = append(w.sizes, len(p))
	w.mu.Unlock()
	return w.Conn.Write(p)
}

func (w *writeSizes) NetConn() net.Conn { return w.Conn }

// take returns the sizes recorded so far and forgets them.
func (w *writeSizes) take() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.sizes
	w.sizes = nil
	return s
}

// TestWriteSizeHint: over TLS records on a TCP socket clamped to a pod interface's MSS
// (1460, less the timestamp option), a stream's WriteSizeHint is what fits the socket's
// packet goal, and a Write of that size leaves in one write(2) of at most the goal, which
// the kernel sends as one packet.
func TestWriteSizeHint(t *testing.T) {
	const clamp = 1460
	var got atomic.Int64 // bytes the server read
	sink := HandlerFunc(func(s *Stream, req *Request) {
		if err := s.Respond(200); err != nil {
			return
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := s.Read(buf)
			got.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	ts := startServer(t, true, Config{}, sink)
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, clamp)
		}); err != nil {
			return err
		}
		return serr
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tc, err := d.DialContext(ctx, "tcp", ts.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ws := &writeSizes{Conn: tc}
	nc, _, err := record.Handshake(ctx, ws, ts.tls, false)
	if err != nil {
		tc.Close()
		t.Fatal(err)
	}
	rc, ok := nc.(*record.Conn)
	if !ok {
		t.Fatalf("handshake gave %T, want *record.Conn", nc)
	}
	mss := socketMSS(nc)
	if mss <= 1000 || mss > clamp {
		t.Fatalf("socket MSS %d, want the clamp %d less options", mss, clamp)
	}
	cc, err := NewClientConn(nc, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	s, err := cc.Connect(ctx, &Request{Authority: "10.0.0.1:80"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	goal := packetGoal(mss)
	hint := s.WriteSizeHint()
	if want := rc.PlaintextWithin(goal) - frameHeaderLen; hint != want || hint < relayBufHalf {
		t.Fatalf("WriteSizeHint %d, want %d (at least %d)", hint, want, relayBufHalf)
	}
	// A warm-up write first, so that the connection's settings have been acknowledged.
	// Then the peer only reads, and we write no control frames of our own; a frame that
	// still shares a write(2) with ours (a PING's answer) spoils that write alone.
	if _, err := s.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the warm-up byte to arrive", 10*time.Second, func() bool { return got.Load() == 1 })
	buf := make([]byte, hint)
	clean := 0
	for i := range 4 {
		ws.take()
		if _, err := s.Write(buf); err != nil {
			t.Fatal(err)
		}
		sizes := ws.take()
		if len(sizes) == 1 && sizes[0] >= hint && sizes[0] <= goal {
			clean++
		} else {
			t.Logf("write %d: write(2)s of %v bytes, packet goal %d", i, sizes, goal)
		}
	}
	if clean == 0 {
		t.Errorf("no Write of the hint's %d bytes left in one write(2) within the packet goal %d", hint, goal)
	}
	testwait.Until(t, "the bytes to arrive", 10*time.Second, func() bool { return got.Load() == int64(1+4*hint) })
}

// relayBufHalf is the smallest hint netutil's relay uses (half its 64 KiB buffer).
const relayBufHalf = 32 << 10
