package hbone

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/testwait"
)

// bulkOrHold serves "download:80" by sending until the client goes away, and holds every
// other tunnel open, discarding what arrives (an upload, or an idle interactive stream).
var bulkOrHold = HandlerFunc(func(s *Stream, req *Request) {
	s.Respond(200)
	if req.Authority != "download:80" {
		io.Copy(io.Discard, s)
		return
	}
	writeUntilError(s)
})

// writeUntilError writes 16 KiB chunks to w until a write fails.
func writeUntilError(w io.Writer) {
	buf := make([]byte, 16<<10)
	for {
		if _, err := w.Write(buf); err != nil {
			return
		}
	}
}

// bulkPool is a pool on a TCP server running bulkOrHold, counting its dials; after the first
// failDialsAfter dials (0: never) every dial fails.
func bulkPool(t *testing.T, failDialsAfter int32) (*Pool, *atomic.Int32) {
	ts := startServer(t, false, Config{}, bulkOrHold)
	var dials atomic.Int32
	p := NewPool(PoolConfig{Dial: func(ctx context.Context, k Key) (net.Conn, error) {
		if n := dials.Add(1); failDialsAfter > 0 && n > failDialsAfter {
			return nil, errors.New("dial refused by the test")
		}
		return ts.dial(ctx)
	}})
	t.Cleanup(func() { p.Close() })
	return p, &dials
}

// startBulk opens a stream on p that moves bulk DATA (download: the server sends and a
// goroutine here reads; upload: a goroutine here sends) until the test ends, and waits until
// its connection counts as busy.
func startBulk(t *testing.T, p *Pool, download bool) *Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	authority := "upload:80"
	if download {
		authority = "download:80"
	}
	s, err := p.Connect(ctx, testKey, &Request{Authority: authority})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if download {
			io.Copy(io.Discard, s)
			return
		}
		writeUntilError(s)
	}()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	testwait.Until(t, "the bulk stream's connection busy", 5*time.Second, s.c.busy)
	return s
}

