package hbone

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/testwait"
)

func connect(t testing.TB, cc *ClientConn, authority string) *Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := cc.Connect(ctx, &Request{Method: "CONNECT", Authority: authority})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	return s
}

// sendAndReceive writes size pattern bytes on s, half-closes, and returns
// the sha256 of what it read back until EOF.
func sendAndReceive(t *testing.T, s *Stream, size int) (sent, got [32]byte, n int64) {
	t.Helper()
	errc := make(chan error, 1)
	hs := sha256.New()
	go func() {
		buf := make([]byte, 100_000)
		for off := 0; off < size; {
			k := min(len(buf), size-off)
			pattern(buf[:k], off)
			hs.Write(buf[:k])
			if _, err := s.Write(buf[:k]); err != nil {
				errc <- err
				return
			}
			off += k
		}
		errc <- s.CloseWrite()
	}()
	hr := sha256.New()
	n, err := io.Copy(hr, s)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	copy(sent[:], hs.Sum(nil))
	copy(got[:], hr.Sum(nil))
	return sent, got, n
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		tls  bool
		size int
		cfg  Config
	}{
		{"tls 10MiB", true, 10 << 20, Config{}},
		{"tcp 10MiB", false, 10 << 20, Config{}},
		{"tls 64MiB small windows", true, 64 << 20, Config{StreamWindow: 64 << 10, ConnWindow: 64 << 10, MaxFrameSize: 16 << 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, tt.tls, tt.cfg, echo)
			cc := ts.client(t, tt.cfg)
			s := connect(t, cc, "10.0.0.1:80")
			defer s.Close()
			sent, got, n := sendAndReceive(t, s, tt.size)
			if n != int64(tt.size) || sent != got {
				t.Fatalf("echo: got %d bytes (sha %x), want %d (sha %x)", n, got[:4], tt.size, sent[:4])
			}
		})
	}
}

func TestHalfClose(t *testing.T) {
	t.Run("client closes write first", func(t *testing.T) {
		got := make(chan string, 1)
		h := HandlerFunc(func(s *Stream, req *Request) {
			s.Respond(200)
			b, err := io.ReadAll(s) // ends with the client's END_STREAM
			if err != nil {
				got <- "read error: " + err.Error()
				return
			}
			got <- string(b)
			s.Write([]byte("reply after EOF"))
			s.CloseWrite()
		})
		cc, _ := pipePair(t, Config{}, Config{}, h)
		s := connect(t, cc, "1.2.3.4:80")
		defer s.Close()
		if _, err := s.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		if err := s.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write([]byte("x")); !errors.Is(err, errWriteClosed) {
			t.Errorf("Write after CloseWrite: got %v, want errWriteClosed", err)
		}
		if g := <-got; g != "hello" {
			t.Errorf("server read %q, want %q", g, "hello")
		}
		b, err := io.ReadAll(s)
		if err != nil || string(b) != "reply after EOF" {
			t.Errorf("client read %q, %v; want %q, nil", b, err, "reply after EOF")
		}
	})
	t.Run("server closes write first", func(t *testing.T) {
		got := make(chan string, 1)
		h := HandlerFunc(func(s *Stream, req *Request) {
			s.Respond(200)
			s.Write([]byte("banner"))
			s.CloseWrite()
			b, err := io.ReadAll(s)
			if err != nil {
				got <- "read error: " + err.Error()
				return
			}
			got <- string(b)
		})
		cc, _ := pipePair(t, Config{}, Config{}, h)
		s := connect(t, cc, "1.2.3.4:80")
		defer s.Close()
		b, err := io.ReadAll(s)
		if err != nil || string(b) != "banner" {
			t.Fatalf("client read %q, %v; want %q, nil", b, err, "banner")
		}
		if _, err := s.Write([]byte("still writing")); err != nil {
			t.Fatalf("write after peer EOF: %v", err)
		}
		s.CloseWrite()
		if g := <-got; g != "still writing" {
			t.Errorf("server read %q, want %q", g, "still writing")
		}
	})
}

