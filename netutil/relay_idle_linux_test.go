package netutil_test

import (
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"github.com/ztunnel-go/ztunnel/netutil"
)

// countFDs returns the descriptors of this process by kind: pipes and
// everything else (sockets, files).
func countFDs(t testing.TB) (pipes, other int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the ReadDir's own descriptor, closed since
		}
		if strings.HasPrefix(l, "pipe:") {
			pipes++
		} else {
			other++
		}
	}
	return pipes, other
}

// idleRelays opens n relayed connections on the given path, proves each
// with one byte each way, and leaves them idle. It returns the rigs.
func idleRelays(t testing.TB, n int, mode relayMode) []*rig {
	t.Helper()
	rigs := make([]*rig, n)
	buf := make([]byte, 1)
	for i := range rigs {
		r := newRig(t, mode, nil, nil)
		for _, dir := range [][2]*net.TCPConn{{r.client, r.server}, {r.server, r.client}} {
			if _, err := dir[0].Write([]byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
			dir[1].SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(dir[1], buf); err != nil || buf[0] != byte(i) {
				t.Fatalf("relay %d: read %v, %v", i, buf, err)
			}
		}
		rigs[i] = r
	}
	return rigs
}

// TestRelayIdleHoldsNoPipes: 100 idle relayed connections hold their four
// sockets and nothing else: no splice pipe, on either path.
func TestRelayIdleHoldsNoPipes(t *testing.T) {
	const n = 100
	netutil.StartParkLoop() // its epoll descriptor is not per connection
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			pipes0, other0 := countFDs(t)
			idleRelays(t, n, p.mode)
			time.Sleep(50 * time.Millisecond) // let every direction park
			pipes, other := countFDs(t)
			t.Logf("%d idle relays: %d pipe and %d other descriptors more", n, pipes-pipes0, other-other0)
			// The pipe pool may keep a few free pipes for the next burst; a
			// pipe per connection would be 2*n descriptors or more.
			if got := pipes - pipes0; got > maxIdlePipeFDs {
				t.Errorf("%d idle relays hold %d pipe descriptors, want <= %d", n, got, maxIdlePipeFDs)
			}
			if got, want := other-other0, 4*n; got != want {
				t.Errorf("%d idle relays hold %d other descriptors, want %d (4 sockets each)", n, got, want)
			}
		})
	}
}

// maxIdlePipeFDs bounds the pipe descriptors the relay's pool keeps free.
const maxIdlePipeFDs = 2 * 16

// TestRelayIdleMemory measures the Go heap and stacks that idle relayed
// connections hold once their directions parked (both endpoints of both TCP
// connections live in this process too, so the figure includes their Go
// state) and checks a budget that a goroutine, a pooled buffer or a pipe held
// per idle connection would break.
func TestRelayIdleMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes memory use")
	}
	defer netutil.SetParkAfter(10 * time.Millisecond)()
	netutil.StartParkLoop()
	const n = 200
	for _, p := range []struct {
		name   string
		mode   relayMode
		budget int64
	}{
		{"splice", modeSplice, idleBudget},
		// The wrapped side's source is not a socket: its reader keeps a
		// goroutine (a small stack) while idle.
		{"mixed", modeMixed, idleBudget + 4<<10},
	} {
		t.Run(p.name, func(t *testing.T) {
			// A first round unmeasured: it leaves the runtime's and the
			// package's process-wide state (the idle worker goroutines
			// and their stacks, the epoll loop's slots) as the second finds it.
			idleRelayMemory(t, p.mode, n)
			perHeap, perStack := idleRelayMemory(t, p.mode, n)
			per := perHeap + perStack
			t.Logf("%d idle relays: %d B each (heap %d, goroutine stacks %d)", n, per, perHeap, perStack)
			if per > p.budget {
				t.Errorf("an idle relayed connection holds %d B, want <= %d", per, p.budget)
			}
		})
	}
}

// idleRelayMemory opens n relays on mode, proves each with a byte each way,
// waits until they are idle (no goroutine left per relay, beyond the reader
// of a source that is not a socket), and returns the heap and stack bytes
// each holds then; it closes them before it returns.
func idleRelayMemory(t *testing.T, mode relayMode, n int) (perHeap, perStack int64) {
	t.Helper()
	base := leakcheck.Baseline()
	heap0, stack0 := liveBytes()
	rigs := make([]*linkRig, n)
	for i := range rigs {
		rigs[i] = newLinkRig(t, mode)
		go rigs[i].link.Run()
		rigs[i].echoOnce(t, byte(i))
	}
	kept := 0
	if mode == modeMixed {
		kept = n
	}
	if got := waitGoroutines(base+kept, 5*time.Second); got > base+kept {
		t.Fatalf("%d idle relays still run %d goroutines, want %d", n, got-base, kept)
	}
	time.Sleep(20 * time.Millisecond) // the last directions to park detach their sockets
	heap, stack := liveBytes()
	runtime.KeepAlive(rigs)
	for _, r := range rigs {
		r.link.Close()
		r.result(t)
		r.client.Close()
		r.server.Close()
	}
	return (int64(heap) - int64(heap0)) / int64(n), (int64(stack) - int64(stack0)) / int64(n)
}

// idleBudget is the heap and stack bytes one idle relayed connection may
// hold in TestRelayIdleMemory, its four sockets' Go state, the test's own
// records and the runtime's cache of stacks of ended goroutines included
// (about 4.5 KB of heap and 2.3 KB of stacks measured; a goroutine per
// direction, as before the epoll loop, measured 11.6 KB).
const idleBudget = 8 << 10

// liveBytes returns heap in use and goroutine stacks after full GCs (which
// also shrink the stacks of idle goroutines).
func liveBytes() (heap, stack uint64) {
	for range 3 {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.StackInuse
}
