package netutil_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"github.com/ztunnel-go/ztunnel/netutil"
)

// plainConn hides *net.TCPConn from Relay's type check (forcing the
// user-space path) while keeping CloseWrite.
type plainConn struct{ *net.TCPConn }

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (dialed, accepted *net.TCPConn) {
	t.Helper()
	c, s := dialAccept(t)
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// dialAccept is tcpPair without the cleanup: the caller closes both ends
// (or hands them to a Link), and nothing else refers to them.
func dialAccept(t testing.TB) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.AcceptTCP()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c, s
}

type relayResult struct {
	aToB, bToA int64
	err        error
}

// rig is client <-> a [Relay] b <-> server over loopback TCP.
type rig struct {
	client, server *net.TCPConn
	done           chan relayResult
}

// relayMode picks which of Relay's copy paths a rig exercises.
type relayMode int

const (
	modeSplice    relayMode = iota // both ends *net.TCPConn: splice(2)
	modeUserspace                  // both ends wrapped: Read/Write through buffers
	modeMixed                      // a wrapped, b raw: b->a reads the socket with read(2)
)

// wrap returns a and b as Relay sees them in mode m.
func (m relayMode) wrap(a, b *net.TCPConn) (net.Conn, net.Conn) {
	switch m {
	case modeUserspace:
		return plainConn{a}, plainConn{b}
	case modeMixed:
		return plainConn{a}, b
	}
	return a, b
}

// newRig starts Relay (or RelayCounted when counters are given) between two
// TCP connections, wrapped as mode says.
func newRig(t testing.TB, mode relayMode, ca, cb *atomic.Int64) *rig {
	t.Helper()
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	ra, rb := mode.wrap(a, b)
	r := &rig{client: client, server: server, done: make(chan relayResult, 1)}
	go func() { // waited for through r.done (wait)
		var res relayResult
		if ca != nil || cb != nil {
			res.aToB, res.bToA, res.err = netutil.RelayCounted(ra, rb, ca, cb)
		} else {
			res.aToB, res.bToA, res.err = netutil.Relay(ra, rb)
		}
		r.done <- res
	}()
	t.Cleanup(func() { client.Close(); server.Close(); r.wait(t) })
	return r
}

func (r *rig) wait(t testing.TB) relayResult {
	t.Helper()
	select {
	case res := <-r.done:
		r.done <- res // keep it for later callers
		return res
	case <-time.After(20 * time.Second):
		t.Fatal("Relay did not return")
		return relayResult{}
	}
}

var paths = []struct {
	name string
	mode relayMode
}{{"splice", modeSplice}, {"userspace", modeUserspace}, {"mixed", modeMixed}}

// sendStream writes n pseudo-random bytes (seeded) to w, then half-closes it.
func sendStream(w *net.TCPConn, seed uint64, n int64) error {
	src := rand.NewChaCha8([32]byte{byte(seed)})
	buf := make([]byte, 256<<10)
	for n > 0 {
		chunk := buf[:min(int64(len(buf)), n)]
		src.Read(chunk)
		if _, err := w.Write(chunk); err != nil {
			return err
		}
		n -= int64(len(chunk))
	}
	return w.CloseWrite()
}

// checkStream reads r to EOF and checks it is exactly the stream sendStream
// produces for seed and n.
func checkStream(r io.Reader, seed uint64, n int64) error {
	src := rand.NewChaCha8([32]byte{byte(seed)})
	got := make([]byte, 256<<10)
	want := make([]byte, len(got))
	var off int64
	for {
		nr, err := r.Read(got)
		if nr > 0 {
			if off+int64(nr) > n {
				return fmt.Errorf("more than %d bytes", n)
			}
			src.Read(want[:nr])
			if !bytes.Equal(got[:nr], want[:nr]) {
				return fmt.Errorf("corrupt data in [%d, %d)", off, off+int64(nr))
			}
			off += int64(nr)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if off != n {
		return fmt.Errorf("got %d bytes before EOF, want %d", off, n)
	}
	return nil
}

// TestRelayIntactHalfClose sends a stream client->server, which the server
// reads to EOF (so the half-close crossed the relay) before answering with a
// stream of its own that the client reads to EOF.
func TestRelayIntactHalfClose(t *testing.T) {
	size := int64(100 << 20)
	if testing.Short() {
		size = 8 << 20
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			r := newRig(t, p.mode, nil, nil)
			errc := make(chan error, 1)
			go func() { errc <- sendStream(r.client, 1, size) }()
			if err := checkStream(r.server, 1, size); err != nil {
				t.Fatalf("client->server: %v", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("client send: %v", err)
			}
			go func() { errc <- sendStream(r.server, 2, size) }()
			if err := checkStream(r.client, 2, size); err != nil {
				t.Fatalf("server->client: %v", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("server send: %v", err)
			}
			res := r.wait(t)
			if res.err != nil || res.aToB != size || res.bToA != size {
				t.Fatalf("Relay = (%d, %d, %v), want (%d, %d, nil)", res.aToB, res.bToA, res.err, size, size)
			}
		})
	}
}

// TestRelayResetClosesBoth: a reset from the server ends the relay with a
// disconnect error and closes the client's side too.
func TestRelayResetClosesBoth(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			r := newRig(t, p.mode, nil, nil)
			if _, err := r.client.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(r.server, buf); err != nil {
				t.Fatal(err)
			}
			r.server.SetLinger(0)
			r.server.Close() // RST
			res := r.wait(t)
			if res.err == nil || !netutil.IsDisconnect(res.err) {
				t.Fatalf("Relay error = %v, want a disconnect (reset) error", res.err)
			}
			if res.aToB != 4 {
				t.Errorf("aToB = %d, want 4", res.aToB)
			}
			r.client.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := r.client.Read(buf); err == nil {
				t.Fatalf("client read %d bytes after relay end, want EOF or reset", n)
			} else if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("client side was not closed")
			}
		})
	}
}