func TestStatusCodes(t *testing.T) {
	h := HandlerFunc(func(s *Stream, req *Request) {
		switch req.Authority {
		case "deny:1":
			s.Reject(401)
		case "unknown:1":
			s.Reject(503)
		case "silent:1":
			// returns without answering: 500
		default:
			s.Respond(200)
		}
	})
	tests := []struct {
		req  Request
		want int
	}{
		{Request{Method: "CONNECT", Authority: "deny:1"}, 401},
		{Request{Method: "CONNECT", Authority: "unknown:1"}, 503},
		{Request{Method: "CONNECT", Authority: "silent:1"}, 500},
		{Request{Method: "GET", Authority: "ok:1"}, 400},
		{Request{Method: "CONNECT", Authority: ""}, 400},
		{Request{Method: "CONNECT", Authority: "ok:1"}, 200},
	}
	cc, _ := pipePair(t, Config{}, Config{}, h)
	for _, tt := range tests {
		s, err := cc.Connect(context.Background(), &tt.req)
		got := 0
		var se *StatusError
		switch {
		case err == nil:
			got = 200
			s.Close()
		case errors.As(err, &se):
			got = se.Code
		default:
			t.Fatalf("%+v: unexpected error %v", tt.req, err)
		}
		if got != tt.want {
			t.Errorf("%s %q: got status %d, want %d", tt.req.Method, tt.req.Authority, got, tt.want)
		}
	}
	// All those streams are gone on both sides.
	deadline := time.Now().Add(2 * time.Second)
	for cc.ActiveStreams() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := cc.ActiveStreams(); n != 0 {
		t.Errorf("ActiveStreams after all streams ended: got %d, want 0", n)
	}
}

func TestHeadersReachHandler(t *testing.T) {
	got := make(chan *Request, 1)
	h := HandlerFunc(func(s *Stream, req *Request) {
		got <- req
		s.Reject(503)
	})
	cc, _ := pipePair(t, Config{}, Config{}, h)
	req := &Request{Authority: "10.1.2.3:8080", Header: Header{
		{"Forwarded", `for="10.0.0.9:1234"`},
		{"Connection", "close"}, // connection-specific: not sent
		{"baggage", "k8s.namespace.name=default"},
		{":path", "/"}, // not a pseudo-header of the caller's: not sent
	}}
	cc.Connect(context.Background(), req)
	r := <-got
	want := Header{{"forwarded", `for="10.0.0.9:1234"`}, {"baggage", "k8s.namespace.name=default"}}
	if r.Method != "CONNECT" || r.Authority != "10.1.2.3:8080" || !slices.Equal(r.Header, want) {
		t.Errorf("handler got %+v, want header %q", r, want)
	}
	if r.Header.Get("Forwarded") != `for="10.0.0.9:1234"` || r.Header.Get("missing") != "" {
		t.Errorf("Header.Get: %q, %q", r.Header.Get("Forwarded"), r.Header.Get("missing"))
	}
}

