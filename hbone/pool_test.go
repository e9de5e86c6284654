package hbone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
)

// hold is a Handler that opens the tunnel and keeps it until the client
// ends it.
var hold = HandlerFunc(func(s *Stream, req *Request) {
	s.Respond(200)
	io.Copy(io.Discard, s)
})

var testKey = Key{Source: "spiffe://td/ns/a/sa/a", Expected: "spiffe://td/ns/b/sa/b", Addr: netip.MustParseAddrPort("10.0.0.2:15008")}

func TestPoolStreamsPerConn(t *testing.T) {
	tests := []struct {
		maxStreams int
		streams    int
		wantConns  int
	}{
		{maxStreams: 100, streams: 50, wantConns: 1},
		{maxStreams: 10, streams: 50, wantConns: 5},
		{maxStreams: 0, streams: 100, wantConns: 1}, // default 100
	}
	for _, tt := range tests {
		ts := startServer(t, false, Config{}, hold)
		var dials atomic.Int32
		p := NewPool(PoolConfig{
			MaxStreamsPerConn: tt.maxStreams,
			Dial: func(ctx context.Context, k Key) (net.Conn, error) {
				dials.Add(1)
				return ts.dial(ctx)
			},
		})
		streams := make([]*Stream, tt.streams)
		var wg sync.WaitGroup
		for i := range streams {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				s, err := p.Connect(ctx, testKey, &Request{Authority: "10.0.0.2:80"})
				if err != nil {
					t.Errorf("Connect: %v", err)
					return
				}
				streams[i] = s
			})
		}
		wg.Wait()
		if got := int(dials.Load()); got != tt.wantConns {
			t.Errorf("max %d, %d streams: dials got %d, want %d", tt.maxStreams, tt.streams, got, tt.wantConns)
		}
		if got, want := p.Stats(), (PoolStats{Conns: tt.wantConns, Streams: tt.streams}); got != want {
			t.Errorf("max %d: Stats got %+v, want %+v", tt.maxStreams, got, want)
		}
		for _, s := range streams {
			if s != nil {
				s.Close()
			}
		}
		if got := p.Stats().Streams; got != 0 {
			t.Errorf("Stats().Streams after closing all: got %d, want 0", got)
		}
		p.Close()
		if got := p.Stats(); got != (PoolStats{}) {
			t.Errorf("Stats after Close: got %+v, want zero", got)
		}
	}
}

func TestPoolOneDialInFlight(t *testing.T) {
	ts := startServer(t, false, Config{}, hold)
	var dials, inflight, maxInflight atomic.Int32
	started := make(chan struct{}, 10)
	unblock := make(chan struct{})
	p := NewPool(PoolConfig{Dial: func(ctx context.Context, k Key) (net.Conn, error) {
		dials.Add(1)
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			m := maxInflight.Load()
			if n <= m || maxInflight.CompareAndSwap(m, n) {
				break
			}
		}
		started <- struct{}{}
		<-unblock
		return ts.dial(ctx)
	}})
	defer p.Close()
	const callers = 30
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range callers {
		wg.Go(func() {
			s, err := p.Connect(context.Background(), testKey, &Request{Authority: "10.0.0.2:80"})
			if err != nil {
				t.Errorf("Connect: %v", err)
				return
			}
			ok.Add(1)
			s.Close()
		})
	}
	<-started
	time.Sleep(100 * time.Millisecond) // let every caller pile up behind the dial
	close(unblock)
	wg.Wait()
	if d, m := dials.Load(), maxInflight.Load(); d != 1 || m != 1 {
		t.Errorf("dials: got %d (max %d in flight), want 1 (1)", d, m)
	}
	if ok.Load() != callers {
		t.Errorf("successful Connects: got %d, want %d", ok.Load(), callers)
	}
}

func TestPoolDialErrorSharedAndRetried(t *testing.T) {
	ts := startServer(t, false, Config{}, hold)
	var dials atomic.Int32
	fail := errors.New("dial refused")
	p := NewPool(PoolConfig{Dial: func(ctx context.Context, k Key) (net.Conn, error) {
		if dials.Add(1) == 1 {
			return nil, fail
		}
		return ts.dial(ctx)
	}})
	defer p.Close()
	if _, err := p.Connect(context.Background(), testKey, &Request{Authority: "a:1"}); !errors.Is(err, fail) {
		t.Fatalf("first Connect: got %v, want the dial error", err)
	}
	s, err := p.Connect(context.Background(), testKey, &Request{Authority: "a:1"})
	if err != nil {
		t.Fatalf("second Connect dials again: %v", err)
	}
	s.Close()
}

