package hbone

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// TestDirectReadIntegrity sends a pattern in writes of random sizes while
// the peer reads with random buffer sizes, so DATA lands both straight in a
// waiting reader's buffer and in the receive buffer, in every interleaving;
// the bytes must arrive intact and in order, and the flow-control windows
// (small here) must keep being returned whichever way the bytes went.
func TestDirectReadIntegrity(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tls    bool
		window uint32
	}{
		{"tcp-small-window", false, 64 << 10},
		{"tls-small-window", true, 64 << 10},
		{"tls-default-window", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const total = 8 << 20
			cfg := Config{StreamWindow: tc.window, ConnWindow: tc.window}
			got := make(chan error, 1)
			h := HandlerFunc(func(s *Stream, req *Request) {
				s.Respond(200)
				rng := rand.New(rand.NewPCG(1, 2))
				want := make([]byte, 256<<10)
				buf := make([]byte, 256<<10)
				off := 0
				for {
					n, err := s.Read(buf[:1+rng.IntN(len(buf))])
					pattern(want[:n], off)
					if !bytes.Equal(buf[:n], want[:n]) {
						got <- errors.New("payload corrupted")
						return
					}
					off += n
					if err == io.EOF {
						if off != total {
							got <- errors.New("short stream")
							return
						}
						got <- nil
						return
					}
					if err != nil {
						got <- err
						return
					}
				}
			})
			ts := startServer(t, tc.tls, cfg, h)
			cc := ts.client(t, cfg)
			s := connect(t, cc, "1.1.1.1:1")
			defer s.Close()
			rng := rand.New(rand.NewPCG(3, 4))
			buf := make([]byte, 200<<10)
			for off := 0; off < total; {
				n := min(1+rng.IntN(len(buf)), total-off)
				pattern(buf[:n], off)
				if _, err := s.Write(buf[:n]); err != nil {
					t.Fatal(err)
				}
				off += n
			}
			if err := s.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-got:
				if err != nil {
					t.Fatalf("server side: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("transfer stalled")
			}
		})
	}
}

// TestLentBufferNotTouchedAfterTimeout: a Read that lent its buffer to the
// read loop and then timed out must get its buffer back untouched by later
// DATA; the bytes go to the next Read.
func TestLentBufferNotTouchedAfterTimeout(t *testing.T) {
	release := make(chan struct{})
	h := HandlerFunc(func(s *Stream, req *Request) {
		s.Respond(200)
		<-release
		s.Write([]byte("late bytes"))
		io.Copy(io.Discard, s)
	})
	ts := startServer(t, false, Config{}, h)
	cc := ts.client(t, Config{})
	s := connect(t, cc, "1.1.1.1:1")
	defer s.Close()

	first := make([]byte, 64)
	s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := s.Read(first)
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("first Read: got (%d, %v), want (0, deadline exceeded)", n, err)
	}
	close(release)
	s.SetReadDeadline(time.Time{})
	second := make([]byte, 64)
	n, err = io.ReadAtLeast(s, second, len("late bytes"))
	if err != nil || string(second[:n]) != "late bytes" {
		t.Fatalf("second Read: got (%q, %v), want %q", second[:n], err, "late bytes")
	}
	if !bytes.Equal(first, make([]byte, 64)) {
		t.Errorf("the timed-out Read's buffer was written after it returned: %q", first)
	}
}

// TestReadDeadlineWakesBlockedReader: a reader that blocked before any
// deadline existed (the lazy deadline's nil channel) is woken by a deadline
// set afterwards, in the future and in the past.
func TestReadDeadlineWakesBlockedReader(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   time.Duration
	}{{"past", -time.Second}, {"future", 30 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, false, Config{}, hold)
			cc := ts.client(t, Config{})
			s := connect(t, cc, "1.1.1.1:1")
			defer s.Close()
			done := make(chan error, 1)
			go func() { // owned by the test: waited for below
				_, err := s.Read(make([]byte, 8))
				done <- err
			}()
			time.Sleep(20 * time.Millisecond) // let it block (a race here only weakens the test)
			s.SetReadDeadline(time.Now().Add(tc.at))
			select {
			case err := <-done:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("got %v, want deadline exceeded", err)
				}
			case <-time.After(5 * time.Second):
				s.Close()
				<-done
				t.Fatal("blocked Read not woken by the deadline")
			}
		})
	}
}

// TestWriteLockFIFO: a writer that releases the write lock and asks for it
// again queues behind a writer already waiting (a bulk stream cannot barge
// ahead of a small one).
func TestWriteLockFIFO(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	go io.Copy(io.Discard, b) // drains the pipe; ends when b is closed
	c := newConn(a, Config{}, true, nil)
	defer a.Close()

	var order []string
	var mu sync.Mutex
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }

	c.lockWrite() // the "bulk" writer holds the lock
	waiting := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		close(waiting)
		c.lockWrite()
		note("small")
		c.unlockWrite()
	})
	<-waiting
	// Wait until the small writer is queued on the lock.
	for c.writers.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond)
	c.unlockWrite()
	c.lockWrite() // the bulk writer comes straight back
	note("bulk")
	c.unlockWrite()
	wg.Wait()
	if len(order) != 2 || order[0] != "small" {
		t.Errorf("lock order: got %v, want [small bulk]", order)
	}
}

// TestStreamOpenAllocs keeps the cost of a stream (CONNECT, 200, RST on
// close, both ends in this process) within its budget: 42 allocations
// before the lazy deadline and window channels, 38 after, 35 before the
// header blocks were decoded in place (headers.go: no MetaHeadersFrame,
// field list, http.Header map or HEADERS frame per block), 14 after.
func TestStreamOpenAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts are noisy under -short runs")
	}
	ts := startServer(t, false, Config{}, hold)
	cc := ts.client(t, Config{})
	req := &Request{Authority: "10.0.0.1:80"}
	open := func() {
		s, err := cc.Connect(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	for range 50 {
		open()
	}
	allocs := testing.AllocsPerRun(500, open)
	t.Logf("allocations per stream: %v", allocs)
	if allocs > 16.5 {
		t.Errorf("allocations per stream open/close: got %v, want <= 16", allocs)
	}
}

// TestClientConnPeerGone: a client connection whose peer hung up before it started ends
// cleanly: its first control write fails at once and ends the connection while NewClientConn
// is still starting it (the race detector caught the keepalive timer armed after the control
// writer had started, and read by the failure).
func TestClientConnPeerGone(t *testing.T) {
	for range 20 {
		a, b := net.Pipe() // b stays open: reads wait, only writes fail
		cc, err := NewClientConn(failingWriter{a}, Config{})
		if err != nil {
			t.Fatal(err)
		}
		<-cc.c.done
		if !errors.Is(cc.c.err, errPeerGone) {
			t.Fatalf("connection ended with %v, want its write's error", cc.c.err)
		}
		cc.Close()
		b.Close()
	}
}

var errPeerGone = errors.New("peer gone")

// failingWriter is a connection whose writes fail.
type failingWriter struct{ net.Conn }

func (failingWriter) Write([]byte) (int, error) { return 0, errPeerGone }
