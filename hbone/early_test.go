package hbone

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// TestEarlyData checks that Request.Early reaches the server before it answers: the handler
// reads the early bytes first and only then answers 200. Without early data the client would
// wait for the answer and the handler for the bytes, and the handler gives up after 3 s.
func TestEarlyData(t *testing.T) {
	tests := []struct {
		name string
		size int
		cfg  Config // the server's: its windows bound what goes with the request
	}{
		{"one frame", 11, Config{}},
		// 16 KiB go with the request (the peer's frame size, before its SETTINGS arrive)
		// and the rest after the answer: the handler answers as soon as the first bytes
		// arrive.
		{"beyond one frame", 100 << 10, Config{StreamWindow: 64 << 10, ConnWindow: 64 << 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			early := make([]byte, tt.size)
			pattern(early, 0)
			ts := startServer(t, true, tt.cfg, readThenEcho(1))
			cc := ts.client(t, Config{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := cc.Connect(ctx, &Request{Authority: "10.0.0.1:80", Early: early})
			if err != nil {
				t.Fatalf("Connect with early data: %v", err)
			}
			defer s.Close()
			s.SetDeadline(time.Now().Add(10 * time.Second))
			if err := s.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(s)
			if err != nil {
				t.Fatalf("read back: %v", err)
			}
			if !bytes.Equal(got, early) {
				t.Fatalf("echoed %d bytes, want the %d early bytes in order", len(got), len(early))
			}
		})
	}
}

// readThenEcho is a Handler that reads n bytes before it answers (rejecting with 503 when
// they do not come within 3 s), then answers 200, sends them back and echoes until EOF.
func readThenEcho(n int) Handler {
	return HandlerFunc(func(s *Stream, req *Request) {
		s.SetReadDeadline(time.Now().Add(3 * time.Second))
		first := make([]byte, n)
		if _, err := io.ReadFull(s, first); err != nil {
			s.Reject(503) // the bytes did not come before the answer
			return
		}
		s.SetReadDeadline(time.Time{})
		if err := s.Respond(200); err != nil {
			return
		}
		s.Write(first)
		echoBack(s)
	})
}

// TestEarlyDataRejected checks that early data sent to a server that refuses the stream is
// dropped without losing connection window: after more refused early bytes than the
// connection's window holds, the connection still carries a stream.
func TestEarlyDataRejected(t *testing.T) {
	h := HandlerFunc(func(s *Stream, req *Request) {
		if req.Authority == "deny:1" {
			s.Reject(401)
			return
		}
		echo(s, req)
	})
	cfg := Config{StreamWindow: 64 << 10, ConnWindow: 64 << 10}
	ts := startServer(t, true, cfg, h)
	cc := ts.client(t, Config{})
	early := make([]byte, 16<<10)
	for i := range 12 { // 192 KiB against a 64 KiB connection window
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cc.Connect(ctx, &Request{Authority: "deny:1", Early: early})
		cancel()
		var se *StatusError
		if !errors.As(err, &se) || se.Code != 401 {
			t.Fatalf("refused stream %d: got %v, want a 401", i, err)
		}
	}
	echoOK(t, cc)
}
