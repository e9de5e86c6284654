package hbone

import (
	"bytes"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/testwait"
)

// waitFired waits for one call of a NotifyReadable callback.
func waitFired(t *testing.T, fired chan struct{}, what string) {
	t.Helper()
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: the NotifyReadable callback was not called", what)
	}
}

// notFired checks that no callback call is pending.
func notFired(t *testing.T, fired chan struct{}, what string) {
	t.Helper()
	select {
	case <-fired:
		t.Fatalf("%s: the NotifyReadable callback was called", what)
	case <-time.After(20 * time.Millisecond):
	}
}

// detachedServer starts a TLS test server whose Handler answers 200,
// detaches the stream and hands it to the test on the returned channel (the
// test closes it), and a client of it; both use cfg.
func detachedServer(t testing.TB, cfg Config) (*ClientConn, chan *Stream) {
	t.Helper()
	servers := make(chan *Stream, 4)
	ts := startServer(t, true, cfg, HandlerFunc(func(s *Stream, req *Request) {
		if err := s.Respond(200); err != nil {
			return
		}
		s.Detach()
		servers <- s
	}))
	return ts.client(t, cfg), servers
}

// TestNotifyReadable: the callback runs once for each change that makes Read
// not wait (data, END_STREAM, a local Close, the peer's reset), and
// NotifyReadable refuses to keep it while Read would not wait.
func TestNotifyReadable(t *testing.T) {
	cc, servers := detachedServer(t, Config{})
	fired := make(chan struct{}, 4)
	fn := func() { fired <- struct{}{} }

	// Data, then END_STREAM.
	cs := connect(t, cc, "10.0.0.1:80")
	ss := <-servers
	defer ss.Close()
	if !cs.NotifyReadable(onReadable(fn)) {
		t.Fatal("NotifyReadable on an empty stream returned false")
	}
	notFired(t, fired, "empty stream")
	if _, err := ss.Write([]byte("ab")); err != nil {
		t.Fatal(err)
	}
	waitFired(t, fired, "data")
	if cs.NotifyReadable(onReadable(fn)) {
		t.Fatal("NotifyReadable with bytes buffered returned true")
	}
	buf := make([]byte, 8)
	if n, err := cs.Read(buf); n != 2 || err != nil {
		t.Fatalf("Read = %d, %v; want 2 bytes", n, err)
	}
	if !cs.NotifyReadable(onReadable(fn)) {
		t.Fatal("NotifyReadable after draining returned false")
	}
	if err := ss.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	waitFired(t, fired, "END_STREAM")
	if n, err := cs.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after END_STREAM = %d, %v; want EOF", n, err)
	}
	if cs.NotifyReadable(onReadable(fn)) {
		t.Fatal("NotifyReadable after END_STREAM returned true")
	}
	notFired(t, fired, "after END_STREAM")
	cs.Close()

	// A local Close.
	cs = connect(t, cc, "10.0.0.1:80")
	ss = <-servers
	defer ss.Close()
	if !cs.NotifyReadable(onReadable(fn)) {
		t.Fatal("NotifyReadable on an empty stream returned false")
	}
	cs.Close()
	waitFired(t, fired, "local Close")

	// The peer's reset.
	cs = connect(t, cc, "10.0.0.1:80")
	defer cs.Close()
	ss = <-servers
	if !cs.NotifyReadable(onReadable(fn)) {
		t.Fatal("NotifyReadable on an empty stream returned false")
	}
	ss.resetLocal(0x8) // CANCEL
	waitFired(t, fired, "peer reset")
	if _, err := cs.Read(buf); err == nil {
		t.Fatal("Read after the peer's reset returned no error")
	}
}

