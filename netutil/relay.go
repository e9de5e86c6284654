package netutil

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/ztunnel-go/ztunnel/internal/workers"
)

// relayBufSize is the user-space copy buffer of one relay direction.
const relayBufSize = 64 << 10

// relayBufPool holds *[relayBufSize]byte; a direction takes a buffer when
// bytes are ready to move and returns it before it could wait for the peer.
var relayBufPool = sync.Pool{New: func() any { return new([relayBufSize]byte) }}

// Relay copies a->b and b->a until both directions have ended, then closes
// both connections and returns the bytes written each way. Relay owns a and b
// for its whole run. It is a Link run to its end on the calling goroutine's
// behalf; see Link for what the relay does.
//
// Relay ends when its peers end it (EOF both ways, a reset, an error). To end
// it from outside, use a Link and its Close: closing a or b directly does not
// wake a direction parked in the epoll loop, and the relay uses the read
// deadlines of its TCP sources itself.
func Relay(a, b net.Conn) (aToB, bToA int64, err error) {
	return RelayCounted(a, b, nil, nil)
}

// RelayCounted is Relay that also adds the bytes of each direction to
// aToBCount and bToACount (either may be nil) as they are written, so metrics
// can read live totals of long connections with atomic loads. Every chunk is
// added as soon as it is written (on the splice path, a chunk is what one
// splice into the pipe moved, at most the pipe's size).
func RelayCounted(a, b net.Conn, aToBCount, bToACount *atomic.Int64) (aToB, bToA int64, err error) {
	done := make(chan struct{})
	l := NewLink(a, b, aToBCount, bToACount, EndFunc(func(x, y int64, e error) {
		aToB, bToA, err = x, y, e
		close(done)
	}))
	l.Run()
	<-done
	return aToB, bToA, err
}

// ReadWaiter is what a relay direction gives a ReadNotifier source when it
// parks: Readable is the wake-up, Offer the direct write of a DirectNotifier.
// It is an alias of an interface literal so that a source package (hbone)
// can name the same type without importing this one.
type ReadWaiter = interface {
	// Readable is called once, without blocking locks of the caller, as
	// soon as a Read would return without waiting (bytes, end of stream, an
	// error, a local Close). It must not block.
	Readable()
	// Offer takes bytes that arrive while the direction is parked, as far
	// as the destination takes them without waiting, and returns how many
	// it took. Only a DirectNotifier calls it, on its notifying goroutine;
	// it must not wait and must not call the source.
	Offer(b []byte) int
}

// ReadNotifier is a connection that can say when a Read would not wait:
// hbone.Stream is one. A relay direction whose source is a ReadNotifier holds
// no goroutine while the source has nothing to read.
type ReadNotifier interface {
	// NotifyReadable arranges for w.Readable to be called once as soon as
	// a Read would return without waiting. It returns false and keeps
	// nothing when a Read would not wait now.
	NotifyReadable(w ReadWaiter) bool
}

// DirectNotifier is a ReadNotifier that can also offer the bytes arriving
// while a direction is parked straight to the direction's destination
// (hbone.Stream is one), through w.Offer on the notifying goroutine; the
// source calls w.Readable only when Offer did not take everything (or the
// source ended meanwhile).
type DirectNotifier interface {
	ReadNotifier
	NotifyReadableWith(w ReadWaiter) bool
}

// WriteSizer is a destination that sends a write of at most WriteSizeHint bytes as one
// network packet, and a larger one as two (hbone.Stream is one). A direction that reads a
// TCP socket for such a destination reads at most that much at a time, so that a bulk
// transfer goes out in full packets instead of a full one and a short one per read. Hints
// under half the relay's buffer are ignored: the reads they would cost outweigh a packet.
// 0 means no hint.
type WriteSizer interface {
	WriteSizeHint() int
}

// Refuser is a connection that may turn out never to have been established
// after a relay started on it: an HBONE stream opened before its answer
// (hbone.Stream is one). Refused reports whether it was refused or failed
// before it was answered.
type Refuser interface {
	Refused() bool
}

