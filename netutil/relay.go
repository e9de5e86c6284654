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

// spliceChunk bounds how many bytes one splice call may move before
// RelayCounted publishes them to its counters, so live counters lag the
// socket by at most this much on the zero-copy path.
const spliceChunk = 64 << 10

// relayBufPool holds *[relayBufSize]byte; a buffer is taken when a
// user-space copy direction starts and returned when it ends.
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
// entering user space. Otherwise each direction copies through one pooled
// 64 KiB buffer held while the direction runs. Neither path allocates per read.
func Relay(a, b net.Conn) (aToB, bToA int64, err error) {
	return relay(a, b, nil, nil)
}

// RelayCounted is Relay that also adds the bytes of each direction to
// aToBCount and bToACount (either may be nil) as they are written, so metrics
// can read live totals of long connections with atomic loads. On the
// user-space path every written chunk is added at once; on the splice path at
// least every 64 KiB and at the end of the direction.
func RelayCounted(a, b net.Conn, aToBCount, bToACount *atomic.Int64) (aToB, bToA int64, err error) {
	return relay(a, b, aToBCount, bToACount)
}

// relayState is shared by the two directions of one relay.
type relayState struct {
	a, b      net.Conn
	splice    bool // both ends are *net.TCPConn; immutable
	closeOnce sync.Once
	firstErr  error // written once inside closeOnce, read after both directions ended

	// fullyClosedA/B record that a direction could not half-close its
	// destination and closed it instead; the reverse direction then treats a
	// read error on that connection as its end of stream.
	fullyClosedA, fullyClosedB atomic.Bool
}

func relay(a, b net.Conn, ca, cb *atomic.Int64) (aToB, bToA int64, err error) {
	s := &relayState{a: a, b: b}
	_, ta := a.(*net.TCPConn)
	_, tb := b.(*net.TCPConn)
	s.splice = ta && tb

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // owned by this call: waited for below
		defer wg.Done()
		bToA = s.direction(a, b, &s.fullyClosedA, &s.fullyClosedB, cb)
	}()
	aToB = s.direction(b, a, &s.fullyClosedB, &s.fullyClosedA, ca)
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
func (s *relayState) direction(dst, src net.Conn, dstClosed, srcClosed *atomic.Bool, count *atomic.Int64) int64 {
	var n int64
	var err error
	if s.splice {
		n, err = spliceCopy(dst.(*net.TCPConn), src.(*net.TCPConn), count)
	} else {
		n, err = bufferCopy(dst, src, count)
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

// spliceCopy moves src to dst with splice(2) through (*net.TCPConn).ReadFrom.
// Without a counter it is one ReadFrom; with one it splices in chunks bounded
// by an io.LimitedReader (which ReadFrom unwraps for splice) and publishes each.
func spliceCopy(dst, src *net.TCPConn, count *atomic.Int64) (int64, error) {
	if count == nil {
		return dst.ReadFrom(src)
	}
	var total int64
	lr := io.LimitedReader{R: src}
	for {
		lr.N = spliceChunk
		n, err := dst.ReadFrom(&lr)
		total += n
		count.Add(n)
		if err != nil || n == 0 {
			return total, err
		}
	}
}

// bufferCopy copies src to dst through a pooled buffer, ignoring
// ReaderFrom/WriterTo (which could allocate a fresh buffer per copy).
func bufferCopy(dst, src net.Conn, count *atomic.Int64) (int64, error) {
	bp := relayBufPool.Get().(*[relayBufSize]byte)
	defer relayBufPool.Put(bp)
	buf := bp[:]
	var total int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			total += int64(nw)
			if count != nil {
				count.Add(int64(nw))
			}
			if werr != nil {
				return total, werr
			}
			if nw != nr {
				return total, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
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
