package benchmarks

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/ztunnel-go/ztunnel/hbone"
)

// echoBufs holds the echo handler's buffers, so that a stream's figures are the engine's and
// not a fresh 16 KiB slice per handler call.
var echoBufs = sync.Pool{New: func() any { return new([16 << 10]byte) }}

// echoHandler answers 200 and echoes the stream until EOF.
var echoHandler = hbone.HandlerFunc(func(s *hbone.Stream, _ *hbone.Request) {
	s.Respond(200)
	bp := echoBufs.Get().(*[16 << 10]byte)
	defer echoBufs.Put(bp)
	buf := bp[:]
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

// memPool is an hbone.Pool whose connections are in-memory pipes to an hbone.Server: no
// sockets, no TLS, so the figures are the engine's own cost.
type memPool struct {
	*hbone.Pool
	srv   *hbone.Server
	serve sync.WaitGroup // ServeConn goroutines, one per dialed connection
}

func newMemPool(tb testing.TB, h hbone.Handler) *memPool {
	tb.Helper()
	mp := &memPool{srv: &hbone.Server{Handler: h}}
	mp.Pool = hbone.NewPool(hbone.PoolConfig{Dial: func(ctx context.Context, _ hbone.Key) (net.Conn, error) {
		c, s := net.Pipe()
		mp.serve.Go(func() { mp.srv.ServeConn(context.Background(), s) })
		return c, nil
	}})
	tb.Cleanup(func() {
		mp.Pool.Close()
		mp.srv.Shutdown(context.Background())
		mp.serve.Wait()
	})
	return mp
}

var (
	benchKey = hbone.Key{Source: "spiffe://cluster.local/ns/default/sa/client",
		Expected: "spiffe://cluster.local/ns/default/sa/server", Addr: netip.MustParseAddrPort("10.0.0.2:15008")}
	benchReq = &hbone.Request{Authority: "10.0.0.2:8080"}
)

// BenchmarkHBONERoundTripPooled is one write and the echo read back on a stream of a pooled
// in-memory HBONE connection: DATA frames both ways, flow control, the server's handler.
func BenchmarkHBONERoundTripPooled(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1B", 1}, {"1KiB", 1 << 10}, {"16KiB", 16 << 10}} {
		b.Run(size.name, func(b *testing.B) {
			mp := newMemPool(b, echoHandler)
			s, err := mp.Connect(context.Background(), benchKey, benchReq)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			wbuf, rbuf := make([]byte, size.n), make([]byte, size.n)
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Write(wbuf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(s, rbuf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHBONEStreamPooled is a whole short tunnel on a pooled connection: CONNECT, 200, one
// byte each way, half-close both ways (the S3 connection-rate scenario without sockets).
func BenchmarkHBONEStreamPooled(b *testing.B) {
	mp := newMemPool(b, echoHandler)
	ctx := context.Background()
	buf := make([]byte, 1)
	b.SetBytes(1)
	b.ReportAllocs()
	for b.Loop() {
		s, err := mp.Connect(ctx, benchKey, benchReq)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf); err != nil {
			b.Fatal(err)
		}
		s.CloseWrite()
		if n, err := s.Read(buf); n != 0 || err != io.EOF {
			b.Fatalf("after the echo: %d bytes, %v; want EOF", n, err)
		}
		s.Close()
	}
	if st := mp.Stats(); st.Conns != 1 {
		b.Errorf("pool holds %d connections after sequential streams, want 1", st.Conns)
	}
}

// TestMemPoolEcho keeps the benchmark harness honest: bytes come back intact and the streams
// share one connection.
func TestMemPoolEcho(t *testing.T) {
	mp := newMemPool(t, echoHandler)
	for i := range 3 {
		s, err := mp.Connect(context.Background(), benchKey, benchReq)
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte{byte(i), 'h', 'b', 'o', 'n', 'e'}
		if _, err := s.Write(msg); err != nil {
			t.Fatal(err)
		}
		s.CloseWrite()
		got, err := io.ReadAll(s)
		if err != nil || string(got) != string(msg) {
			t.Fatalf("stream %d echoed %q, %v; want %q", i, got, err, msg)
		}
		s.Close()
	}
	if st := mp.Stats(); st.Conns != 1 {
		t.Errorf("pool holds %d connections, want 1", st.Conns)
	}
}