// open opens an interactive stream on p.
func open(t *testing.T, p *Pool) *Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := p.Connect(ctx, testKey, &Request{Authority: "rr:80"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPoolKeepsStreamsOffBusyConns: a new stream does not join a connection that is moving bulk
// DATA in either direction (its frames would queue behind the bulk bytes in the one TCP
// stream); it gets a connection of its own, and later streams share that one while it is calm.
func TestPoolKeepsStreamsOffBusyConns(t *testing.T) {
	for _, download := range []bool{true, false} {
		name := "upload"
		if download {
			name = "download"
		}
		t.Run(name, func(t *testing.T) {
			p, dials := bulkPool(t, 0)
			bulk := startBulk(t, p, download) // returns once the transfer made it busy
			// From here its bulk transfer keeps it busy; pinned, it stays busy through the
			// moments a loaded machine (the race detector, other tests) starves the transfer.
			pinBusy(bulk.c)
			rr := open(t, p)
			if rr.c == bulk.c {
				t.Fatal("the interactive stream shares the busy connection")
			}
			if got := dials.Load(); got != 2 {
				t.Fatalf("dials = %d, want 2", got)
			}
			// The second connection is calm: the next stream joins it without a dial.
			if rr2 := open(t, p); rr2.c != rr.c {
				t.Error("a stream was not placed on the calm connection")
			}
			if got := dials.Load(); got != 2 {
				t.Errorf("dials = %d after a third stream, want 2", got)
			}
		})
	}
}

// pinBusy makes c count as busy from now on, whatever it moves: the placement tests below need
// connections that stay busy however slowly a loaded machine runs their bulk transfers.
func pinBusy(c *conn) { c.recvLoad.hot.Store(math.MaxInt64 / 2) }

// TestPoolBusyConnsAreBounded: at most maxBusyConns connections per key are dialed to avoid busy
// ones; past that, new streams share the busy connections, as they do when a dial fails.
func TestPoolBusyConnsAreBounded(t *testing.T) {
	t.Run("limit", func(t *testing.T) {
		p, dials := bulkPool(t, 0)
		seen := map[*conn]bool{}
		for range maxBusyConns {
			s := open(t, p)
			seen[s.c] = true
			pinBusy(s.c)
		}
		if got := dials.Load(); got != maxBusyConns || len(seen) != maxBusyConns {
			t.Fatalf("dials = %d, connections %d with each busy before the next stream, want %d", got, len(seen), maxBusyConns)
		}
		if s := open(t, p); !seen[s.c] {
			t.Error("a stream beyond the limit got a new connection")
		}
		if got := dials.Load(); got != maxBusyConns {
			t.Errorf("dials = %d after a stream beyond the limit, want %d", got, maxBusyConns)
		}
	})
	t.Run("no streams left", func(t *testing.T) {
		// A connection whose streams all ended carries no transfer, however busy its meter
		// still reads: the next stream joins it.
		p, dials := bulkPool(t, 0)
		first := open(t, p)
		c := first.c
		pinBusy(c)
		first.Close()
		testwait.Until(t, "the stream released", 5*time.Second, func() bool { return p.Stats().Streams == 0 })
		if s := open(t, p); s.c != c {
			t.Error("a stream did not join the connection that has no streams")
		}
		if got := dials.Load(); got != 1 {
			t.Errorf("dials = %d, want 1", got)
		}
	})
	t.Run("dial fails", func(t *testing.T) {
		p, dials := bulkPool(t, 1)
		first := open(t, p)
		pinBusy(first.c)
		if s := open(t, p); s.c != first.c {
			t.Error("the stream is not on the busy connection though no other could be dialed")
		}
		if got := dials.Load(); got != 2 {
			t.Errorf("dials = %d, want 2 (one refused)", got)
		}
	})
}

// TestPoolSpreadsStreamsOverCalmConns: streams that open together on a key with several calm
// connections spread over them (the fewest streams first) rather than all joining the first
// one, where bulk transfers among them would share one TCP stream and one read loop.
func TestPoolSpreadsStreamsOverCalmConns(t *testing.T) {
	p, dials := bulkPool(t, 0)
	first := open(t, p)
	pinBusy(first.c)
	second := open(t, p)
	if second.c == first.c {
		t.Fatal("the second stream joined the busy connection")
	}
	first.c.recvLoad.hot.Store(0) // calm again
	first.Close()
	second.Close()
	testwait.Until(t, "the streams released", 5*time.Second, func() bool { return p.Stats().Streams == 0 })

	on := map[*conn]int{}
	for range 8 {
		on[open(t, p).c]++
	}
	if on[first.c] != 4 || on[second.c] != 4 {
		t.Errorf("8 streams held open together: %d on the first connection, %d on the second, want 4 and 4", on[first.c], on[second.c])
	}
	if got := dials.Load(); got != 2 {
		t.Errorf("dials = %d, want 2", got)
	}

	// A stream that ends leaves room where it was: the next one fills it.
	var s *Stream
	for range 2 {
		s = open(t, p)
	}
	s.Close()
	testwait.Until(t, "the stream released", 5*time.Second, func() bool { return p.Stats().Streams == 9 })
	if got := open(t, p).c; got != s.c {
		t.Error("a stream did not join the connection with the fewest streams")
	}
}

// TestLoadMeter pins the meter's arithmetic on a clock of its own.
func TestLoadMeter(t *testing.T) {
	ms := int64(time.Millisecond)
	var m loadMeter
	now := int64(1)
	if m.busy(now) {
		t.Fatal("a new meter is busy")
	}
	for range 15 { // 15 x 16 KiB = 240 KiB in one window: below busyBytes
		m.add(now, 16<<10)
	}
	if m.busy(now) {
		t.Fatal("busy below busyBytes")
	}
	m.add(now+ms, 16<<10) // 256 KiB within 1 ms
	if !m.busy(now + ms) {
		t.Fatal("not busy at busyBytes in one window")
	}
	if !m.busy(now + 20*ms) {
		t.Error("not busy 19 ms after the window that reached busyBytes")
	}
	if m.busy(now + 22*ms) {
		t.Error("still busy 21 ms after the last busy window")
	}
	// The same bytes spread over two windows do not make it busy.
	var slow loadMeter
	for i := range 16 {
		slow.add(int64(i)*ms, 16<<10) // 16 KiB per ms: 160 KiB per window
	}
	if slow.busy(16 * ms) {
		t.Error("busy at 160 KiB per window")
	}
}

// TestUnlockWriteRunsTheNextWriter: releasing the write lock to a waiting writer lets that
// writer run before the releaser goes on. On one P the releaser would otherwise keep running
// while the lock belongs to a goroutine that cannot run (the convoy that made eight streams
// on one connection slower than one stream). The scheduler looks at its global queue first on
// every 61st turn, so a few rounds may go the other way; without the yield none goes this way.
func TestUnlockWriteRunsTheNextWriter(t *testing.T) {
	c := startServer(t, false, Config{}, bulkOrHold).client(t, Config{}).c
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const rounds = 20
	first := 0
	for range rounds {
		if err := c.lockWrite(); err != nil {
			t.Fatal(err)
		}
		var released, waiterFirst atomic.Bool
		done := make(chan error, 1)
		go func() {
			err := c.lockWrite()
			waiterFirst.Store(!released.Load())
			done <- errors.Join(err, c.unlockWrite())
		}()
		for c.writers.Load() < 2 { // the waiter has queued for the lock
			runtime.Gosched()
		}
		if err := c.unlockWrite(); err != nil {
			t.Fatal(err)
		}
		released.Store(true)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if waiterFirst.Load() {
			first++
		}
	}
	if first < rounds*3/4 {
		t.Errorf("the waiting writer ran before the releaser went on in %d of %d rounds, want at least %d", first, rounds, rounds*3/4)
	}
}
