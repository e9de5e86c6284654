package hbone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/http2"
)

// Stream is one CONNECT stream used as a net.Conn. Read, Write, CloseWrite,
// Close and the deadline setters are safe for concurrent use.
//
// Client streams come from ClientConn.Connect or Pool.Connect and are open
// (200) when returned. Server streams are handed to a Handler, which must
// answer with Respond(200) (tunnel open) or Reject(code).
type Stream struct {
	// Fields are ordered so that the Stream (one per relayed HBONE
	// connection at each end) fits Go's 176-byte allocation class;
	// TestStreamSize keeps it there.

	// Immutable after creation.
	c  *conn
	id uint32

	// flags holds the stream's atomic marks (streamRstSent, streamWBusy,
	// streamDoneRun, streamNotifySet, streamDetached): one word, where five
	// atomic.Bools took 20 bytes.
	flags atomic.Uint32

	// sendWindow is the stream's send window; guarded by c.mu.
	sendWindow int64

	// wwaiters counts the writers waiting for streamWBusy (see acquireWrite).
	wwaiters atomic.Int32

	client bool // immutable after creation
	// connWaiting: the stream is in c.connWaiters; guarded by c.mu.
	connWaiting bool

	mu   sync.Mutex // guards the fields below, down to offers
	recv recvBuf
	// rwait and rwaitLen are the buffer of the one reader blocked in Read
	// for data (its first byte and length: a slice would be 12 bytes more
	// of every stream), which the read loop fills straight from the
	// connection's bufio.Reader while recv is empty (one copy fewer than
	// through recv); rgot counts the bytes it put there. Only the reader
	// that set rwait clears it; the read loop writes to it only under mu,
	// so the buffer is never touched once its Read returned. See lentLocked.
	rwait    *byte
	rwaitLen int32 // at most math.MaxInt32 bytes are lent
	rgot     int32
	// status: client: response status received; server: status sent.
	status int32
	// The stream's receive window, in int32 as HTTP/2 bounds it (2^31-1).
	recvWindow  int32 // bytes the peer may still send on this stream
	unacked     int32 // bytes consumed, not yet returned by WINDOW_UPDATE
	recvEnd     bool  // the peer's END_STREAM arrived
	wantEnd     bool  // CloseWrite/Reject started: no more Writes
	sentEnd     bool  // our END_STREAM was written
	localClosed bool  // Close was called
	err         error // terminal error (reset, connection failure)
	// waiter is the one ReadWaiter NotifyReadable keeps, told and cleared by
	// the next wake; streamNotifySet mirrors waiter != nil. offers: the
	// waiter came through NotifyReadableWith and takes arriving bytes
	// (Offer); kept and cleared with waiter.
	waiter     ReadWaiter
	finished   bool // the stream left its connection
	doneClosed bool // the stream terminated (err set) or was closed
	offers     bool

	// The wake-up channels below are made by the first goroutine that has
	// to wait on one, so a stream nobody waits on (an idle relay parked
	// with NotifyReadable) holds none: each costs about 100 bytes.
	//
	// done is closed when the stream terminates or is closed; nil until
	// a waiter needed it (doneChLocked).
	done chan struct{}
	// wwake (capacity 1) passes the write side from one writer to a
	// waiting one, and wakes waiting writers when the write deadline
	// changes.
	wwake chan struct{}
	// wakeR points to a chan struct{} of capacity 1, stored by the first
	// reader that has to wait (or by connect, waiting for the response):
	// data, END_STREAM, the response, a failure or a new read deadline.
	// Atomic so that wake-ups are sent without s.mu. connect drops its
	// channel when it returns (no reader can be waiting yet), so a stream
	// whose reads never wait holds none.
	wakeR atomic.Pointer[chan struct{}]
	// wakeW (capacity 1) tells a writer waiting in reserveSend that a send
	// window grew or the write deadline changed. Guarded by c.mu.
	wakeW chan struct{}

	// dls holds the read and write deadlines, made by the first deadline
	// setter: relays never set one, and the pair is 48 bytes.
	dls atomic.Pointer[streamDeadlines]
}

// Stream.flags bits.
const (
	// streamRstSent is set before we queue RST_STREAM or learn of a reset;
	// writeData checks it under c.wmu so no DATA follows a reset.
	streamRstSent uint32 = 1 << iota
	// streamWBusy is held by the one writer of DATA, END_STREAM or the
	// response HEADERS at a time. Writers that find it taken count
	// themselves in wwaiters and wait on wwake (see acquireWrite).
	streamWBusy
	// streamDoneRun is set by the one runOnDone call that runs the
	// connection's streamDone. The stream leaves its connection once, so
	// there is no second caller to make wait.
	streamDoneRun
	// streamNotifySet mirrors waiter != nil, so wakes of streams nobody
	// watches skip the lock.
	streamNotifySet
	// streamDetached: the Handler keeps the stream after it returns (Detach).
	streamDetached
)

// has reports whether flag is set.
func (s *Stream) has(flag uint32) bool { return s.flags.Load()&flag != 0 }

// set sets flag.
func (s *Stream) set(flag uint32) { s.flags.Or(flag) }

// take sets flag and reports whether it was clear (a test-and-set).
func (s *Stream) take(flag uint32) bool { return s.flags.Or(flag)&flag == 0 }

