package hbone

import (
	"context"
	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// fixedEcho echoes with a preallocated buffer (io.Copy would be fine too;
// this keeps the server side of the allocation test obviously alloc-free).
var fixedEcho = HandlerFunc(func(s *Stream, req *Request) {
	s.Respond(200)
	buf := make([]byte, 64<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			s.CloseWrite()
			return
		}
	}
})

// TestSteadyStateAllocs: writing and reading back a DATA frame through an
// established stream allocates nothing (WINDOW_UPDATEs included).
func TestSteadyStateAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts are noisy under -short runs")
	}
	ts := startServer(t, false, Config{StreamWindow: 256 << 10, ConnWindow: 1 << 20}, fixedEcho)
	cc := ts.client(t, Config{StreamWindow: 256 << 10, ConnWindow: 1 << 20})
	s := connect(t, cc, "1.1.1.1:1")
	defer s.Close()
	wbuf := make([]byte, 4<<10)
	rbuf := make([]byte, 4<<10)
	roundTrip := func() {
		if _, err := s.Write(wbuf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, rbuf); err != nil {
			t.Fatal(err)
		}
	}
	for range 200 { // warm up pools and buffers past several window updates
		roundTrip()
	}
	allocs := testing.AllocsPerRun(2000, roundTrip)
	// The peer's WINDOW_UPDATE frames are parsed without allocation; the
	// only budget is sync.Pool refills after a GC.
	t.Logf("allocs per round trip: %v", allocs)
	if allocs > 0.05 {
		t.Errorf("allocations per 4 KiB round trip: got %v, want 0", allocs)
	}
}

// TestNoGoroutineLeak opens pools, servers and streams, closes everything
// and checks the goroutine count returns to where it was.
func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		srv := &Server{Handler: echo}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Go(func() { srv.ServeConn(context.Background(), c) })
			}
		})
		p := NewPool(PoolConfig{MaxStreamsPerConn: 3, Dial: func(ctx context.Context, k Key) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", ln.Addr().String())
		}})
		var sw sync.WaitGroup
		for range 10 {
			sw.Go(func() {
				s, err := p.Connect(context.Background(), testKey, &Request{Authority: "a:1"})
				if err != nil {
					t.Error(err)
					return
				}
				s.Write([]byte("hello"))
				s.CloseWrite()
				io.ReadAll(s)
				s.Close()
			})
		}
		sw.Wait()
		// One stream left open on purpose: Close must clean it up.
		s, err := p.Connect(context.Background(), testKey, &Request{Authority: "a:1"})
		if err != nil {
			t.Fatal(err)
		}
		_ = s
		p.Close()
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		wg.Wait()
	}()
	leakcheck.Wait(t, base)
}

func BenchmarkStreamThroughput(b *testing.B) {
	for _, tc := range []struct {
		name                   string
		useTLS, raw, cryptoTLS bool
	}{
		{"tcp", false, false, false},
		{"tls", true, false, false},             // tls/record after the handshake, as the proxy runs
		{"tls-crypto", true, false, true},       // crypto/tls records, with the write buffer
		{"tls-crypto-nowbuf", true, true, true}, // crypto/tls records, one write per record
	} {
		useTLS := tc.useTLS
		b.Run(tc.name, func(b *testing.B) {
			noWriteBuffer, plainTLS = tc.raw, tc.cryptoTLS
			defer func() { noWriteBuffer, plainTLS = false, false }()
			got := make(chan int64, 1)
			h := HandlerFunc(func(s *Stream, req *Request) {
				s.Respond(200)
				n, _ := io.Copy(io.Discard, s)
				got <- n
			})
			ts := startServer(b, useTLS, Config{}, h)
			cc := ts.client(b, Config{})
			s := connect(b, cc, "1.1.1.1:1")
			defer s.Close()
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := s.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			s.CloseWrite()
			if n := <-got; n != int64(b.N*len(buf)) {
				b.Fatalf("server received %d bytes, want %d", n, b.N*len(buf))
			}
		})
	}
}

func BenchmarkConnectRoundTrip(b *testing.B) {
	ts := startServer(b, false, Config{}, hold)
	p := NewPool(PoolConfig{Dial: func(ctx context.Context, k Key) (net.Conn, error) { return ts.dial(ctx) }})
	defer p.Close()
	req := &Request{Authority: "10.0.0.1:80"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		s, err := p.Connect(ctx, testKey, req)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkStreamRoundTripTLS is S4 on one connection pair: a 1-byte
// request and its echo on one stream over tls/record and loopback TCP. Each
// round trip wakes the read loop at both ends once, so it prices the read
// loop's wait for the next frame (with its idle deadline for parking).
func BenchmarkStreamRoundTripTLS(b *testing.B) {
	ts := startServer(b, true, Config{}, echo)
	cc := ts.client(b, Config{})
	s := connect(b, cc, "10.0.0.1:80")
	defer s.Close()
	one := []byte{'x'}
	buf := make([]byte, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf); err != nil {
			b.Fatal(err)
		}
	}
}