// Link is one relay between two connections, a and b, that it owns from
// NewLink on: bytes a->b and b->a until both directions have ended, then both
// connections are closed and done reports the bytes written each way and the
// first error.
//
// A direction ends at EOF from its source; the end is passed on as a
// half-close of the destination (CloseWrite when the connection has it, a full
// Close otherwise), while the other direction keeps flowing. If either
// direction fails (read or write error) both connections are closed at once,
// which ends the other direction too, and that first error is reported
// (wrapped errors classify with errors.Is; see IsDisconnect). When one of the
// connections is a Refuser refused after the relay wrote bytes to it (as the
// counter of that direction says), the other is closed with a reset
// (SO_LINGER 0) if it is TCP. A clean end of both directions reports a nil
// error; Close reports net.ErrClosed.
//
// Between two *net.TCPConn the bytes move by splice(2) without entering user
// space, through a pipe taken from a shared pool only while bytes are in
// flight. Otherwise each direction copies through a pooled 64 KiB buffer,
// also held only while bytes are in flight. No path allocates per read.
//
// Idle connections hold no goroutine. A direction runs on a goroutine while
// it has bytes to move; when its source has been silent for 25 ms (a TCP
// socket, then watched by the package's epoll loop) or at once (a ReadNotifier),
// the goroutine ends, and a new one picks the direction up when the source
// becomes readable. Sources of other kinds (a net.Pipe, a TLS connection)
// keep a goroutine in Read while idle.
//
// Once both directions are parked, the Link also lets go of Go's state of
// its TCP sockets (about 900 bytes each) and keeps them as bare descriptors
// until a direction resumes (see detach_linux.go): a, b and their RawConns
// are then guarded by dmu, and only a running direction may use them
// without it.
//
// Close the Link, never a or b directly, to end it from outside: a direction
// parked in the epoll loop does not see a socket closed under it. The Link
// sets the read deadlines of TCP sources itself (the idle timer): callers
// must not use them. Write deadlines a caller sets do not last either: a
// detached socket comes back as a new *net.TCPConn, without them.
type Link struct {
	a, b net.Conn
	done Ender // told once, by the last direction to end

	rawLink // the platform's raw sockets of a and b (relay_linux.go)

	firstErr error // written once by closeBoth's first caller, read after linkClosed

	// flags holds linkClosing, linkStarted, the fully-closed marks, the
	// count of directions not yet ended (linkRunning) and the count of
	// directions not parked (linkInUse), together so that a Link (one per
	// relayed connection, idle or not) fits Go's 208-byte allocation class
	// with an Ender (an interface, two words) for done.
	flags atomic.Uint32

	// dmu guards linkInUse, attachedAt and the detached state: which of a and
	// b are held as bare descriptors (dirState.bare) while both directions
	// are parked, and a, b and their RawConns while one is (relay_linux.go).
	// Parking directions, resuming directions, a parked direction's direct
	// writes (Offer, deliver) and closeBoth take it; nothing is called
	// under it that could take another lock of the relay's callers.
	dmu sync.Mutex
	// attachedAt is when the sockets were last attached again, in
	// milliseconds of the package's clock (mono): a Link stays attached for
	// attachHold at least, so a relay that parks and resumes in a quick
	// rhythm does not pay a detach and an attach at every pause.
	attachedAt uint32

	// aToB and bToA are the directions' copy state, each owned by the
	// goroutine running that direction, or by the epoll loop or the source's
	// notification while the direction is parked.
	aToB, bToA dirState
}

// Link.flags bits.
const (
	// linkClosing is set first thing by closeBoth's first caller, which
	// alone closes the connections: parking directions re-check it.
	linkClosing uint32 = 1 << iota
	// linkClosed is set by that caller once it has closed the connections
	// and woken the parked directions.
	linkClosed
	// linkEndPending is set by the last direction to end. Whichever of
	// linkClosed and linkEndPending is set second reports the end (report),
	// so done hears of it once, after both connections were closed.
	linkEndPending
	// linkStarted is set by Run.
	linkStarted
	// linkFullyClosedA and linkFullyClosedB record that a direction could
	// not half-close its destination (a or b) and closed it instead; the
	// reverse direction then treats a read error on that connection as its
	// end of stream.
	linkFullyClosedA
	linkFullyClosedB
	// linkLost is set when a detached socket was closed (by closeBoth) or
	// could not be attached again: resuming directions end at once.
	linkLost
	// linkDetachLater is set while a timer is to detach the Link once its
	// attachHold has passed (set and cleared under dmu).
	linkDetachLater
)