// drop clears flag.
func (s *Stream) drop(flag uint32) { s.flags.And(^flag) }

// streamDeadlines are a stream's read and write deadlines.
type streamDeadlines struct {
	read, write deadline
}

// deadlines returns the stream's deadlines, making them first.
func (s *Stream) deadlines() *streamDeadlines {
	if d := s.dls.Load(); d != nil {
		return d
	}
	s.dls.CompareAndSwap(nil, new(streamDeadlines))
	return s.dls.Load()
}

// readDeadline returns a channel closed when the read deadline passes; nil
// (never ready) while no deadline was ever set.
func (s *Stream) readDeadline() chan struct{} {
	if d := s.dls.Load(); d != nil {
		return d.read.wait()
	}
	return nil
}

// writeDeadline is readDeadline for the write deadline.
func (s *Stream) writeDeadline() chan struct{} {
	if d := s.dls.Load(); d != nil {
		return d.write.wait()
	}
	return nil
}

func newStream(c *conn, id uint32, client bool) *Stream {
	return &Stream{
		c:          c,
		id:         id,
		client:     client,
		recvWindow: int32(c.cfg.StreamWindow), // at most maxWindow (withDefaults)
	}
}

// closedChan is what doneChLocked returns for a stream already done.
var closedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// doneChLocked returns a channel closed when the stream is done, making
// s.done if no one waited before. s.mu must be held.
func (s *Stream) doneChLocked() chan struct{} {
	if s.doneClosed {
		return closedChan
	}
	if s.done == nil {
		s.done = make(chan struct{})
	}
	return s.done
}

// readWake returns the readers' wake-up channel, nil if no reader ever
// waited.
func (s *Stream) readWake() chan struct{} {
	if p := s.wakeR.Load(); p != nil {
		return *p
	}
	return nil
}

// makeReadWake returns the readers' wake-up channel, making it first.
func (s *Stream) makeReadWake() chan struct{} {
	if ch := s.readWake(); ch != nil {
		return ch
	}
	ch := make(chan struct{}, 1)
	s.wakeR.CompareAndSwap(nil, &ch)
	return s.readWake()
}

// signalR wakes one waiting reader, if a reader ever waited. It never
// blocks and may be called with or without s.mu.
func (s *Stream) signalR() { signal(s.readWake()) }

// answered reports whether a response status was sent (server) or received
// (client).
func (s *Stream) answered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status != 0
}

// Context returns the context of the stream's connection: on the server side the one given to
// ServeConn (cancelled when it ends), on the client side context.Background.
func (s *Stream) Context() context.Context { return s.c.ctx }

// Transport returns the connection the stream's HTTP/2 connection runs
// over (what ServeConn or Dial was given): for its owner to recognise the
// streams of a connection it judges, not to read or write.
func (s *Stream) Transport() net.Conn { return s.c.nc }

// LocalAddr returns the local address of the underlying connection.
func (s *Stream) LocalAddr() net.Addr { return s.c.nc.LocalAddr() }

// RemoteAddr returns the remote address of the underlying connection.
func (s *Stream) RemoteAddr() net.Addr { return s.c.nc.RemoteAddr() }

// SetDeadline sets the read and write deadlines.
func (s *Stream) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	s.deadlines().write.set(t)
	return nil
}

// SetReadDeadline sets the deadline for Read calls.
func (s *Stream) SetReadDeadline(t time.Time) error {
	s.deadlines().read.set(t)
	// A reader blocked before the first deadline waits on a nil channel
	// (deadlines are lazy): wake it so it picks up the new one. A reader makes
	// wakeR before it reads the deadline it waits with, so either it sees
	// the new deadline or this sees its channel.
	s.signalR()
	return nil
}

// SetWriteDeadline sets the deadline for Write and CloseWrite calls.
func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.deadlines().write.set(t)
	// Writers waiting with the old deadline (perhaps none: the nil channel
	// of a lazy deadline) look again. Like readers, they make their wake-up
	// channel before they read the deadline.
	s.mu.Lock()
	ww := s.wwake
	s.mu.Unlock()
	signal(ww)
	s.c.mu.Lock()
	ww = s.wakeW
	s.c.mu.Unlock()
	signal(ww)
	return nil
}