// TestRelayErrorNamesItsDirection: the relay's error says which direction
// failed (a *netutil.DirError): a reset from the server fails the direction
// that reads from b, one from the client the direction that reads from a.
// The cause stays reachable for errors.Is.
func TestRelayErrorNamesItsDirection(t *testing.T) {
	for _, p := range paths {
		for _, fromClient := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/fromClient=%v", p.name, fromClient), func(t *testing.T) {
				r := newRig(t, p.mode, nil, nil)
				resetter := r.server
				if fromClient {
					resetter = r.client
				}
				// One byte each way first, so both ends are relaying.
				if _, err := r.client.Write([]byte("a")); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(r.server, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
				if _, err := r.server.Write([]byte("b")); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(r.client, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
				resetter.SetLinger(0)
				resetter.Close() // RST
				res := r.wait(t)
				var de *netutil.DirError
				if !errors.As(res.err, &de) {
					t.Fatalf("Relay error = %v (%T), want a *netutil.DirError", res.err, res.err)
				}
				if de.AToB != fromClient || de.Shutdown {
					t.Errorf("DirError{AToB: %v, Shutdown: %v}, want AToB %v, no Shutdown", de.AToB, de.Shutdown, fromClient)
				}
				if !errors.Is(res.err, syscall.ECONNRESET) || res.err.Error() != de.Err.Error() {
					t.Errorf("Relay error %q lost its cause or changed its text (%q)", res.err, de.Err)
				}
			})
		}
	}
}

// TestRelayNoCloseWrite: a connection without CloseWrite (net.Pipe) is closed
// in place of a half-close and the relay still ends cleanly.
func TestRelayNoCloseWrite(t *testing.T) {
	app, a := net.Pipe()
	b, server := tcpPair(t)
	done := make(chan relayResult, 1)
	go func() {
		var res relayResult
		res.aToB, res.bToA, res.err = netutil.Relay(a, b)
		done <- res
	}()
	go func() {
		server.Write([]byte("world"))
		server.CloseWrite()
	}()
	got, err := io.ReadAll(app) // EOF once Relay closes a after server's half-close
	if err != nil || string(got) != "world" {
		t.Fatalf("app read %q, %v; want %q", got, err, "world")
	}
	app.Close()
	if rest, err := io.ReadAll(server); err != nil || len(rest) != 0 {
		t.Fatalf("server read %q, %v; want EOF", rest, err)
	}
	res := <-done
	if res.err != nil || res.aToB != 0 || res.bToA != 5 {
		t.Fatalf("Relay = (%d, %d, %v), want (0, 5, nil)", res.aToB, res.bToA, res.err)
	}
}

// TestRelayCountedLive: the counters show bytes while the connection is open.
func TestRelayCountedLive(t *testing.T) {
	const n = 1 << 20
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			var up, down atomic.Int64
			r := newRig(t, p.mode, &up, &down)
			go func() {
				r.client.Write(make([]byte, n))
				r.server.Write(make([]byte, 3))
			}()
			if _, err := io.ReadFull(r.server, make([]byte, n)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(r.client, make([]byte, 3)); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for up.Load() != n && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if got := up.Load(); got != n {
				t.Fatalf("live a->b counter = %d, want %d", got, n)
			}
			r.client.CloseWrite()
			r.server.CloseWrite()
			res := r.wait(t)
			if res.err != nil || res.aToB != n || res.bToA != 3 {
				t.Fatalf("Relay = (%d, %d, %v), want (%d, 3, nil)", res.aToB, res.bToA, res.err, n)
			}
			if up.Load() != res.aToB || down.Load() != res.bToA {
				t.Fatalf("counters (%d, %d) != returned (%d, %d)", up.Load(), down.Load(), res.aToB, res.bToA)
			}
		})
	}
}

