package hbone

import (
	"io"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
)

// openIdle opens a stream on cc, moves one byte each way the way a relay
// does (reading only once NotifyReadable said Read would not wait), and
// leaves both ends parked with NotifyReadable, as an idle relay leaves them.
func openIdle(t testing.TB, cc *ClientConn, servers chan *Stream) (cs, ss *Stream) {
	t.Helper()
	cs = connect(t, cc, "10.0.0.1:80")
	ss = <-servers
	var b [1]byte
	for _, dir := range [][2]*Stream{{cs, ss}, {ss, cs}} {
		from, to := dir[0], dir[1]
		ready := make(chan struct{}, 1)
		parked := to.NotifyReadable(onReadable(func() { ready <- struct{}{} }))
		if _, err := from.Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
		if parked {
			select {
			case <-ready:
			case <-time.After(10 * time.Second):
				t.Fatal("the byte never arrived")
			}
		}
		if n, err := to.Read(b[:]); n != 1 || err != nil {
			t.Fatalf("Read = %d, %v; want the byte", n, err)
		}
	}
	nop := func() {}
	if !cs.NotifyReadable(onReadable(nop)) || !ss.NotifyReadable(onReadable(nop)) {
		t.Fatal("NotifyReadable on an idle stream returned false")
	}
	return cs, ss
}

// TestIdleStreamHoldsNoChannels: a stream nobody waits on holds none of its
// wake-up channels (about 100 bytes each), not even the one connect waited on
// for the response. Idle relayed connections are the ones a node has most.
func TestIdleStreamHoldsNoChannels(t *testing.T) {
	cc, servers := detachedServer(t, Config{})
	cs, ss := openIdle(t, cc, servers)
	defer cs.Close()
	defer ss.Close()
	for _, tc := range []struct {
		name string
		s    *Stream
	}{
		{"client", cs},
		{"server", ss},
	} {
		s := tc.s
		s.mu.Lock()
		done, wwake := s.done != nil, s.wwake != nil
		s.mu.Unlock()
		s.c.mu.Lock()
		wakeW := s.wakeW != nil
		s.c.mu.Unlock()
		dls := s.dls.Load() != nil
		readWake := s.readWake() != nil
		if done || wwake || wakeW || dls || readWake {
			t.Errorf("%s stream holds done %v, wwake %v, wakeW %v, deadlines %v, wakeR %v; want none",
				tc.name, done, wwake, wakeW, dls, readWake)
		}
	}
	// The channels and deadlines made later still work: a deadline wakes a
	// blocked Read.
	cs.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := cs.Read(make([]byte, 1)); err == nil {
		t.Fatal("Read past its deadline returned no error")
	}
}

// BenchmarkIdleStreams reports the live heap that one idle tunnelled
// connection costs in the HBONE engine: a client and a server stream on one
// pooled connection pair, a byte moved each way, both ends parked.
func BenchmarkIdleStreams(b *testing.B) {
	const n = 1000
	cfg := Config{MaxConcurrentStreams: 2 * n}
	cc, servers := detachedServer(b, cfg)
	openIdle(b, cc, servers) // warm up: the connection's buffers and tables
	var perPair float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		streams := make([]*Stream, 0, 2*n)
		for range n {
			cs, ss := openIdle(b, cc, servers)
			streams = append(streams, cs, ss)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perPair = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
		// Both ends half-close before Close, so no stream is reset (the
		// server counts resets against abusive clients).
		for _, s := range streams {
			s.CloseWrite()
		}
		for _, s := range streams {
			s.Close()
		}
	}
	b.ReportMetric(perPair, "B/stream-pair")
}

// TestConnGoroutines: an idle connection over TLS and TCP holds no
// goroutine at either end. The read loops park in netutil's epoll loop once
// the peer has been silent for readParkAfter, the control writer runs on a
// worker only while frames wait, keepalive is a timer (leakcheck counts
// neither the epoll loop nor idle workers). A node holds a pooled connection
// per peer node and identity, and each goroutine would hold a stack of 8-16
// KiB once grown. Parked connections then carry streams and PINGs as before,
// and closing them ends everything they started.
func TestConnGoroutines(t *testing.T) {
	ts := startServer(t, true, Config{}, echo)
	const pairs = 20
	base := leakcheck.Baseline()
	roundTrip := func(cc *ClientConn) {
		t.Helper()
		s := connect(t, cc, "10.0.0.1:80")
		if _, err := s.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		s.CloseWrite()
		io.Copy(io.Discard, s)
		s.Close()
	}
	conns := make([]*ClientConn, pairs)
	for i := range conns {
		conns[i] = ts.client(t, Config{})
		// A round trip proves both ends are up before counting; the
		// WINDOW_UPDATEs it causes run the control writers.
		roundTrip(conns[i])
	}
	// No more goroutines than before the connections (fewer is fine: something an earlier
	// test started may end meanwhile); Wait lists them if there are.
	leakcheck.Wait(t, base)

	// Parked, they still serve streams, and park again.
	for _, cc := range conns {
		roundTrip(cc)
	}
	leakcheck.Wait(t, base)

	// Closing parked connections ends them at both ends.
	for _, cc := range conns {
		cc.Close()
	}
	leakcheck.Wait(t, base)
	ts.waitConnsEnded(t)
}

// TestParkedKeepalive: parked read loops wake for the peer's PINGs and their
// answers, so keepalive holds a silent connection up through many parks: with
// PINGs every 150 ms and a 450 ms timeout, a loop that missed them would end
// the connection within the second this test waits.
func TestParkedKeepalive(t *testing.T) {
	cfg := Config{PingInterval: 150 * time.Millisecond, PingTimeout: 450 * time.Millisecond}
	ts := startServer(t, true, cfg, echo)
	cc := ts.client(t, cfg)
	s := connect(t, cc, "10.0.0.1:80")
	time.Sleep(1500 * time.Millisecond)
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatalf("Write after a second of keepalive only: %v", err)
	}
	if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
		t.Fatalf("Read after a second of keepalive only: %v", err)
	}
	s.CloseWrite()
	io.Copy(io.Discard, s)
	s.Close()
}

// TestStreamSize keeps a Stream (one per tunnelled connection at each end,
// idle or not) in Go's 176-byte allocation class. It was 320 bytes before the
// deadlines became lazy (48 bytes a stream that no relay sets) and the fields
// were ordered to leave no padding, 256 before the receive window, the status
// and the lent buffer's count became int32, 240 while onDone ran under a
// sync.Once and the receive buffer kept its length as a count, and 224 while
// each stream kept its completion hook (now the connection's streamDone) and
// the lent buffer as a slice, and 192 while the receive buffer listed its
// chunks in a slice (recvBuf).
func TestStreamSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("SKIPPED: the size budget is for 64-bit platforms")
	}
	if got := unsafe.Sizeof(Stream{}); got > 176 {
		t.Errorf("Stream is %d bytes, want at most 176 (64-bit)", got)
	}
}