// Read reads tunnel bytes. It returns io.EOF after the peer's END_STREAM
// and the buffered data before it; after a reset, buffered data comes
// first and then the error.
//
// A reader that has to wait lends p to the read loop, which copies DATA
// payload into it directly while nothing is buffered on the stream.
func (s *Stream) Read(p []byte) (int, error) {
	lent := false // p is in s.rwait
	for {
		dl := s.readDeadline()
		s.mu.Lock()
		if lent {
			lent = false
			n := int(s.rgot)
			s.rwait, s.rwaitLen, s.rgot = nil, 0, 0
			if n > 0 {
				// Bytes the read loop delivered (already credited); top up
				// from what was buffered after them.
				if n < len(p) && s.recv.len() > 0 {
					return s.readBufferedLocked(p, n)
				}
				s.mu.Unlock()
				return n, nil
			}
		}
		if isClosed(dl) {
			s.mu.Unlock()
			s.signalR() // pass the wake-up on to another blocked reader
			return 0, os.ErrDeadlineExceeded
		}
		if s.localClosed {
			s.mu.Unlock()
			return 0, errStreamClosed
		}
		if s.refusedByStatusLocked() {
			// An opened stream (ClientConn.Open) whose request was refused:
			// whatever the answer carried is not tunnel data.
			code := int(s.status)
			s.mu.Unlock()
			return 0, &StatusError{Code: code}
		}
		if s.recv.len() > 0 {
			if len(p) == 0 {
				s.mu.Unlock()
				return 0, nil
			}
			return s.readBufferedLocked(p, 0)
		}
		if s.recvEnd {
			s.mu.Unlock()
			s.signalR()
			return 0, io.EOF
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return 0, err
		}
		if len(p) == 0 {
			s.mu.Unlock()
			return 0, nil
		}
		if s.rwait == nil {
			s.rwait, s.rwaitLen, s.rgot, lent = &p[0], int32(min(len(p), math.MaxInt32)), 0, true
		}
		wake := s.readWake()
		if wake == nil {
			// The first wait of this stream: make the channel, then look
			// again, since wake-ups and a new deadline sent before it
			// existed went nowhere.
			s.makeReadWake()
			s.mu.Unlock()
			continue
		}
		done := s.doneChLocked()
		s.mu.Unlock()
		select {
		case <-wake:
		case <-dl:
		case <-done:
		}
	}
}

// ReadWaiter is what NotifyReadable keeps: Readable is called once, on the
// goroutine that changes the stream's state and without any lock held; Offer
// takes arriving bytes (NotifyReadableWith only). It is the same type as
// netutil.ReadWaiter (both are aliases of this interface literal), so a
// relay direction is one without this package importing netutil.
type ReadWaiter = interface {
	Readable()
	Offer(b []byte) int
}

// NotifyReadable arranges for w.Readable to be called once, on the goroutine
// that changes the stream's state and without any lock held, when Read would
// return without waiting: bytes arrived, END_STREAM, a reset, a connection
// failure or Close. It returns false, keeping nothing, when Read would not
// wait now. A stream keeps one waiter: a later call replaces it. Readable
// must not block; read deadlines do not trigger it. It makes Stream a
// netutil.ReadNotifier, so an idle relay direction holds no goroutine.
func (s *Stream) NotifyReadable(w ReadWaiter) bool {
	return s.notifyReadable(w, false)
}

// NotifyReadableWith is NotifyReadable that also offers the bytes that
// arrive while w waits to w.Offer first, on the connection's read loop,
// straight from the connection's buffer: Offer takes what it can without
// waiting (a non-blocking socket write) and returns how many bytes it took.
// What it took is consumed, and w stays registered as if nothing had
// happened; the rest is buffered and w.Readable is called. Offer must not
// block and must not call the stream. It makes Stream a
// netutil.DirectNotifier, so a relay moves arriving bytes with no copy of
// its own.
func (s *Stream) NotifyReadableWith(w ReadWaiter) bool {
	return s.notifyReadable(w, true)
}

func (s *Stream) notifyReadable(w ReadWaiter, offers bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recv.len() > 0 || s.recvEnd || s.err != nil || s.localClosed || s.refusedByStatusLocked() {
		return false
	}
	s.waiter, s.offers = w, offers
	s.set(streamNotifySet)
	return true
}

// offerLocked passes b to the Offer of a parked reader (NotifyReadableWith)
// when nothing is buffered before it. It reports how many bytes Offer took
// and, when it did not take them all or the stream changed meanwhile, the
// waiter to tell (Readable) once s.mu is released (the registration is then
// gone). s.mu is held on entry and on return, released around the write.
func (s *Stream) offerLocked(b []byte) (took int, tell ReadWaiter) {
	if !s.offers || s.recv.len() > 0 || s.rwait != nil || len(b) == 0 {
		return 0, nil
	}
	w := s.waiter
	s.waiter, s.offers = nil, false
	s.drop(streamNotifySet)
	s.mu.Unlock()
	took = w.Offer(b)
	s.mu.Lock()
	if took == len(b) && s.recv.len() == 0 && !s.recvEnd && s.err == nil && !s.localClosed && !s.has(streamNotifySet) {
		s.waiter, s.offers = w, true // still parked
		s.set(streamNotifySet)
		return took, nil
	}
	return took, w
}

// wake tells readers that the stream's state changed: a reader blocked in
// Read, and the NotifyReadable callback. Call it after the change, without
// s.mu.
func (s *Stream) wake() {
	s.signalR()
	if !s.has(streamNotifySet) {
		return
	}
	s.mu.Lock()
	w := s.waiter
	s.waiter, s.offers = nil, false
	s.drop(streamNotifySet)
	s.mu.Unlock()
	if w != nil {
		w.Readable()
	}
}

// Detach tells the Server that the Handler keeps a stream it has answered
// after it returns (to relay it on goroutines of its own): the Server then
// neither closes it nor answers it when the Handler returns, and whoever
// holds it must Close it. It has no effect on client streams.
func (s *Stream) Detach() { s.set(streamDetached) }