// The directions not yet ended are counted in flags, in units of
// linkRunning under linkRunningMask (2 from NewLink on, down to 0). The
// directions not parked (an ended direction stays counted) are counted in
// units of linkInUse under linkInUseMask, changed only under dmu: 2 from
// NewLink on; a direction takes itself off when it has parked (parked) and
// puts itself back first thing when it resumes (resumed).
const (
	linkRunning     uint32 = 1 << 8
	linkRunningMask uint32 = 3 << 8
	linkInUse       uint32 = 1 << 10
	linkInUseMask   uint32 = 3 << 10
)

// Ender is told once that a Link has ended, with the bytes each direction
// wrote (a to b, b to a) and the relay's error (see Link): a *DirError when
// a direction failed, net.ErrClosed when Close ended it, nil when both
// directions reached their end of stream. An owner that
// keeps one state per connection implements it there, so the relay's
// completion costs no allocation of its own (a func value bound to the
// state would be one, held for the life of the connection); EndFunc adapts
// a function.
type Ender interface {
	Ended(aToB, bToA int64, err error)
}

// EndFunc is a function used as an Ender.
type EndFunc func(aToB, bToA int64, err error)

// Ended calls f.
func (f EndFunc) Ended(aToB, bToA int64, err error) { f(aToB, bToA, err) }

// closing reports whether closeBoth has begun.
func (l *Link) closing() bool { return l.flags.Load()&linkClosing != 0 }

// NewLink prepares a relay of a and b, counting into aToBCount and bToACount
// (either may be nil) as RelayCounted does; done (if not nil) is told once,
// with the totals, when it has ended. The Link owns a and b from now on.
// Nothing moves until Run.
func NewLink(a, b net.Conn, aToBCount, bToACount *atomic.Int64, done Ender) *Link {
	l := &Link{a: a, b: b, done: done}
	l.aToB.aToB, l.aToB.count = true, aToBCount
	l.bToA.count = bToACount
	l.flags.Store(2*linkRunning + 2*linkInUse)
	return l
}

// Run starts the relay and runs one direction on the calling goroutine until
// that direction parks or ends; the other starts parked when its source is a
// ReadNotifier with nothing to read (no goroutine at all), on a goroutine of
// its own otherwise. The calling goroutine takes the direction whose source is
// not a ReadNotifier (a->b when both or neither are). Run then returns; the
// rest happens on goroutines the Link starts, and done reports the end. Run
// may be called once.
func (l *Link) Run() {
	if l.flags.Or(linkStarted)&linkStarted != 0 {
		panic("netutil: Link.Run called twice")
	}
	inline, other := &l.aToB, &l.bToA
	inline.setup()
	other.setup()
	if inline.mode == modeNotified && other.mode != modeNotified {
		inline, other = other, inline
	}
	other.start()
	inline.run()
}

// Close ends the relay from outside: both connections are closed, parked
// directions are woken to see it, and done reports net.ErrClosed unless the
// relay had already failed. It may be called at any time, from any
// goroutine, any number of times; before Run, the relay ends as soon as it
// runs. Only the first call (or the relay's own end, if it came first)
// closes the connections: a later call returns at once, perhaps before they
// are closed; done is told only after they are. It returns nil (it has the
// shape of io.Closer so that owners can hold a Link and a connection
// alike).
func (l *Link) Close() error {
	l.closeBoth(net.ErrClosed)
	return nil
}

// A returns a, the connection the Link was made with first, for its owner to
// inspect (not to read, write or close); nil while the Link holds it detached
// (a TCP socket, while both directions are parked).
func (l *Link) A() net.Conn {
	l.dmu.Lock()
	defer l.dmu.Unlock()
	return l.a
}

// B returns b, the connection the Link was made with second, for its owner
// to inspect once done has been told (an HBONE stream's answer, say); nil if
// the Link had let go of it then (a TCP socket it held detached).
func (l *Link) B() net.Conn {
	l.dmu.Lock()
	defer l.dmu.Unlock()
	return l.b
}