// TestDetachKeepsStream: a Handler that answered and detached may return
// while the stream goes on; the Server neither closes nor answers it then.
func TestDetachKeepsStream(t *testing.T) {
	handlerDone := make(chan struct{})
	ts := startServer(t, true, Config{}, HandlerFunc(func(s *Stream, req *Request) {
		defer close(handlerDone)
		if err := s.Respond(200); err != nil {
			return
		}
		s.Detach()
		go func() { // ends with the stream: the test reads its echo to EOF
			defer s.Close()
			io.Copy(s, s)
			s.CloseWrite()
		}()
	}))
	cc := ts.client(t, Config{})
	cs := connect(t, cc, "10.0.0.1:80")
	defer cs.Close()
	<-handlerDone
	time.Sleep(20 * time.Millisecond) // runHandler's deferred calls run after the Handler
	if _, err := cs.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	cs.CloseWrite()
	got, err := io.ReadAll(cs)
	if err != nil || string(got) != "still here" {
		t.Fatalf("echo after the handler returned = %q, %v", got, err)
	}
}

// TestNotifyReadableWith: bytes that arrive while a callback waits go to
// its write function first. What it takes is consumed (and returned to the
// peer's flow-control window, or a transfer larger than the window would
// stall) and the callback stays registered; what it leaves is buffered for
// Read and the callback runs.
func TestNotifyReadableWith(t *testing.T) {
	cc, servers := detachedServer(t, Config{StreamWindow: 64 << 10, ConnWindow: 64 << 10})
	cs := connect(t, cc, "10.0.0.1:80")
	defer cs.Close()
	ss := <-servers
	defer ss.Close()

	fired := make(chan struct{}, 4)
	fn := func() { fired <- struct{}{} }
	var mu sync.Mutex
	var got []byte
	takeAll := func(b []byte) int {
		mu.Lock()
		got = append(got, b...)
		mu.Unlock()
		return len(b)
	}
	if !cs.NotifyReadableWith(waiter{fn, takeAll}) {
		t.Fatal("NotifyReadableWith on an empty stream returned false")
	}
	// Sixteen times the window: only the sink's consumption reopens it.
	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	if _, err := ss.Write(want); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the sink to take 1 MiB", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == len(want)
	})
	if !bytes.Equal(got, want) {
		t.Fatal("the sink got other bytes than were sent")
	}
	notFired(t, fired, "sink took everything")

	// A sink that takes two bytes of five: the rest is for Read.
	takeTwo := func(b []byte) int { return min(2, len(b)) }
	cs.NotifyReadableWith(waiter{fn, takeTwo}) // replaces the registration
	if _, err := ss.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	waitFired(t, fired, "sink took part")
	buf := make([]byte, 8)
	if n, err := cs.Read(buf); err != nil || string(buf[:n]) != "llo" {
		t.Fatalf("Read = %q, %v; want llo", buf[:n], err)
	}
}

// TestNotifyReadableWithCloseDuringWrite: a stream closed while the sink
// writes (a relay torn down from elsewhere) drops what the sink did not
// take and returns it to the connection's window; otherwise those bytes
// would sit in a closed stream's buffer and the other streams of the
// connection would stall.
func TestNotifyReadableWithCloseDuringWrite(t *testing.T) {
	cc, servers := detachedServer(t, Config{StreamWindow: 64 << 10, ConnWindow: 64 << 10})
	cs := connect(t, cc, "10.0.0.1:80")
	ss := <-servers
	defer ss.Close()
	closeAndRefuse := func(b []byte) int {
		cs.Close()
		return 0
	}
	if !cs.NotifyReadableWith(waiter{func() {}, closeAndRefuse}) {
		t.Fatal("NotifyReadableWith on an empty stream returned false")
	}
	if _, err := ss.Write(make([]byte, 60<<10)); err != nil { // most of the connection window
		t.Fatal(err)
	}

	// A second stream on the same connection needs that window back.
	cs2 := connect(t, cc, "10.0.0.1:81")
	defer cs2.Close()
	ss2 := <-servers
	defer ss2.Close()
	want := make([]byte, 1<<20)
	errc := make(chan error, 1)
	go func() {
		_, err := ss2.Write(want)
		errc <- err
	}()
	cs2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(cs2, make([]byte, len(want))); err != nil {
		t.Fatalf("second stream: %v (the connection window was not returned)", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