func TestPoolReplacesConnAfterGoAway(t *testing.T) {
	ts := startServer(t, false, Config{}, hold)
	var dials atomic.Int32
	p := NewPool(PoolConfig{Dial: func(ctx context.Context, k Key) (net.Conn, error) {
		dials.Add(1)
		return ts.dial(ctx)
	}})
	defer p.Close()
	s1, err := p.Connect(context.Background(), testKey, &Request{Authority: "a:1"})
	if err != nil {
		t.Fatal(err)
	}
	// Drain the server side: the open stream survives, the pool dials anew.
	ts.srv.mu.Lock()
	conns := ts.srv.connsLocked()
	ts.srv.mu.Unlock()
	for _, c := range conns {
		c.goAway()
	}
	time.Sleep(50 * time.Millisecond)
	s2, err := p.Connect(context.Background(), testKey, &Request{Authority: "a:1"})
	if err != nil {
		t.Fatalf("Connect after GOAWAY: %v", err)
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("dials: got %d, want 2", n)
	}
	if _, err := s1.Write([]byte("still alive")); err != nil {
		t.Errorf("old stream after GOAWAY: %v", err)
	}
	s1.Close()
	s2.Close()
}

// TestPoolIdleRelease uses a fake clock: the connection stays while idle
// for less than IdleTimeout and is closed after.
func TestPoolIdleRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &Server{Handler: hold}
		var wg sync.WaitGroup
		var dials atomic.Int32
		p := NewPool(PoolConfig{
			IdleTimeout: time.Minute,
			Dial: func(ctx context.Context, k Key) (net.Conn, error) {
				dials.Add(1)
				a, b := net.Pipe()
				wg.Go(func() { srv.ServeConn(context.Background(), b) })
				return a, nil
			},
		})
		use := func() {
			s, err := p.Connect(context.Background(), testKey, &Request{Authority: "a:1"})
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			synctest.Wait()
		}
		use()
		time.Sleep(50 * time.Second)
		use() // reuses the connection and restarts the idle clock
		time.Sleep(50 * time.Second)
		synctest.Wait()
		if got := p.Stats(); got.Conns != 1 || dials.Load() != 1 {
			t.Fatalf("before IdleTimeout: Stats %+v, dials %d; want 1 conn, 1 dial", got, dials.Load())
		}
		time.Sleep(11 * time.Second)
		synctest.Wait()
		if got := p.Stats(); got.Conns != 0 {
			t.Fatalf("after IdleTimeout: Stats %+v, want 0 conns", got)
		}
		p.Close()
		srv.Shutdown(context.Background())
		wg.Wait()
	})
}

// TestKeepaliveDropsSilentPeer: a peer that completes the preface and then
// never answers anything is dropped after PingTimeout.
func TestKeepaliveDropsSilentPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		go func() {
			pre := make([]byte, len("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
			io.ReadFull(b, pre)
			b.Write([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0}) // empty SETTINGS
			io.Copy(io.Discard, b)                     // then silence
		}()
		cc, _ := NewClientConn(a, Config{PingInterval: time.Second, PingTimeout: 5 * time.Second})
		start := time.Now()
		<-cc.Done()
		if got := time.Since(start); got < 5*time.Second || got > 6*time.Second {
			t.Errorf("dropped after %v, want about 5s", got)
		}
		if err := cc.Err(); !errors.Is(err, ErrPingTimeout) {
			t.Errorf("Err: got %v, want ErrPingTimeout", err)
		}
		cc.Close()
		b.Close()
	})
}

// TestKeepaliveKeepsLivePeer: a peer that answers PINGs keeps the
// connection past PingTimeout.
func TestKeepaliveKeepsLivePeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{PingInterval: time.Second, PingTimeout: 3 * time.Second}
		a, b := net.Pipe()
		srv := &Server{Config: Config{PingInterval: time.Hour, PingTimeout: time.Hour}, Handler: hold}
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeConn(context.Background(), b)
		}()
		cc, _ := NewClientConn(a, cfg)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if err := cc.Err(); err != nil {
			t.Fatalf("connection to a live peer ended: %v", err)
		}
		cc.Close()
		<-done
	})
}