// closeBoth closes both connections once; the first caller's err is kept.
// A direction parked in the epoll loop is resumed, so it finds its source
// closed. Later callers return at once, perhaps before the first has
// closed the connections: what must follow the close (the report to done)
// waits for linkClosed.
func (l *Link) closeBoth(err error) {
	if l.flags.Or(linkClosing)&linkClosing != 0 {
		return
	}
	// From here on, no direction detaches.
	l.firstErr = err
	l.dmu.Lock()
	a, b := l.a, l.b // nil while detached
	// A tunnel refused with bytes in it: their sender learns of it by a reset, as
	// when a proxy that waited for the answer closes with those bytes unread.
	resetA := err != nil && refusedAfter(b, l.aToB.count)
	resetB := err != nil && refusedAfter(a, l.bToA.count)
	l.closeDetached(resetA, resetB)
	l.dmu.Unlock()
	// Closed outside dmu: closing a ReadNotifier may run its waiter,
	// whose direct write takes dmu. A nil one was detached, and
	// closeDetached closed it.
	closeAttached(a, resetA)
	closeAttached(b, resetB)
	for _, d := range [2]*dirState{&l.aToB, &l.bToA} {
		if unparkFromLoop(d) {
			workers.Go(d.resume) // owned by the Link, as every direction goroutine
		}
	}
	if l.flags.Or(linkClosed)&linkEndPending != 0 {
		l.report() // both directions ended while this call closed the connections
	}
}

// parked takes a direction that has just parked off linkInUse. The last one
// detaches the Link's sockets (see detach), unless the Link is closing; if
// they were attached less than attachHold ago, a timer detaches them when
// the hold has passed, if the Link is still idle then.
func (l *Link) parked() {
	l.dmu.Lock()
	l.flags.Add(^(linkInUse - 1)) // minus linkInUse
	l.maybeDetach()
	l.dmu.Unlock()
}

// maybeDetach detaches an idle Link now or schedules it (under dmu).
func (l *Link) maybeDetach() {
	if f := l.flags.Load(); f&linkInUseMask != 0 || f&(linkClosing|linkDetachLater) != 0 || !detachIdle.Load() {
		return
	}
	// mono ticks in whole milliseconds, so n ticks since the attach may be as little as n-1 ms
	// of real time: count one tick less, and the hold is never cut short.
	held := time.Duration(max(mono()-l.attachedAt, 1)-1) * time.Millisecond
	if hold := time.Duration(attachHold.Load()); held < hold {
		l.flags.Or(linkDetachLater)
		time.AfterFunc(hold-held, l.detachLater)
		return
	}
	l.detach()
}

// detachLater is the timer maybeDetach set.
func (l *Link) detachLater() {
	l.dmu.Lock()
	l.flags.And(^linkDetachLater)
	l.maybeDetach()
	l.dmu.Unlock()
}

// attachHold is the least time a Link stays attached after it attached its
// sockets again (in nanoseconds; tests change it). A detach and an attach
// cost about 7 us together (BenchmarkLinkWakeParked against
// BenchmarkLinkWakeParkedAttached); the hold bounds that to a few per second
// on a connection whose directions pause often, as a bulk transfer's
// notified direction does between chunks.
var attachHold atomic.Int64

// detachIdle turns detaching on; tests turn it off to measure what it saves.
var detachIdle atomic.Bool

func init() {
	attachHold.Store(int64(25 * time.Millisecond))
	detachIdle.Store(true)
}

// resumed puts a direction that resumes back on linkInUse and attaches the
// Link's detached sockets again, before the direction uses them. An error
// means the sockets are gone (closed while detached, or the attach failed):
// the direction must end without touching them.
func (l *Link) resumed() error {
	l.dmu.Lock()
	defer l.dmu.Unlock()
	if l.flags.Add(linkInUse)&linkLost != 0 {
		return net.ErrClosed
	}
	return l.attach()
}

// monoStart is the origin of mono.
var monoStart = time.Now()

// mono is a coarse monotonic clock in milliseconds for attachedAt and the
// idle deadline a direction armed last (rawDir.deadline); it wraps after 49
// days, so its readings compare by their difference, which at worst delays
// one detach or one re-arming of a deadline.
func mono() uint32 { return monoAt(time.Now()) }

