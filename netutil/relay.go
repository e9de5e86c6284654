package netutil

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// relayBufSize is the user-space copy buffer of one relay direction.
const relayBufSize = 64 << 10

// relayBufPool holds *[relayBufSize]byte; a direction takes a buffer when
// bytes are ready to move and returns it before it could wait for the peer.
var relayBufPool = sync.Pool{New: func() any { return new([relayBufSize]byte) }}

// Relay copies a->b and b->a until both directions have ended, then closes
// both connections and returns the bytes written each way. Relay owns a and b
// for its whole run.
//
// A direction ends at EOF from its source; the end is passed on as a
// half-close of the destination (CloseWrite when the connection has it, a full
// Close otherwise), while the other direction keeps flowing. If either
// direction fails (read or write error) both connections are closed at once,
// which ends the other direction too, and that first error is returned
// (wrapped errors classify with errors.Is; see IsDisconnect). A clean end of
// both directions returns a nil error.
//
// Relay has no timeouts of its own: set deadlines on the connections, or close
// one from outside, to stop it (it then returns that error, which matches
// net.ErrClosed for a Close).
//
// When a and b are both *net.TCPConn the bytes move by splice(2) without
// entering user space, through a pipe taken from a shared pool only while
// bytes are in flight. Otherwise each direction copies through a pooled
// 64 KiB buffer, also held only while bytes are in flight. An idle direction
// holds neither: it waits in Go's netpoller (a TCP source) or in a Read of a
// 64-byte buffer (any other source). No path allocates per read.
func Relay(a, b net.Conn) (aToB, bToA int64, err error) {
	return relay(a, b, nil, nil)
}

// RelayCounted is Relay that also adds the bytes of each direction to
// aToBCount and bToACount (either may be nil) as they are written, so metrics
// can read live totals of long connections with atomic loads. Every chunk is
// added as soon as it is written (on the splice path, a chunk is what one
// splice into the pipe moved, at most the pipe's size).
func RelayCounted(a, b net.Conn, aToBCount, bToACount *atomic.Int64) (aToB, bToA int64, err error) {
	return relay(a, b, aToBCount, bToACount)
}

// relayState is shared by the two directions of one relay; one allocation
// holds everything a relay needs for its whole run.
type relayState struct {
	a, b      net.Conn
	closeOnce sync.Once
	firstErr  error // written once inside closeOnce, read after both directions ended

	// fullyClosedA/B record that a direction could not half-close its
	// destination and closed it instead; the reverse direction then treats a
	// read error on that connection as its end of stream.
	fullyClosedA, fullyClosedB atomic.Bool

	// aToB and bToA are the directions' copy state, each owned by the
	// goroutine that runs that direction.
	aToB, bToA dirState
}

func relay(a, b net.Conn, ca, cb *atomic.Int64) (aToB, bToA int64, err error) {
	s := &relayState{a: a, b: b}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // owned by this call: waited for below
		defer wg.Done()
		bToA = s.direction(&s.bToA, a, b, &s.fullyClosedA, &s.fullyClosedB, cb)
	}()
	aToB = s.direction(&s.aToB, b, a, &s.fullyClosedB, &s.fullyClosedA, ca)
	wg.Wait()
	s.closeBoth(nil)
	return aToB, bToA, s.firstErr
}

// closeBoth closes both connections once; the first caller's err is kept.
func (s *relayState) closeBoth(err error) {
	s.closeOnce.Do(func() {
		s.firstErr = err
		s.a.Close()
		s.b.Close()
	})
}

// direction copies src to dst and passes the end on. dstClosed is set when dst
// had to be fully closed in place of a half-close; srcClosed tells whether the
// other direction did that to src.
func (s *relayState) direction(d *dirState, dst, src net.Conn, dstClosed, srcClosed *atomic.Bool, count *atomic.Int64) int64 {
	d.count = count
	n, err, handled := d.copyRaw(dst, src)
	if !handled {
		n, err = d.copyConn(dst, src)
	}
	if err != nil && srcClosed.Load() {
		err = nil // we closed src ourselves: that is its end of stream
	}
	if err != nil {
		s.closeBoth(err)
		return n
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil && !isClosedOrGone(err) {
			s.closeBoth(err)
		}
		return n
	}
	dstClosed.Store(true)
	dst.Close()
	return n
}

// smallBufSize is the buffer a direction whose source is not a raw socket
// reads into while it has no pooled buffer: it is what an idle direction
// holds, so it is small; a read that fills it moves the direction to a
// pooled buffer until a read leaves part of that buffer empty.
const smallBufSize = 64

// dirState is one direction of a relay. Owned by the goroutine running it.
type dirState struct {
	count *atomic.Int64 // may be nil
	total int64         // bytes written to the destination
	small [smallBufSize]byte
	raw   rawDir // the platform's raw-socket state (relay_linux.go)
}

// wrote accounts n bytes written to the destination.
func (d *dirState) wrote(n int) {
	d.total += int64(n)
	if d.count != nil {
		d.count.Add(int64(n))
	}
}

// copyConn copies src to dst through net.Conn Read and Write, for a source
// that is not a raw socket (an HBONE stream, a net.Pipe). It ignores
// ReaderFrom and WriterTo, which could allocate a fresh buffer per copy.
//
// An idle direction waits in a Read of d.small and holds no pooled buffer.
// A read that fills d.small means more bytes are probably waiting: the
// direction takes a pooled buffer and keeps it while reads fill it, and gives
// it back before the first Read that could wait for the peer.
func (d *dirState) copyConn(dst, src net.Conn) (int64, error) {
	var bp *[relayBufSize]byte
	defer func() {
		if bp != nil {
			relayBufPool.Put(bp)
		}
	}()
	for {
		var buf []byte
		var nr int
		var rerr error
		if bp == nil {
			nr, rerr = src.Read(d.small[:])
			buf = d.small[:nr]
			if nr == len(d.small) && rerr == nil {
				bp = relayBufPool.Get().(*[relayBufSize]byte)
				copy(bp[:], d.small[:])
				var m int
				m, rerr = src.Read(bp[nr:])
				nr += m
				buf = bp[:nr]
			}
		} else {
			nr, rerr = src.Read(bp[:])
			buf = bp[:nr]
		}
		if nr > 0 {
			nw, werr := dst.Write(buf)
			d.wrote(nw)
			if werr != nil {
				return d.total, werr
			}
			if nw != nr {
				return d.total, io.ErrShortWrite
			}
		}
		if bp != nil && nr < len(bp) {
			// The source had no more than this: the next Read may wait.
			relayBufPool.Put(bp)
			bp = nil
		}
		if rerr == io.EOF {
			return d.total, nil
		}
		if rerr != nil {
			return d.total, rerr
		}
	}
}

// isClosedOrGone reports errors of a half-close that only mean the peer or we
// already tore the connection down.
func isClosedOrGone(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// IsDisconnect reports whether err from Relay only says that a peer went away
// ungracefully (reset, broken pipe, not connected, unexpected EOF). ztunnel
// does not count these as connection failures; callers use this to classify.
func IsDisconnect(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}