// pump drives chunks client->server through a rig: each call of step sends
// and receives one chunk, allocating nothing itself.
type pump struct {
	r     *rig
	kick  chan struct{}
	wbuf  []byte
	rbuf  []byte
	errc  chan error
	quitc chan struct{}
}

const pumpChunk = 1 << 20

func newPump(t testing.TB, r *rig) *pump {
	p := &pump{r: r, kick: make(chan struct{}), wbuf: make([]byte, pumpChunk), rbuf: make([]byte, pumpChunk),
		errc: make(chan error, 1), quitc: make(chan struct{})}
	go func() { // the writer; ends when quitc closes (Cleanup below waits for it)
		for {
			select {
			case <-p.kick:
				if _, err := r.client.Write(p.wbuf); err != nil {
					p.errc <- err
					return
				}
			case <-p.quitc:
				p.errc <- nil
				return
			}
		}
	}()
	t.Cleanup(func() { close(p.quitc); <-p.errc })
	return p
}

func (p *pump) step() error {
	p.kick <- struct{}{}
	_, err := io.ReadFull(p.r.server, p.rbuf)
	return err
}

// TestRelayZeroAllocs: moving data through an established relay allocates
// nothing, on either path, counted or not.
func TestRelayZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation budgets do not hold under the race detector")
	}
	for _, p := range paths {
		for _, counted := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/counted=%v", p.name, counted), func(t *testing.T) {
				var ca, cb *atomic.Int64
				if counted {
					ca, cb = new(atomic.Int64), new(atomic.Int64)
				}
				pm := newPump(t, newRig(t, p.mode, ca, cb))
				var err error
				for range 4 { // warm up pools and buffers
					if err = pm.step(); err != nil {
						t.Fatal(err)
					}
				}
				allocs := testing.AllocsPerRun(32, func() {
					if e := pm.step(); e != nil {
						err = e
					}
				})
				if err != nil {
					t.Fatal(err)
				}
				// Per MiB moved; a stray runtime allocation may show up as a
				// fraction, a per-read allocation would be dozens.
				if allocs > 0.5 {
					t.Fatalf("%.2f allocations per MiB relayed, want 0", allocs)
				}
			})
		}
	}
}

func benchmarkRelay(b *testing.B, mode relayMode, counted bool) {
	var ca, cb *atomic.Int64
	if counted {
		ca, cb = new(atomic.Int64), new(atomic.Int64)
	}
	pm := newPump(b, newRig(b, mode, ca, cb))
	b.SetBytes(pumpChunk)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := pm.step(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRelayTCP relays between two *net.TCPConn: splice(2).
func BenchmarkRelayTCP(b *testing.B) { benchmarkRelay(b, modeSplice, false) }

// BenchmarkRelayTCPCounted is BenchmarkRelayTCP through RelayCounted, as
// the proxy calls it.
func BenchmarkRelayTCPCounted(b *testing.B) { benchmarkRelay(b, modeSplice, true) }

// BenchmarkRelayCopy relays through the pooled user-space buffer
// (Read/Write: the path of an HBONE stream's direction).
func BenchmarkRelayCopy(b *testing.B) { benchmarkRelay(b, modeUserspace, false) }

// BenchmarkRelayRead relays from a raw TCP socket read with read(2) into a
// pooled buffer (the path of a TCP leg towards an HBONE stream).
func BenchmarkRelayRead(b *testing.B) { benchmarkRelay(b, modeMixed, false) }

// TestRelayNoGoroutineLeak: every goroutine Relay starts has ended when it
// returns.
func TestRelayNoGoroutineLeak(t *testing.T) {
	before := leakcheck.Baseline()
	for range 20 {
		for _, p := range paths {
			func() {
				client, a := tcpPair(t)
				b, server := tcpPair(t)
				ra, rb := p.mode.wrap(a, b)
				done := make(chan struct{})
				go func() { netutil.Relay(ra, rb); close(done) }()
				client.Write([]byte("x"))
				client.CloseWrite()
				io.ReadAll(server)
				server.CloseWrite()
				io.ReadAll(client)
				<-done
				client.Close()
				server.Close()
			}()
		}
	}
	leakcheck.Wait(t, before)
}