// readBufferedLocked moves buffered bytes into p[n:] (n bytes of p are
// already filled and credited), credits what it moved and unlocks s.mu.
func (s *Stream) readBufferedLocked(p []byte, n int) (int, error) {
	k := s.recv.read(p[n:])
	more := s.recv.len() > 0
	wu := s.creditLocked(int64(k))
	s.mu.Unlock()
	if wu > 0 {
		s.c.enqueue(ctrlFrame{kind: ctrlWindowUpdate, stream: s.id, val: uint32(wu)})
	}
	s.c.creditConn(int64(k))
	if more {
		s.signalR() // another reader may be waiting
	}
	return n + k, nil
}

// creditLocked accounts n consumed bytes and returns the stream
// WINDOW_UPDATE increment to send now (0: not yet). s.mu must be held.
func (s *Stream) creditLocked(n int64) int64 {
	s.unacked += int32(n) // n is at most what the window let in
	if s.recvEnd || int64(s.unacked) < int64(s.c.cfg.StreamWindow)/2 {
		return 0
	}
	u := s.unacked
	s.unacked = 0
	s.recvWindow += u
	return int64(u)
}

// onData is called by the read loop for a DATA frame of this stream whose
// frame header (and pad length byte) have been read. It copies dataLen
// bytes straight from the connection's bufio.Reader into the receive
// buffer, never holding s.mu while the socket blocks, then skips padding.
// frameLen is the flow-controlled length; pad counts the padding plus the
// pad length byte.
func (s *Stream) onData(c *conn, dataLen, frameLen, pad int, end bool) error {
	s.mu.Lock()
	var serr error
	switch {
	case s.recvEnd:
		serr = streamError{StreamID: s.id, Code: http2.ErrCodeStreamClosed}
	case int64(frameLen) > int64(s.recvWindow):
		serr = streamError{StreamID: s.id, Code: http2.ErrCodeFlowControl}
	}
	if serr != nil {
		s.mu.Unlock()
		err := c.discard(frameLen - min(pad, 1))
		c.creditConn(int64(frameLen))
		if err != nil {
			return err
		}
		return serr
	}
	s.recvWindow -= int32(frameLen) // at most recvWindow, checked above
	drop := s.localClosed
	s.mu.Unlock()

	for left := dataLen; left > 0; {
		if c.br.Buffered() == 0 {
			if _, err := c.br.Peek(1); err != nil {
				return err
			}
		}
		k := min(c.br.Buffered(), left)
		if !drop {
			b, _ := c.br.Peek(k)
			var direct int64
			var wu int64
			var notified ReadWaiter
			var lost int64
			wake := true
			s.mu.Lock()
			drop = s.localClosed
			if !drop {
				if s.rwait != nil && s.recv.len() == 0 && s.rgot < s.rwaitLen {
					// A reader waits and nothing is buffered before these
					// bytes: hand them over without the receive buffer.
					m := copy(s.lentLocked()[s.rgot:], b)
					s.rgot += int32(m)
					b = b[m:]
					direct = int64(m)
				} else if s.offers {
					// A parked relay: its destination takes what it can
					// straight from the connection's buffer.
					m, w := s.offerLocked(b)
					// The waiter keeps its registration only when it took
					// everything; bytes left for Read need a wake.
					notified, wake = w, w == nil && m < len(b)
					b = b[m:]
					direct = int64(m)
					if s.localClosed {
						// Closed while the sink wrote: nobody will read
						// the rest, so it goes back to the connection's
						// window at once instead of into the buffer.
						lost = int64(len(b))
						b = nil
					}
				}
				if direct > 0 {
					wu = s.creditLocked(direct)
				}
				if len(b) > 0 {
					s.recv.write(b)
				}
			}
			s.mu.Unlock()
			if notified != nil {
				s.signalR()
				notified.Readable()
			} else if wake {
				s.wake()
			}
			if lost > 0 {
				c.creditConn(lost)
			}
			if direct > 0 {
				if wu > 0 {
					c.enqueue(ctrlFrame{kind: ctrlWindowUpdate, stream: s.id, val: uint32(wu)})
				}
				c.creditConn(direct)
			}
		}
		c.br.Discard(k)
		left -= k
	}
	if err := c.discard(pad - 1); err != nil {
		return err
	}
	// Padding (and dropped data) is returned to the peer at once.
	credit := int64(frameLen - dataLen)
	if drop {
		credit = int64(frameLen)
	}
	if credit > 0 {
		c.creditConn(credit)
		s.mu.Lock()
		wu := s.creditLocked(credit)
		s.mu.Unlock()
		if wu > 0 {
			c.enqueue(ctrlFrame{kind: ctrlWindowUpdate, stream: s.id, val: uint32(wu)})
		}
	}
	if end {
		s.onRemoteEnd()
	}
	return nil
}

// onRemoteEnd records the peer's END_STREAM.
func (s *Stream) onRemoteEnd() {
	s.mu.Lock()
	s.recvEnd = true
	fin := s.sentEnd && s.markFinishedLocked()
	s.mu.Unlock()
	s.wake()
	if fin {
		s.c.removeStream(s)
	}
}

// markFinishedLocked marks the stream as leaving its connection; it
// reports whether the caller made the transition. s.mu must be held.
func (s *Stream) markFinishedLocked() bool {
	if s.finished {
		return false
	}
	s.finished = true
	return true
}

func (s *Stream) closeDoneLocked() {
	if !s.doneClosed {
		s.doneClosed = true
		if s.done != nil {
			close(s.done)
		}
	}
}

