package hbone

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// countConn counts the writes that reach the socket under it.
type countConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-acc
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestWriteBufferCoalesces: with a WriteBuffer under the client's
// *tls.Conn, a 64 KiB stream write (five TLS records) reaches the socket in
// one write; without, in one write per record.
func TestWriteBufferCoalesces(t *testing.T) {
	for _, tc := range []struct {
		name     string
		wbuf     bool
		min, max int64
	}{
		{"buffered", true, 1, 1},
		{"direct", false, 5, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan int64, 16)
			h := HandlerFunc(func(s *Stream, req *Request) {
				s.Respond(200)
				buf := make([]byte, 64<<10)
				var total int64
				for {
					n, err := s.Read(buf)
					total += int64(n)
					if n > 0 && total%(64<<10) == 0 {
						got <- total
					}
					if err != nil {
						return
					}
				}
			})
			ts := startServer(t, true, Config{}, h)
			var d net.Dialer
			raw, err := d.Dial("tcp", ts.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			cnt := &countConn{Conn: raw}
			var under net.Conn = cnt
			if tc.wbuf {
				under = NewWriteBuffer(cnt)
			}
			tlc := tls.Client(under, ts.tls)
			if err := tlc.Handshake(); err != nil {
				t.Fatal(err)
			}
			cc, err := NewClientConn(tlc, Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			s := connect(t, cc, "1.1.1.1:1")
			defer s.Close()
			buf := make([]byte, 64<<10)
			// Past crypto/tls's small records at the start of a connection.
			for range 4 {
				if _, err := s.Write(buf); err != nil {
					t.Fatal(err)
				}
				<-got
			}
			before := cnt.writes.Load()
			if _, err := s.Write(buf); err != nil {
				t.Fatal(err)
			}
			<-got
			n := cnt.writes.Load() - before
			if n < tc.min || n > tc.max {
				t.Errorf("socket writes for one 64 KiB stream write: got %d, want %d..%d", n, tc.min, tc.max)
			}
		})
	}
}

// TestWriteBufferCloseNotify: bytes crypto/tls writes outside the engine
// (here the data and the close_notify alert of Close) are flushed, so the
// peer reads everything and a clean EOF.
func TestWriteBufferCloseNotify(t *testing.T) {
	srvCfg, cliCfg := testTLS(t)
	c, s := tcpPair(t)
	wb := NewWriteBuffer(c)
	cli := tls.Client(wb, cliCfg)
	srv := tls.Server(s, srvCfg)
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if findFlusher(cli) == nil {
		t.Fatal("findFlusher: no WriteBuffer found under the *tls.Conn")
	}
	if _, err := cli.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := cli.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(srv)
	if err != nil || string(got) != "hello" {
		t.Errorf("peer read: got %q, %v; want %q, <nil> (close_notify)", got, err, "hello")
	}
}

// TestWriteBufferDeadline: a write deadline in the past makes Flush fail
// with os.ErrDeadlineExceeded; a deadline change first flushes under the
// old one.
func TestWriteBufferDeadline(t *testing.T) {
	c, s := tcpPair(t)
	wb := NewWriteBuffer(c)
	wb.BufferWrites()
	if _, err := wb.Write([]byte("ab")); err != nil {
		t.Fatal(err)
	}
	if err := wb.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ab" {
		t.Fatalf("bytes flushed by SetWriteDeadline: got %q, %v; want %q", buf, err, "ab")
	}
	if _, err := wb.Write([]byte("c")); err != nil {
		t.Fatalf("buffered Write: %v", err)
	}
	if err := wb.Flush(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Flush after the deadline: got %v, want %v", err, os.ErrDeadlineExceeded)
	}
}

// TestWriteBufferOverflow: writes larger than the buffer, and writes that
// do not fit beside waiting bytes, arrive whole and in order.
func TestWriteBufferOverflow(t *testing.T) {
	c, s := tcpPair(t)
	wb := NewWriteBuffer(c)
	wb.BufferWrites()
	sizes := []int{10, wbufSize - 5, 100, 3 * wbufSize, 1, wbufSize}
	total := 0
	for _, n := range sizes {
		total += n
	}
	want := make([]byte, total)
	pattern(want, 0)
	done := make(chan []byte, 1)
	go func() {
		got := make([]byte, total)
		s.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _ := io.ReadFull(s, got)
		done <- got[:n]
	}()
	off := 0
	for _, n := range sizes {
		w, err := wb.Write(want[off : off+n])
		if err != nil || w != n {
			t.Fatalf("Write(%d): got %d, %v", n, w, err)
		}
		off += n
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if len(got) != total || string(got) != string(want) {
		t.Errorf("received %d bytes, want %d identical to what was written", len(got), total)
	}
}

// TestFindFlusherSkipsHandshake: a *tls.Conn whose handshake has not run
// keeps writing through (buffering would stall the handshake).
func TestFindFlusherSkipsHandshake(t *testing.T) {
	c, _ := tcpPair(t)
	wb := NewWriteBuffer(c)
	_, cliCfg := testTLS(t)
	if f := findFlusher(tls.Client(wb, cliCfg)); f != nil {
		t.Errorf("findFlusher before the handshake: got %T, want nil", f)
	}
	if wb.on {
		t.Error("buffering turned on before the handshake")
	}
	if f := findFlusher(wb); f == nil {
		t.Error("findFlusher on the WriteBuffer itself: got nil")
	}
}

// TestWriteBufferAllocs: a buffered write and its flush allocate nothing
// (the buffer comes from a pool), nor does an overflowing writev.
func TestWriteBufferAllocs(t *testing.T) {
	c, s := tcpPair(t)
	go io.Copy(io.Discard, s)
	wb := NewWriteBuffer(c)
	wb.BufferWrites()
	small := make([]byte, 1<<10)
	big := make([]byte, wbufSize)
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"write+flush", func() { wb.Write(small); wb.Write(small); wb.Flush() }},
		{"overflow", func() { wb.Write(small); wb.Write(big); wb.Flush() }},
	} {
		tc.fn()
		if got := testing.AllocsPerRun(200, tc.fn); got > 0.05 {
			t.Errorf("%s: got %v allocations, want 0", tc.name, got)
		}
	}
}
