package hbone

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestCloseWithUnreadDataReturnsConnectionWindow: a stream closed while data it never read sits
// in its buffer must give those bytes back to the connection's flow-control window. Otherwise
// every such close shrinks the window that all streams of a pooled connection share, until the
// connection stalls for everyone.
func TestCloseWithUnreadDataReturnsConnectionWindow(t *testing.T) {
	const chunk = 32 << 10
	// The server writes chunk bytes on every stream, then waits for the client to go away.
	sender := HandlerFunc(func(s *Stream, req *Request) {
		if err := s.Respond(http.StatusOK); err != nil {
			return
		}
		s.Write(make([]byte, chunk))
		io.Copy(io.Discard, s)
	})
	// A connection window of 64 KiB: three streams' worth of unread data exhausts it if closing
	// does not return it.
	cfg := Config{ConnWindow: 64 << 10, StreamWindow: 64 << 10}
	cc, _ := pipePair(t, cfg, Config{}, sender)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 8 {
		s, err := cc.Connect(ctx, &Request{Method: http.MethodConnect, Authority: "10.0.0.1:80"})
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		// Wait until the data has arrived (buffered, unread), then close.
		deadline := time.Now().Add(5 * time.Second)
		for {
			s.mu.Lock()
			n := s.recv.len()
			s.mu.Unlock()
			if n == chunk {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("stream %d: only %d of %d bytes arrived: the connection window is exhausted", i, n, chunk)
			}
			time.Sleep(time.Millisecond)
		}
		s.Close()
	}
}