// lentLocked is the buffer a reader blocked in Read lent (rwait); s.mu is
// held and rwait is not nil.
func (s *Stream) lentLocked() []byte { return unsafe.Slice(s.rwait, s.rwaitLen) }

// runOnDone runs the connection's streamDone, once. Only the pool sets one,
// on client connections.
func (s *Stream) runOnDone() {
	if s.c.streamDone != nil && s.take(streamDoneRun) {
		s.c.streamDone()
	}
}

// termErr is the error of a stream that cannot write any more.
func (s *Stream) termErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.termErrLocked()
}

func (s *Stream) termErrLocked() error {
	switch {
	case s.localClosed:
		return errStreamClosed
	case s.err != nil:
		return s.err
	}
	return errStreamClosed
}

// writableLocked reports why the stream cannot take DATA, or nil.
func (s *Stream) writableLocked() error {
	switch {
	case s.localClosed:
		return errStreamClosed
	case s.err != nil:
		return s.err
	case s.wantEnd:
		return errWriteClosed
	case s.status != http.StatusOK && !(s.client && s.status == 0):
		// A client stream may send before its answer (it was opened
		// with Open, or this is early data); a refused one may not.
		return errNotOpen
	}
	return nil
}

// refusedByStatusLocked reports whether a client stream was answered with a
// status other than 200. s.mu must be held.
func (s *Stream) refusedByStatusLocked() bool {
	return s.client && s.status != 0 && s.status != http.StatusOK
}

// Refusal reports why a client stream's request failed: *StatusError when
// it was answered with a status other than 200, or the error that ended the
// stream before any answer came (the peer's reset, the connection's
// failure, no answer by the deadline of Open). It returns nil for a stream
// answered 200, one still waiting for its answer, one that Close ended
// before its answer, and server streams.
func (s *Stream) Refusal() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.refusedLocked():
		return nil
	case s.status != 0:
		return &StatusError{Code: int(s.status)}
	}
	return s.err
}

// Refused reports whether Refusal would return an error, without making
// one (netutil.Refuser: a relay resets its other side when the tunnel it
// started on before the answer was refused).
func (s *Stream) Refused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refusedLocked()
}

// refusedLocked is Refused: refused by status, or ended by an error of the
// peer or the connection before any answer. s.mu must be held.
func (s *Stream) refusedLocked() bool {
	if s.refusedByStatusLocked() {
		return true
	}
	if !s.client || s.status != 0 || s.err == nil {
		return false
	}
	var re *ResetError
	return !errors.As(s.err, &re) || re.Remote // not our own reset (Close)
}

// answerTimedOut resets an opened stream still waiting for its answer past
// the deadline given to Open.
func (s *Stream) answerTimedOut() {
	s.mu.Lock()
	waiting := s.status == 0 && !s.finished
	if waiting && s.err == nil {
		s.err = errNoAnswer
	}
	s.mu.Unlock()
	if waiting {
		s.resetLocal(http2.ErrCodeCancel)
	}
}

func (s *Stream) writable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writableLocked()
}

// acquireWrite takes the write side (streamWBusy), honouring the write deadline.
func (s *Stream) acquireWrite() error {
	if isClosed(s.writeDeadline()) {
		return os.ErrDeadlineExceeded
	}
	if s.take(streamWBusy) {
		return nil
	}
	return s.acquireWriteSlow()
}

// acquireWriteSlow waits for the write side. A waiter counts itself before
// it tries again, and releaseWrite clears streamWBusy before it looks at the
// count, so a release never misses a waiter that then sleeps.
func (s *Stream) acquireWriteSlow() error {
	s.wwaiters.Add(1)
	defer s.wwaiters.Add(-1)
	for {
		s.mu.Lock()
		if s.wwake == nil {
			s.wwake = make(chan struct{}, 1)
		}
		wake, done := s.wwake, s.doneChLocked()
		s.mu.Unlock()
		dl := s.writeDeadline() // after wwake exists: see SetWriteDeadline
		if isClosed(dl) {
			signal(wake) // a wake-up this waiter took belongs to another
			return os.ErrDeadlineExceeded
		}
		if s.take(streamWBusy) {
			return nil
		}
		select {
		case <-wake:
		case <-dl:
			signal(wake)
			return os.ErrDeadlineExceeded
		case <-done:
			signal(wake)
			return s.termErr()
		}
	}
}

// releaseWrite gives the write side back and wakes one waiting writer.
func (s *Stream) releaseWrite() {
	s.drop(streamWBusy)
	if s.wwaiters.Load() > 0 {
		s.mu.Lock()
		wake := s.wwake // nil: the waiter has not made it yet and will try again
		s.mu.Unlock()
		signal(wake)
	}
}