// TestResponseFields: a server's RespondWith fields reach a client whose Request asked for them
// (Response), on 200 and on a refusal alike, and leave out what a Request would; a request that
// did not ask, or that used Open, gets none, and the connection keeps no entry afterwards.
func TestResponseFields(t *testing.T) {
	h := HandlerFunc(func(s *Stream, req *Request) {
		status := 200
		if req.Authority == "deny:1" {
			status = 401
		}
		s.RespondWith(status, Header{
			{"Baggage", "k8s.namespace.name=ns,service.name=app"},
			{"connection", "close"}, // connection-specific: not sent
			{":path", "/"},          // not a pseudo-header of a response: not sent
		})
		if status == 200 {
			io.Copy(io.Discard, s)
		}
	})
	cc, _ := pipePair(t, Config{}, Config{}, h)
	want := Header{{"baggage", "k8s.namespace.name=ns,service.name=app"}}

	var got Header
	s, err := cc.Connect(context.Background(), &Request{Authority: "ok:1", Response: &got})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !slices.Equal(got, want) {
		t.Errorf("200: Response = %q, want %q", got, want)
	}

	got = nil
	var se *StatusError
	if _, err := cc.Connect(context.Background(), &Request{Authority: "deny:1", Response: &got}); !errors.As(err, &se) || se.Code != 401 {
		t.Fatalf("deny: err = %v, want status 401", err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("401: Response = %q, want %q", got, want)
	}

	// Open does not wait for the answer: it leaves Response alone.
	got = Header{{"untouched", "1"}}
	s, err = cc.Open(context.Background(), &Request{Authority: "ok:1", Response: &got})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	s.CloseWrite()
	s.Read(make([]byte, 1)) // waits for the answer
	s.Close()
	if len(got) != 1 || got[0].Name != "untouched" {
		t.Errorf("Open: Response = %q, want it untouched", got)
	}

	cc.c.mu.Lock()
	n := len(cc.c.answers)
	cc.c.mu.Unlock()
	if n != 0 || cc.c.wantAnswers.Load() != 0 {
		t.Errorf("after the requests: %d answers awaited (count %d), want none", n, cc.c.wantAnswers.Load())
	}
}

// stalledReceiver opens a stream whose server end does not read until
// release is called (also at the test's end); both ends use a window-byte
// stream window.
func stalledReceiver(t *testing.T, window uint32) (s, srv *Stream, release func()) {
	t.Helper()
	stalled := make(chan *Stream, 1)
	gate := make(chan struct{})
	h := HandlerFunc(func(s *Stream, req *Request) {
		s.Respond(200)
		stalled <- s
		<-gate // never reads until released
		io.Copy(io.Discard, s)
	})
	cfg := Config{StreamWindow: window, ConnWindow: 1 << 20}
	cc, _ := pipePair(t, cfg, cfg, h)
	release = sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // before pipePair's: its Server waits for the Handler
	s = connect(t, cc, "1.1.1.1:1")
	t.Cleanup(func() { s.Close() })
	return s, <-stalled, release
}

func TestWriterBlocksOnWindow(t *testing.T) {
	const window = 64 << 10
	s, srvStream, release := stalledReceiver(t, window)
	s.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 8<<10)
	total := 0
	var err error
	for err == nil {
		var n int
		n, err = s.Write(buf)
		total += n
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write error: got %v, want deadline exceeded", err)
	}
	if total != window {
		t.Errorf("bytes accepted before blocking: got %d, want %d (the stream window)", total, window)
	}
	srvStream.mu.Lock()
	buffered := srvStream.recv.len()
	srvStream.mu.Unlock()
	if buffered > window {
		t.Errorf("receiver buffered %d bytes, more than the %d window", buffered, window)
	}
	release()
	s.SetWriteDeadline(time.Time{})
	if _, err := s.Write(bytes.Repeat([]byte("x"), 3*window)); err != nil {
		t.Fatalf("Write after reader resumed: %v", err)
	}
}

// TestWriteDeadlineWakesBlockedWriters: writers already blocked when a write
// deadline is first set (one on the exhausted window, one waiting for the
// write side behind it) both see it, and the write side is free afterwards.
func TestWriteDeadlineWakesBlockedWriters(t *testing.T) {
	const window = 64 << 10
	s, _, release := stalledReceiver(t, window)
	errs := make(chan error, 2)
	go func() { // blocks on the window once it has sent window bytes
		_, err := s.Write(make([]byte, 2*window))
		errs <- err
	}()
	testwait.Until(t, "the first writer to hold the write side", 10*time.Second, func() bool { return s.has(streamWBusy) })
	go func() { // blocks behind the first writer
		_, err := s.Write([]byte("second"))
		errs <- err
	}()
	testwait.Until(t, "the second writer to wait", 10*time.Second, func() bool { return s.wwaiters.Load() == 1 })
	s.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("blocked Write: %v, want the deadline", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a blocked writer did not see the deadline set after it blocked")
		}
	}
	release()
	s.SetWriteDeadline(time.Time{})
	if _, err := s.Write([]byte("after")); err != nil {
		t.Fatalf("Write after the deadline was cleared: %v", err)
	}
}

// TestServeContextEnds: a connection served with a context that ends is closed when it ends,
// and ServeConn says why. (The proxy serves with a context that never ends, for which Serve
// registers nothing.)
func TestServeContextEnds(t *testing.T) {
	c1, c2 := net.Pipe()
	srv := &Server{Handler: echo}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- srv.ServeConn(ctx, c2) }()
	cc, err := NewClientConn(c1, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	echoOK(t, cc)
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("ServeConn = %v, want the context's end", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeConn still serving 10 s after its context ended")
	}
	select {
	case <-cc.c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the client's connection is still open after the server's context ended")
	}
}