// monoAt is mono at t.
func monoAt(t time.Time) uint32 { return uint32(t.Sub(monoStart) / time.Millisecond) }

// A pending buffer's bounds are 16-bit (dirState.pendLast).
var _ [1<<16 - relayBufSize]struct{}

// closeAttached closes c unless it is nil, with a reset when asked.
func closeAttached(c net.Conn, reset bool) {
	if c == nil {
		return
	}
	if reset {
		resetOnClose(c)
	}
	c.Close()
}

// refusedAfter reports whether c is a Refuser that was refused after bytes were written to
// it: count (the counter of the direction writing to c; nil: assume some) is not zero.
func refusedAfter(c net.Conn, count *atomic.Int64) bool {
	r, ok := c.(Refuser)
	return ok && r.Refused() && (count == nil || count.Load() > 0)
}

// resetOnClose makes closing c, a TCP connection, send a reset (SO_LINGER 0).
func resetOnClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}

// dirEnded accounts the end of one direction; the last one closes both
// connections (unless another caller of closeBoth has) and reports the end
// once they are closed (see linkEndPending).
func (l *Link) dirEnded() {
	if l.flags.Add(^(linkRunning-1))&linkRunningMask != 0 { // minus linkRunning
		return
	}
	l.closeBoth(nil)
	if l.flags.Or(linkEndPending)&linkClosed != 0 {
		l.report()
	}
}

// report tells done that the Link has ended. It runs once: on whichever of
// the last direction's end and closeBoth's close comes second.
func (l *Link) report() {
	if l.done != nil {
		l.done.Ended(l.aToB.total, l.bToA.total, l.firstErr)
	}
}

// errPark is move's signal that the source has nothing to read and the
// direction should give up its goroutine.
var errPark = errors.New("netutil: park")

// smallBufSize is the buffer a direction whose source is not a raw socket
// reads into while it has no pooled buffer: it is what an idle direction
// holds, so it is small; a read that fills it moves the direction to a
// pooled buffer until a read leaves part of that buffer empty.
const smallBufSize = 64

// Copy modes of a direction, chosen on its first run.
const (
	modeUnset    = iota
	modeSplice   // TCP to TCP by splice(2)
	modeRead     // TCP source by read(2), any destination
	modeNotified // a ReadNotifier source, read only when it says it is readable
	modeConn     // any other source, through net.Conn Read
)

// dirState is one direction of a relay: src to dst. It is owned by the
// goroutine running the direction; while parked, by whoever resumes it (the
// epoll loop, the source's notification or Close), which starts a goroutine
// to run it again.
type dirState struct {
	count *atomic.Int64 // may be nil
	total int64         // bytes written to the destination

	// pending holds bytes that deliver read but could not write without
	// waiting: pending[pendOff:pendLast+1] goes to dst first when a goroutine
	// takes the direction over. The bounds are 16-bit (relayBufSize is 64
	// KiB, and pending is never empty, so its last index fits where its end
	// would not): with rawDir's 32-bit deadline, that keeps a Link in the
	// 208-byte class instead of 224.
	pending           *[relayBufSize]byte
	pendOff, pendLast uint16

	raw rawDir // the platform's raw-socket state (relay_linux.go)

	// Small fields last, so they share the word rawDir ends in.
	aToB   bool  // the direction copies l.a to l.b (src and dst say which)
	mode   uint8 // the copy mode (modeUnset until setup)
	ready  bool  // NotifyReadable just said src is readable (to its owner): read once
	direct bool  // src is a DirectNotifier and dst takes direct writes (Offer)
	// bare is 1 + the descriptor of src, a TCP socket, while the Link holds
	// it detached from Go's net package; 0 otherwise. Guarded by l.dmu.
	bare int32
}

// link returns the Link the direction belongs to. A dirState exists only as
// a Link's aToB or bToA, so its Link starts a fixed distance before it: no
// back pointer (8 bytes a direction), and a Link fits the 208-byte class.
func (d *dirState) link() *Link {
	off := unsafe.Offsetof(Link{}.bToA)
	if d.aToB {
		off = unsafe.Offsetof(Link{}.aToB)
	}
	return (*Link)(unsafe.Add(unsafe.Pointer(d), -int(off)))
}