// Write sends p as DATA frames, blocking while the peer's flow-control
// windows are exhausted.
func (s *Stream) Write(p []byte) (int, error) {
	if err := s.acquireWrite(); err != nil {
		return 0, err
	}
	defer s.releaseWrite()
	if err := s.writable(); err != nil {
		return 0, err
	}
	n := 0
	for len(p) > 0 {
		k, err := s.reserveSend(len(p))
		if err != nil {
			return n, err
		}
		if err := s.c.writeData(s, p[:k], false); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// reserveSend waits until some send window is available on both the stream
// and the connection and takes up to want bytes of it.
func (s *Stream) reserveSend(want int) (int, error) {
	c := s.c
	for {
		dl := s.writeDeadline()
		if isClosed(dl) {
			return 0, os.ErrDeadlineExceeded
		}
		if err := s.writable(); err != nil {
			return 0, err
		}
		c.mu.Lock()
		if c.closed {
			err := c.streamErr
			c.mu.Unlock()
			return 0, err
		}
		avail := min(s.sendWindow, c.sendWindow, int64(c.peerMaxFrame), maxDataFrame)
		if avail > 0 {
			k := min(avail, int64(want))
			s.sendWindow -= k
			c.sendWindow -= k
			c.mu.Unlock()
			return int(k), nil
		}
		if s.wakeW == nil {
			s.wakeW = make(chan struct{}, 1)
		}
		wakeW := s.wakeW
		if c.sendWindow <= 0 && !s.connWaiting {
			// Once: spurious wake-ups (the peer's WINDOW_UPDATEs on the
			// stream) must not grow the list.
			s.connWaiting = true
			c.connWaiters = append(c.connWaiters, s)
		}
		c.mu.Unlock()
		s.mu.Lock()
		done := s.doneChLocked()
		s.mu.Unlock()
		dl = s.writeDeadline() // after wakeW exists: see SetWriteDeadline
		select {
		case <-wakeW:
		case <-dl:
		case <-done:
		case <-c.done:
		}
	}
}

// WriteSizeHint returns the most bytes one Write should carry for its DATA frame to leave
// the connection's socket as one TCP packet when it is flushed alone, or 0 when the
// connection cannot tell (see packet.go). Larger writes work; a bulk writer that writes in
// pieces of this size saves a short packet per piece. It makes Stream a netutil.WriteSizer.
func (s *Stream) WriteSizeHint() int { return s.c.writeHint }

// CloseWrite half-closes the stream: it sends END_STREAM and the peer's
// Read returns io.EOF, while reading here goes on.
func (s *Stream) CloseWrite() error {
	if err := s.acquireWrite(); err != nil {
		return err
	}
	defer s.releaseWrite()
	s.mu.Lock()
	if s.wantEnd {
		s.mu.Unlock()
		return nil
	}
	if err := s.writableLocked(); err != nil {
		s.mu.Unlock()
		return err
	}
	s.wantEnd = true
	s.mu.Unlock()
	return s.sendEnd()
}

// sendEnd writes END_STREAM; streamWBusy must be held and wantEnd set.
func (s *Stream) sendEnd() error {
	err := s.c.writeData(s, nil, true)
	s.mu.Lock()
	s.sentEnd = err == nil
	fin := s.sentEnd && s.recvEnd && s.markFinishedLocked()
	s.mu.Unlock()
	if fin {
		s.c.removeStream(s)
	}
	return err
}

// Close closes the stream. Unless the stream already ended both ways, it
// sends END_STREAM (when it can without waiting) and then RST_STREAM(CANCEL)
// so the peer stops sending. Data already received is discarded.
func (s *Stream) Close() error {
	s.mu.Lock()
	if s.localClosed {
		s.mu.Unlock()
		return nil
	}
	s.localClosed = true
	// Buffered bytes nobody will read go back to the connection window, which every stream of
	// the connection shares (the stream's own window dies with it).
	unread := int64(s.recv.len())
	s.recv.release()
	s.closeDoneLocked()
	finished := s.finished
	// An opened stream still waiting for its answer (ClientConn.Open) is not reset before
	// the answer if it can end its request instead: a server counts streams reset before
	// it answered against its defence from rapid resets (ours allows two per concurrent
	// stream in 10 s), and clients that go away early must not cost the connection's other
	// streams. It is reset when the answer comes (onResponseHeaders) or its deadline passes.
	waiting := !finished && s.client && s.status == 0 && s.err == nil
	canEnd := !finished && !s.wantEnd && s.err == nil && (s.status == http.StatusOK || waiting)
	s.mu.Unlock()
	s.c.creditConn(unread)
	s.wake()
	if finished {
		return nil
	}
	// A writer mid-frame holds streamWBusy: then abort instead of waiting for it.
	if canEnd && s.take(streamWBusy) {
		s.mu.Lock()
		ok := !s.wantEnd && s.err == nil
		s.wantEnd = true
		s.mu.Unlock()
		if ok {
			s.sendEnd()
		}
		s.releaseWrite()
	}
	if waiting {
		s.mu.Lock()
		later := s.sentEnd && s.status == 0 && !s.finished
		s.mu.Unlock()
		if later {
			return nil
		}
	}
	s.resetLocal(http2.ErrCodeCancel)
	return nil
}

// resetLocal resets the stream with RST_STREAM(code), unless it already
// finished.
func (s *Stream) resetLocal(code http2.ErrCode) {
	s.mu.Lock()
	if !s.markFinishedLocked() {
		s.mu.Unlock()
		return
	}
	if s.err == nil {
		s.err = &ResetError{Code: code}
	}
	s.set(streamRstSent)
	s.closeDoneLocked()
	s.mu.Unlock()
	s.wake()
	s.c.enqueue(ctrlFrame{kind: ctrlRSTStream, stream: s.id, val: uint32(code)})
	s.c.removeStream(s)
}

// resetRemote handles the peer's RST_STREAM.
func (s *Stream) resetRemote(code http2.ErrCode) {
	s.fail(&ResetError{Code: code, Remote: true})
}

// fail ends the stream with err without sending anything.
func (s *Stream) fail(err error) {
	if s.endSilently(err) {
		s.c.removeStream(s)
	}
}

// connFailed ends the stream because its connection ended; the connection
// has already forgotten it.
func (s *Stream) connFailed(err error) {
	if s.endSilently(err) {
		s.runOnDone()
	}
}

// endSilently finishes the stream with err (unless it has an error already)
// without sending anything, and wakes its waiters. It reports false when the
// stream had finished before; true makes the caller the one that lets go of
// it (fail and connFailed differ only there).
func (s *Stream) endSilently(err error) bool {
	s.mu.Lock()
	if !s.markFinishedLocked() {
		s.mu.Unlock()
		return false
	}
	if s.err == nil {
		s.err = err
	}
	s.set(streamRstSent)
	s.closeDoneLocked()
	s.mu.Unlock()
	s.wake()
	return true
}

// Respond sends the response HEADERS of a server stream; 200 opens the
// tunnel. It may be called once, and not after Reject.
func (s *Stream) Respond(status int) error { return s.respond(status, nil, false) }

// RespondWith is Respond with the fields of h sent after the status (ztunnel
// answers 200 with a baggage field). Names are sent in lower case, and
// pseudo-headers and connection-specific fields are left out, as in a
// client's Request.
func (s *Stream) RespondWith(status int, h Header) error { return s.respond(status, h, false) }

// Reject answers a server stream with status and END_STREAM; the stream is
// done (if the client has not finished sending, it is told to stop with
// RST_STREAM(NO_ERROR)).
func (s *Stream) Reject(status int) error {
	if err := s.respond(status, nil, true); err != nil {
		return err
	}
	s.mu.Lock()
	open := !s.finished && !s.recvEnd
	s.mu.Unlock()
	if open {
		s.resetLocal(http2.ErrCodeNo)
	}
	return nil
}

var errRespondClient = errors.New("hbone: Respond/Reject on a client stream")

func (s *Stream) respond(status int, h Header, end bool) error {
	if s.client {
		return errRespondClient
	}
	if status < 200 || status > 999 {
		return fmt.Errorf("hbone: invalid response status %d", status)
	}
	var fieldBuf [6]string // on the stack for up to two fields
	fields := appendFields(append(fieldBuf[:0], ":status", statusText(status)), h)
	if err := s.acquireWrite(); err != nil {
		return err
	}
	defer s.releaseWrite()
	s.mu.Lock()
	switch {
	case s.status != 0:
		s.mu.Unlock()
		return errors.New("hbone: response already sent")
	case s.localClosed || s.err != nil:
		err := s.termErrLocked()
		s.mu.Unlock()
		return err
	}
	s.status = int32(status)
	s.wantEnd = end
	s.mu.Unlock()

	c := s.c
	err := c.lockWrite()
	if err == nil && !s.has(streamRstSent) {
		err = c.writeHeadersLocked(s.id, end, fields...)
	}
	if uerr := c.unlockWrite(); err == nil {
		err = uerr
	}
	if err != nil {
		c.fail(err)
		return c.connErr()
	}
	if end {
		s.mu.Lock()
		s.sentEnd = true
		fin := s.recvEnd && s.markFinishedLocked()
		s.mu.Unlock()
		if fin {
			s.c.removeStream(s)
		}
	}
	return nil
}

// appendFields appends the fields of h to fields as name, value pairs, names
// in lower case, leaving out pseudo-headers and connection-specific fields.
func appendFields(fields []string, h Header) []string {
	for _, f := range h {
		name := strings.ToLower(f.Name) // no copy when already lower case
		if hopByHop[name] || strings.HasPrefix(name, ":") {
			continue
		}
		fields = append(fields, name, f.Value)
	}
	return fields
}

func statusText(code int) string {
	if code == http.StatusOK {
		return "200"
	}
	return strconv.Itoa(code)
}

// ---- client side ----

var (
	errDraining   = fmt.Errorf("hbone: connection is draining: %w", ErrRefused)
	errNoCapacity = fmt.Errorf("hbone: connection at the peer's stream limit: %w", ErrRefused)
	errIDsUsedUp  = fmt.Errorf("hbone: connection ran out of stream ids: %w", ErrRefused)
)

// connect opens a CONNECT stream on a client connection. The connection's
// streamDone, if set, runs exactly once when the stream is over (or at once on
// failure before the stream existed).
func (c *conn) connect(ctx context.Context, req *Request) (*Stream, error) {
	return c.request(ctx, req, true)
}

// open opens a CONNECT stream on a client connection and returns it once the
// request (with as much of req.Early as fits) is written, without waiting for
// the answer: the rest of req.Early is written at once, Write may send more
// before the answer, and Read waits for it (see ClientConn.Open). When ctx
// has a deadline, an answer that has not come by then resets the stream.
// streamDone runs as for connect.
func (c *conn) open(ctx context.Context, req *Request) (*Stream, error) {
	return c.request(ctx, req, false)
}

// request is connect (wait true) and open (wait false).
func (c *conn) request(ctx context.Context, req *Request, wait bool) (*Stream, error) {
	s := newStream(c, 0, true)
	if err := ctx.Err(); err != nil {
		s.runOnDone()
		return nil, err
	}
	method := req.Method
	if method == "" {
		method = http.MethodConnect
	}
	var fieldBuf [10]string // on the stack for up to three more fields
	fields := appendFields(append(fieldBuf[:0], ":method", method, ":authority", req.Authority), req.Header)

	// Ids must go out in increasing order: allocate under the write lock.
	early := 0 // bytes of req.Early sent with the request
	err := c.lockWrite()
	if err == nil {
		c.mu.Lock()
		switch {
		case c.closed:
			err = c.streamErr
		case c.goingAway || c.closing:
			err = errDraining
		case uint32(c.streams.len()) >= c.peerMaxStreams:
			err = errNoCapacity
		case c.nextID > maxStreamID:
			err = errIDsUsedUp
		default:
			s.id = c.nextID
			c.nextID += 2
			s.sendWindow = c.peerInitWindow
			c.streams.add(s)
			if wait && req.Response != nil {
				c.expectAnswer(s.id, req.Response)
				defer c.forgetAnswer(s.id)
			}
		}
		c.mu.Unlock()
		if err == nil {
			if err = c.writeHeadersLocked(s.id, false, fields...); err == nil && len(req.Early) > 0 {
				early, err = c.writeEarlyLocked(s, req.Early)
			}
			if err != nil {
				c.unlockWrite()
				c.fail(err)
				return nil, c.connErr()
			}
		}
	}
	if uerr := c.unlockWrite(); err == nil && uerr != nil {
		err = uerr
	}
	if err != nil {
		if s.id == 0 {
			s.runOnDone()
		}
		return nil, err
	}
	if !wait {
		if dl, ok := ctx.Deadline(); ok {
			c.awaitAnswer(s, dl)
		}
		if rest := req.Early[early:]; len(rest) > 0 {
			if _, err := s.Write(rest); err != nil {
				s.Close()
				return nil, err
			}
		}
		return s, nil
	}

	// Wait for the response or a failure; either wakes wakeR (made before
	// the state is first looked at, so no wake-up is missed). The channel
	// is dropped on return: nobody else can be waiting on it yet, a late
	// signal to it is harmless, and readers that wait later make their own.
	wake := s.makeReadWake()
	defer s.wakeR.Store(nil)
	var status int
	var serr error
	for {
		s.mu.Lock()
		status, serr = int(s.status), s.err
		s.mu.Unlock()
		if status != 0 || serr != nil {
			break
		}
		select {
		case <-wake:
		case <-ctx.Done():
			s.resetLocal(http2.ErrCodeCancel)
			return nil, fmt.Errorf("hbone: CONNECT %s: %w", req.Authority, context.Cause(ctx))
		}
	}
	if status == http.StatusOK {
		if rest := req.Early[early:]; len(rest) > 0 {
			// The windows did not take it all with the request.
			if _, err := s.Write(rest); err != nil {
				s.Close()
				return nil, err
			}
		}
		return s, nil
	}
	s.resetLocal(http2.ErrCodeCancel) // no-op if the answer ended the stream
	if status != 0 {
		return nil, &StatusError{Code: status}
	}
	return nil, serr
}

// expectAnswer records that the answer's fields on stream id go to dst
// (Request.Response). c.mu must be held.
func (c *conn) expectAnswer(id uint32, dst *Header) {
	if c.answers == nil {
		c.answers = make(map[uint32]*Header)
	}
	c.answers[id] = dst
	c.wantAnswers.Add(1)
}

// forgetAnswer drops the entry of stream id, if it is still there: its Connect
// returns, and nothing may write to its Request after that.
func (c *conn) forgetAnswer(id uint32) {
	c.mu.Lock()
	if _, ok := c.answers[id]; ok {
		delete(c.answers, id)
		c.wantAnswers.Add(-1)
	}
	c.mu.Unlock()
}

// deliverAnswer stores h, the fields of the final answer on stream id, where
// its Request asked, if it still waits. Called by the read loop.
func (c *conn) deliverAnswer(id uint32, h Header) {
	c.mu.Lock()
	if dst := c.answers[id]; dst != nil {
		*dst = h
		delete(c.answers, id)
		c.wantAnswers.Add(-1)
	}
	c.mu.Unlock()
}

// writeEarlyLocked writes as much of early as one DATA frame on the new
// stream s may carry now (flow-control windows, the peer's frame size) and
// returns how much that was. wmu must be held.
func (c *conn) writeEarlyLocked(s *Stream, early []byte) (int, error) {
	c.mu.Lock()
	k := min(s.sendWindow, c.sendWindow, int64(c.peerMaxFrame), maxDataFrame, int64(len(early)))
	if k <= 0 {
		c.mu.Unlock()
		return 0, nil
	}
	s.sendWindow -= k
	c.sendWindow -= k
	c.mu.Unlock()
	return int(k), c.writeDataLocked(s.id, early[:k], false)
}

// hopByHop lists connection-specific headers HTTP/2 forbids.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true,
	"transfer-encoding": true, "upgrade": true, "host": true, "te": true,
}
