package hbone

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestOpenSendsBeforeAnswer checks that a stream from Open carries bytes written after Open
// returned before the server answers: the handler reads them first and only then answers.
// With Connect the client would wait for the answer and the handler for the bytes.
func TestOpenSendsBeforeAnswer(t *testing.T) {
	const early, late = "with the request;", " after Open returned"
	ts := startServer(t, true, Config{}, readThenEcho(len(early)+len(late)))
	cc := ts.client(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	s, err := cc.Open(ctx, &Request{Authority: "10.0.0.1:80", Early: []byte(early)})
	cancel() // Open keeps only ctx's deadline
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if err := s.Refusal(); err != nil {
		t.Fatalf("Refusal before the answer = %v, want nil", err)
	}
	s.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.Write([]byte(late)); err != nil {
		t.Fatalf("Write before the answer: %v", err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if string(got) != early+late {
		t.Fatalf("echoed %q, want %q", got, early+late)
	}
	if err := s.Refusal(); err != nil {
		t.Fatalf("Refusal after a 200 = %v, want nil", err)
	}
}

// TestOpenRefused checks an opened stream whose request is refused: Read fails with the
// status, and so does a reader parked with NotifyReadable (it is told); Refusal reports the
// status; Write fails; the connection carries the next stream.
func TestOpenRefused(t *testing.T) {
	release := make(chan struct{})
	h := HandlerFunc(func(s *Stream, req *Request) {
		if req.Authority == "deny:1" {
			<-release
			s.Reject(403)
			return
		}
		echo(s, req)
	})
	ts := startServer(t, true, Config{}, h)
	cc := ts.client(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// A reader parked on the stream before the answer is told of the refusal.
	s, err := cc.Open(ctx, &Request{Authority: "deny:1"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	told := make(chan struct{}, 1)
	if !s.NotifyReadable(onReadable(func() { told <- struct{}{} })) {
		t.Fatal("NotifyReadable on a stream waiting for its answer: readable at once")
	}
	if _, err := s.Write([]byte("dropped with the stream")); err != nil {
		t.Fatalf("Write before the answer: %v", err)
	}
	close(release)
	select {
	case <-told:
	case <-time.After(5 * time.Second):
		t.Fatal("the parked reader was not told of the refusal")
	}
	var se *StatusError
	if _, err := s.Read(make([]byte, 8)); !errors.As(err, &se) || se.Code != 403 {
		t.Fatalf("Read after a 403 = %v, want *StatusError 403", err)
	}
	if err := s.Refusal(); !errors.As(err, &se) || se.Code != 403 {
		t.Fatalf("Refusal = %v, want *StatusError 403", err)
	}
	if _, err := s.Write([]byte("x")); err == nil {
		t.Fatal("Write after a refusal succeeded")
	}
	s.Close()
	t.Logf("streams gone at %v", time.Now())
	echoOK(t, cc)
	t.Logf("echo at %v", time.Now())
}

// TestOpenAnswerDeadline checks that an opened stream whose answer does not come by the
// deadline of Open's context is reset: Read fails with an error matching
// os.ErrDeadlineExceeded, Refusal reports it, the server's stream sees a reset, and the
// connection carries the next stream.
func TestOpenAnswerDeadline(t *testing.T) {
	reset := make(chan error, 1)
	h := HandlerFunc(func(s *Stream, req *Request) {
		if req.Authority != "silent:1" {
			echo(s, req)
			return
		}
		// Never answer: wait for the client to give up.
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, s)
		reset <- err
	})
	ts := startServer(t, true, Config{}, h)
	cc := ts.client(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	s, err := cc.Open(ctx, &Request{Authority: "silent:1"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(5 * time.Second)) // the test's own bound
	start := time.Now()
	_, err = s.Read(make([]byte, 8))
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, errNoAnswer) {
		t.Fatalf("Read of an unanswered stream = %v, want the answer deadline's error", err)
	}
	if waited := time.Since(start); waited > 3*time.Second {
		t.Fatalf("Read failed after %v: not by the 200 ms answer deadline", waited)
	}
	if err := s.Refusal(); !errors.Is(err, errNoAnswer) {
		t.Fatalf("Refusal = %v, want the answer deadline's error", err)
	}
	select {
	case err := <-reset:
		var re *ResetError
		if !errors.As(err, &re) || re.Code != http2.ErrCodeCancel || !re.Remote {
			t.Fatalf("server's stream ended with %v, want the client's RST_STREAM(CANCEL)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server's stream was not reset")
	}
	t.Logf("streams gone at %v", time.Now())
	echoOK(t, cc)
	t.Logf("echo at %v", time.Now())
}

// TestOpenAnsweredStreamsLeaveDeadlines checks that answered streams do not pile up in the
// connection's deadline list: after many opened and answered streams it is empty.
func TestOpenAnsweredStreamsLeaveDeadlines(t *testing.T) {
	ts := startServer(t, true, Config{}, echo)
	cc := ts.client(t, Config{})
	for range 50 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		s, err := cc.Open(ctx, &Request{Authority: "10.0.0.1:80", Early: []byte("ping")})
		cancel()
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		s.SetDeadline(time.Now().Add(5 * time.Second))
		s.CloseWrite()
		got, err := io.ReadAll(s)
		if err != nil || !bytes.Equal(got, []byte("ping")) {
			t.Fatalf("echo = %q, %v", got, err)
		}
		s.Close()
	}
	cc.c.mu.Lock()
	n := len(cc.c.awaiting)
	cc.c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d answered streams still wait for their deadline", n)
	}
}

// TestAwaitAnswerAfterTheAnswer is the race TestOpenAnsweredStreamsLeaveDeadlines can lose:
// Open adds a stream's answer deadline after its request is out, so the answer may come
// first. An entry added for a stream already answered leaves the list at once.
func TestAwaitAnswerAfterTheAnswer(t *testing.T) {
	ts := startServer(t, true, Config{}, echo)
	cc := ts.client(t, Config{})
	s, err := cc.Open(context.Background(), &Request{Authority: "10.0.0.1:80", Early: []byte("ping")})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(s, make([]byte, 4)); err != nil { // the echo comes after the answer
		t.Fatal(err)
	}
	cc.c.awaitAnswer(s, time.Now().Add(time.Minute)) // as Open does, had the answer been that fast
	cc.c.mu.Lock()
	n := len(cc.c.awaiting)
	cc.c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d answered streams wait for their deadline, want none", n)
	}
}

// TestOpenWithXNetServer runs an opened stream against the x/net HTTP/2 server, another
// implementation: its handler reads the tunnel's first bytes, sent after Open returned,
// before it answers 200, and echoes them after.
func TestOpenWithXNetServer(t *testing.T) {
	const first = "sent before the answer"
	stls, ctls := testTLS(t)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, len(first))
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
		w.Write(buf)
		w.(http.Flusher).Flush()
		io.Copy(io.Discard, r.Body)
	})
	tc, err := tls.Dial("tcp", serveXNet(t, stls, h), ctls)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := NewClientConn(tc, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := cc.Open(ctx, &Request{Authority: "10.9.8.7:443"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Write([]byte(first)); err != nil {
		t.Fatalf("Write before the answer: %v", err)
	}
	got := make([]byte, len(first))
	if _, err := io.ReadFull(s, got); err != nil || string(got) != first {
		t.Fatalf("echo from the x/net server = %q, %v; want %q", got, err, first)
	}
	if err := s.Refusal(); err != nil {
		t.Fatalf("Refusal = %v after a 200", err)
	}
}

// TestOpenCloseBeforeAnswer checks that closing an opened stream before its answer ends its
// request (END_STREAM) instead of resetting it, and resets it once the answer came: a server
// counts streams reset before it answered against its rapid-reset defence.
func TestOpenCloseBeforeAnswer(t *testing.T) {
	got := make(chan [2]error, 1)
	answer := make(chan struct{})
	h := HandlerFunc(func(s *Stream, req *Request) {
		if req.Authority != "closed:1" {
			echo(s, req)
			return
		}
		s.SetDeadline(time.Now().Add(5 * time.Second))
		_, before := s.Read(make([]byte, 1)) // the client closed before the answer
		<-answer
		s.Respond(200)
		var after error
		for after == nil { // until the client's reset arrives
			_, after = s.Write([]byte("x"))
			time.Sleep(time.Millisecond)
		}
		got <- [2]error{before, after}
	})
	ts := startServer(t, true, Config{}, h)
	cc := ts.client(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := cc.Open(ctx, &Request{Authority: "closed:1"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s.Close()
	time.Sleep(20 * time.Millisecond)
	if n := cc.ActiveStreams(); n != 1 {
		t.Errorf("%d streams open after Close, before the answer; want the closed one kept", n)
	}
	close(answer)
	select {
	case errs := <-got:
		if errs[0] != io.EOF {
			t.Errorf("server read before answering: %v, want io.EOF (the request ended, no reset)", errs[0])
		}
		var re *ResetError
		if !errors.As(errs[1], &re) || re.Code != http2.ErrCodeCancel || !re.Remote {
			t.Errorf("server write after answering: %v, want the client's RST_STREAM(CANCEL)", errs[1])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not finish")
	}
	deadline := time.Now().Add(5 * time.Second)
	for cc.ActiveStreams() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams still open after the answer", cc.ActiveStreams())
		}
		time.Sleep(5 * time.Millisecond)
	}
	echoOK(t, cc)
}