// other is the Link's reverse direction.
func (d *dirState) other() *dirState {
	if d.aToB {
		return &d.link().bToA
	}
	return &d.link().aToB
}

// src is the direction's source. The direction's connections and their
// fully-closed marks are the Link's, found from aToB rather than kept twice
// (a Link per idle connection is what a node holds most of).
func (d *dirState) src() net.Conn {
	if d.aToB {
		return d.link().a
	}
	return d.link().b
}

// dst is the direction's destination.
func (d *dirState) dst() net.Conn {
	if d.aToB {
		return d.link().b
	}
	return d.link().a
}

// dstClosedBit is the Link flag set when dst had to be fully closed in place
// of a half-close.
func (d *dirState) dstClosedBit() uint32 {
	if d.aToB {
		return linkFullyClosedB
	}
	return linkFullyClosedA
}

// srcClosed tells whether the other direction fully closed src.
func (d *dirState) srcClosed() bool {
	bit := linkFullyClosedB
	if d.aToB {
		bit = linkFullyClosedA
	}
	return d.link().flags.Load()&bit != 0
}

// run moves bytes until the direction parks or ends. It is the body of every
// goroutine that runs the direction.
func (d *dirState) run() {
	for {
		err := d.move()
		if err != errPark {
			d.finish(err)
			return
		}
		if d.park() {
			d.link().parked()
			return // d now belongs to whoever resumes it
		}
	}
}

// resume is the body of a goroutine that takes a parked direction over
// (from the epoll loop, the source's notification or closeBoth): it attaches
// the Link's sockets if they were detached, then runs the direction.
func (d *dirState) resume() {
	if err := d.link().resumed(); err != nil {
		// The sockets are gone: end without finish, which would
		// half-close a destination that is no longer there.
		d.fail(err, false)
		d.link().dirEnded()
		return
	}
	d.run()
}

// move copies in the direction's mode until the end (nil at EOF), an error or
// errPark.
func (d *dirState) move() error {
	for {
		switch d.mode {
		case modeUnset:
			d.setup()
		case modeSplice:
			err, handled := d.splice()
			if !handled {
				// splice(2) refused these sockets before moving a byte.
				d.mode = modeRead
				continue
			}
			return err
		case modeRead:
			return d.readCopy()
		case modeNotified:
			return d.copyNotified()
		default:
			return d.copyConn()
		}
	}
}

// setup chooses the direction's copy mode from its connections' types.
func (d *dirState) setup() {
	if d.mode != modeUnset {
		return
	}
	d.mode = modeConn
	if d.setupRaw() {
		return // setupRaw chose a raw mode
	}
	if _, ok := d.src().(ReadNotifier); ok {
		d.mode = modeNotified
		d.setupDeliver()
	}
}

// start begins a direction that Run does not run inline: parked on its
// source's notification when that is possible and there is nothing to read;
// with a notifying source that has bytes already (data an HBONE client sent
// with its request), as if it had just notified: what can move without
// waiting moves on the calling goroutine, before the other direction runs
// there; otherwise on a goroutine of its own.
func (d *dirState) start() {
	if d.mode == modeNotified {
		// Parked from here on: the notification, or Readable below, owns d
		// (the other direction, run inline, keeps linkInUse above zero).
		d.link().parked()
		if d.notify() {
			return // d belongs to the notification
		}
		d.Readable()
		return
	}
	workers.Go(d.run) // owned by the Link: counted in linkRunning, reported by done
}

// park gives up the goroutine until the source is readable. It reports false
// when the direction must keep running on this goroutine (the source became
// readable, or the relay is closing).
func (d *dirState) park() bool {
	if d.mode == modeNotified {
		if d.notify() {
			return true
		}
		d.ready = true
		return false
	}
	return d.parkInLoop()
}

// notify parks the direction on its source's notification, with a direct
// write to the destination when the platform set one up (see Offer). It
// reports false when the source is readable now. The direction itself is
// the ReadWaiter: parking allocates nothing. (The source is asserted to its
// interface here rather than kept: a Link is what an idle connection holds.)
func (d *dirState) notify() bool {
	if d.direct {
		return d.src().(DirectNotifier).NotifyReadableWith(d)
	}
	return d.src().(ReadNotifier).NotifyReadable(d)
}