// TestPoolIdleConnsHoldNoGoroutine: pooled connections over TLS and TCP to
// several keys, idle after their streams, hold no goroutine at either end
// (the pool keeps a timer and an end hook per connection, not a watcher).
// A connection the peer ends leaves the pool by its end hook, and Close
// ends the rest at both ends.
func TestPoolIdleConnsHoldNoGoroutine(t *testing.T) {
	ts := startServer(t, true, Config{}, echo)
	p := NewPool(PoolConfig{Dial: func(ctx context.Context, k Key) (net.Conn, error) { return ts.dial(ctx) }})
	base := leakcheck.Baseline()
	const keys = 5
	for i := range keys {
		k := testKey
		k.Source = fmt.Sprintf("spiffe://td/ns/a/sa/k%d", i)
		s, err := p.Connect(context.Background(), k, &Request{Authority: "10.0.0.1:80"})
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte("x"))
		io.ReadFull(s, make([]byte, 1))
		s.CloseWrite()
		io.Copy(io.Discard, s)
		s.Close()
	}
	// A stream leaves the pool when both ends are done with it, which
	// may be just after Close returns.
	testwait.Until(t, "the streams to leave the pool", 10*time.Second, func() bool {
		return p.Stats() == PoolStats{Conns: keys}
	})
	// The idle pooled connections run no goroutine: no more than before them (Wait lists any).
	leakcheck.Wait(t, base)

	// The server ends one connection: the pool forgets it without a watcher.
	ts.srv.mu.Lock()
	var victim *conn
	for c := range ts.srv.conns {
		victim = c
		break
	}
	ts.srv.mu.Unlock()
	victim.fail(errors.New("test: server drops the connection"))
	testwait.Until(t, "the pool to drop the connection the peer closed", 10*time.Second, func() bool {
		return p.Stats().Conns == keys-1
	})

	p.Close()
	leakcheck.Wait(t, base)
	ts.waitConnsEnded(t)
}

// TestOpenBy: an Open bounded by a deadline value works like Open with a
// context, makes no context or timer on a pooled connection with room
// (three allocations fewer than Open with context.WithDeadline), and is
// bounded by its deadline when it must wait for a dial that hangs, whose
// context carries the same deadline.
func TestOpenBy(t *testing.T) {
	t.Run("pooled connection", func(t *testing.T) {
		if testing.Short() {
			t.Skip("allocation counts are noisy under -short runs")
		}
		ts := startServer(t, false, Config{}, hold)
		p := NewPool(PoolConfig{Dial: func(ctx context.Context, k Key) (net.Conn, error) { return ts.dial(ctx) }})
		defer p.Close()
		req := &Request{Authority: "10.0.0.1:80"}
		openBy := func() {
			s, err := p.OpenBy(time.Now().Add(10*time.Second), testKey, req)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
		}
		open := func() {
			ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(10*time.Second))
			s, err := p.Open(ctx, testKey, req)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
		}
		for range 50 {
			openBy()
			open()
		}
		// The least of several counts: a collection in the middle of one empties
		// sync.Pools, and the race detector drops pooled items at random. On a loaded
		// host (CI runs the packages in parallel) every run of a round can count one
		// more: CI once saw OpenBy at 3 in all five rounds, where an idle machine
		// counts 2. So up to 20 rounds are taken while the counts do not yet show
		// the difference; a real regression fails all of them.
		by, withCtx := math.Inf(1), math.Inf(1)
		for i := 0; i < 5 || (i < 20 && by > withCtx-2.5); i++ {
			by = min(by, testing.AllocsPerRun(100, openBy))
			withCtx = min(withCtx, testing.AllocsPerRun(100, open))
		}
		t.Logf("allocations per stream: OpenBy %v, Open with a context %v", by, withCtx)
		if by > withCtx-2.5 {
			t.Errorf("OpenBy: %v allocations, want at least 3 fewer than Open with a context (%v)", by, withCtx)
		}
		if _, err := p.OpenBy(time.Now().Add(-time.Second), testKey, req); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("OpenBy past its deadline: got %v, want DeadlineExceeded", err)
		}
	})
	t.Run("dial hangs", func(t *testing.T) {
		deadline := time.Now().Add(200 * time.Millisecond)
		dialed := make(chan time.Time, 1)
		p := NewPool(PoolConfig{Dial: func(ctx context.Context, k Key) (net.Conn, error) {
			dl, _ := ctx.Deadline()
			dialed <- dl
			<-ctx.Done()
			return nil, ctx.Err()
		}})
		defer p.Close()
		_, err := p.OpenBy(deadline, testKey, &Request{Authority: "10.0.0.1:80"})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("OpenBy with a hanging dial: got %v, want DeadlineExceeded", err)
		}
		if dl := <-dialed; !dl.Equal(deadline) {
			t.Errorf("dial's deadline: got %v, want %v", dl, deadline)
		}
	})
}
