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

// TestConnGoroutines: an idle connection costs one goroutine at each end,
// its read loop. The control writer runs on a worker goroutine only while
// frames wait (leakcheck does not count idle workers), and keepalive is a
// timer. A node holds a pooled connection per peer node and direction, and
// each goroutine holds a stack (about 8 KiB once grown).
func TestConnGoroutines(t *testing.T) {
	ts := startServer(t, true, Config{}, echo)
	const pairs = 20
	base := leakcheck.Baseline()
	for range pairs {
		cc := ts.client(t, Config{})
		// A round trip proves both ends are up before counting; the
		// WINDOW_UPDATEs it causes run the control writers.
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
	want := base + 2*pairs
	var got int
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got = leakcheck.Count(); got == want || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got != want {
		t.Errorf("%d idle connection pairs run %d goroutines, want %d (one per end)", pairs, got-base, want-base)
	}
}

// TestStreamSize keeps a Stream (one per tunnelled connection at each end,
// idle or not) in Go's 256-byte allocation class. It was 320 bytes before the
// deadlines became lazy (48 bytes a stream that no relay sets) and the fields
// were ordered to leave no padding.
func TestStreamSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("SKIPPED: the size budget is for 64-bit platforms")
	}
	if got := unsafe.Sizeof(Stream{}); got > 256 {
		t.Errorf("Stream is %d bytes, want at most 256 (64-bit)", got)
	}
}