// Readable is the notifier's callback (ReadWaiter): the source was readable
// when the notifier ran it (it may not be any more: see deliver). What
// deliver can move at once moves on the notifying goroutine; the rest goes
// to a new goroutine, which asks the notifier again before it reads.
func (d *dirState) Readable() {
	if d.deliver() {
		return
	}
	workers.Go(d.resume) // owned by the Link, as every direction goroutine
}

// finish passes the end of the direction on and accounts it.
func (d *dirState) finish(err error) {
	if err != nil && d.srcClosed() {
		err = nil // we closed src ourselves: that is its end of stream
	}
	switch {
	case err != nil:
		d.fail(err, false)
	default:
		if cw, ok := d.dst().(interface{ CloseWrite() error }); ok {
			if err := cw.CloseWrite(); err != nil && !isClosedOrGone(err) {
				d.fail(err, true)
			}
		} else {
			d.link().flags.Or(d.dstClosedBit())
			d.dst().Close()
		}
	}
	d.link().dirEnded()
}

// wrote accounts n bytes written to the destination.
func (d *dirState) wrote(n int) {
	d.total += int64(n)
	if d.count != nil {
		d.count.Add(int64(n))
	}
}

// copyNotified copies a ReadNotifier source to dst. It reads only when the
// source said it is readable, into a pooled buffer it gives back after every
// read, so the Read never waits and an idle direction holds nothing: at the
// first Read that could wait it returns errPark instead.
func (d *dirState) copyNotified() error {
	if bp := d.pending; bp != nil {
		d.pending = nil
		nw, err := d.writeDst(bp[d.pendOff : int(d.pendLast)+1])
		d.wrote(nw)
		relayBufPool.Put(bp)
		if err != nil {
			return err
		}
	}
	for {
		if !d.ready {
			return errPark
		}
		d.ready = false
		bp := relayBufPool.Get().(*[relayBufSize]byte)
		nr, rerr := d.src().Read(bp[:])
		if nr > 0 {
			nw, werr := d.writeDst(bp[:nr])
			d.wrote(nw)
			if werr == nil && nw != nr {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				relayBufPool.Put(bp)
				return werr
			}
		}
		relayBufPool.Put(bp)
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// copyConn copies src to dst through net.Conn Read and Write, for a source
// that is not a raw socket (an HBONE stream, a net.Pipe). It ignores
// ReaderFrom and WriterTo, which could allocate a fresh buffer per copy.
//
// An idle direction holds no pooled buffer: it waits in a Read of a small
// buffer (that and its goroutine are what it holds). A read that fills small means more bytes are probably
// waiting: the direction takes a pooled buffer and keeps it while reads fill
// it, and gives it back before the first Read that could wait for the peer.
func (d *dirState) copyConn() error {
	dst, src := d.dst(), d.src()
	var small [smallBufSize]byte // allocated once per run; only this kind of direction needs it
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
			nr, rerr = src.Read(small[:])
			buf = small[:nr]
			if nr == len(small) && rerr == nil {
				bp = relayBufPool.Get().(*[relayBufSize]byte)
				copy(bp[:], small[:])
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
				return werr
			}
			if nw != nr {
				return io.ErrShortWrite
			}
		}
		if bp != nil && nr < len(bp) {
			// The source had no more than this: the next Read may wait.
			relayBufPool.Put(bp)
			bp = nil
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// DirError is the error a Link ends with when one of its directions failed:
// which direction, and whether the copy or its half-close at the end failed.
// Its text is Err's; callers that report it name the direction in their own
// words. A Link ended from outside (Close) or by the end of both directions
// has no direction to name.
type DirError struct {
	AToB     bool  // the failing direction read from a and wrote to b
	Shutdown bool  // the half-close of the destination failed, not the copy
	Err      error // what failed
}

func (e *DirError) Error() string { return e.Err.Error() }
func (e *DirError) Unwrap() error { return e.Err }

// fail ends the Link with err from direction d (an error path: the DirError
// is its only allocation).
func (d *dirState) fail(err error, shutdown bool) {
	d.link().closeBoth(&DirError{AToB: d.aToB, Shutdown: shutdown, Err: err})
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
