package netutil

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ztunnel-go/ztunnel/internal/rawio"
	"github.com/ztunnel-go/ztunnel/internal/workers"
)

// parkAfter is how long a TCP source may stay silent before its direction
// gives up its goroutine and parks in the epoll loop. Shorter saves memory:
// the goroutines of connections that just went quiet are what a burst of new
// idle connections holds at its peak (S5, 3,000 connections: 100 ms measured
// 11.9 KB per idle HBONE connection, 25 ms 11.1 KB). Longer saves the park and
// resume (a few system calls and a goroutine start: about 8 us more before
// the first byte after the pause, BenchmarkLinkWakeParked against
// BenchmarkLinkWakeActive) on connections that pause briefly; connections
// that never pause (bulk, back-to-back round trips) never park.
var parkAfter = 25 * time.Millisecond

// rawLink holds the syscall.RawConn of each of a Link's TCP connections (nil
// for a connection of another kind), made once by the first direction that
// needs it: both directions share the socket's RawConn.
type rawLink struct {
	rawA, rawB syscall.RawConn
}

// rawDir is the raw-socket state a direction keeps while it is parked or
// idle. What a raw copy needs only while bytes move (the pipe or buffer,
// the callbacks and their results) is in a rawOp taken for the copy.
type rawDir struct {
	deadline uint32 // the read deadline armed last, in mono's milliseconds; valid while armed
	slot     uint32 // 1 + index in loop.slots while parked, 0 otherwise; guarded by loop.mu
	// canPark: the direction may park in the epoll loop (it exists).
	// armed: a read callback found the socket empty and set a read deadline
	// parkAfter ahead, so a deadline error means the source went idle.
	canPark, armed bool
	// registered: src's descriptor is in the loop's epoll set (perhaps
	// disarmed after its one-shot event): the next park modifies it.
	registered bool
	// inline: deliver may write to dst (a TCP socket) on the notifying
	// goroutine.
	inline bool
}

// rawConnOf returns the RawConn of the Link's a (a true) or b, making it on
// first use; nil when that connection is not a TCP socket or is closed. Only
// Run's setup calls it, before any direction runs.
func (l *Link) rawConnOf(a bool) syscall.RawConn {
	if rc := l.rawOf(a); rc != nil {
		return rc
	}
	c, rc := l.b, &l.rawB
	if a {
		c, rc = l.a, &l.rawA
	}
	if tc, ok := c.(*net.TCPConn); ok {
		if raw, err := tc.SyscallConn(); err == nil {
			*rc = raw
		}
	}
	return *rc
}

// rawOf returns the RawConn rawConnOf made for a (a true) or b.
func (l *Link) rawOf(a bool) syscall.RawConn {
	if a {
		return l.rawA
	}
	return l.rawB
}

// srcRaw is the source's RawConn (set up by setupRaw).
func (d *dirState) srcRaw() syscall.RawConn { return d.link().rawOf(d.aToB) }

// dstRaw is the destination's RawConn (set up by setupRaw or setupDeliver).
func (d *dirState) dstRaw() syscall.RawConn { return d.link().rawOf(!d.aToB) }

// rawOp is the state of one raw copy while bytes move: the pipe or buffer in
// flight and what the last syscall.RawConn callback did. The callbacks are
// bound to the rawOp once, when the pool makes it, so no copy allocates. A
// direction takes a rawOp from rawOps for a run of copying (or one direct
// write) and gives it back before it could park; an idle direction holds
// none.
type rawOp struct {
	d      *dirState
	pipe   *pipe               // spliced bytes in flight; nil while none
	buf    *[relayBufSize]byte // read path: bytes in flight; nil while none
	short  int32               // read path: how much of buf a read leaves unused (readLimit)
	n      int                 // bytes the last callback moved
	err    error               // errno of the last callback
	inPipe int32               // bytes in pipe not yet written to dst (at most a pipe's size)
	wdone  int32               // bytes of wbuf writeNow wrote
	wbuf   []byte              // what writeNow writes
	wait   bool                // writeNow waits for room in a full socket (writeDst)

	spliceInFn, readInFn, spliceOutFn, writeNowFn func(fd uintptr) bool
}

var rawOps = sync.Pool{New: func() any {
	o := new(rawOp)
	o.spliceInFn, o.readInFn = o.spliceIn, o.readIn
	o.spliceOutFn, o.writeNowFn = o.spliceOut, o.writeNow
	return o
}}

// takeOp returns a rawOp working for d.
func takeOp(d *dirState) *rawOp {
	o := rawOps.Get().(*rawOp)
	o.d = d
	return o
}

// release gives back what the op holds (a pipe that still holds bytes that
// never left is closed, not reused) and returns the op to the pool.
func (o *rawOp) release() {
	if o.pipe != nil {
		if o.inPipe == 0 {
			pipes.put(o.pipe)
		} else {
			o.pipe.close()
		}
		o.pipe = nil
	}
	if o.buf != nil {
		relayBufPool.Put(o.buf)
		o.buf = nil
	}
	o.d, o.wbuf, o.err = nil, nil, nil
	o.n, o.inPipe, o.wdone, o.short, o.wait = 0, 0, 0, 0, false
	rawOps.Put(o)
}

// setupRaw prepares a TCP source for the raw paths and picks splice (TCP
// destination) or read(2). It reports false when src is not a TCP socket.
func (d *dirState) setupRaw() bool {
	if d.link().rawConnOf(d.aToB) == nil {
		return false // not TCP, or closed already: copyConn's Read reports it
	}
	d.raw.canPark = theLoop() != nil
	if d.link().rawConnOf(!d.aToB) != nil {
		d.mode = modeSplice
		return true
	}
	d.mode = modeRead
	return true
}

// readSrc waits for src and runs fn, a read callback; a deadline that the
// callback armed and that passed means the source went idle: errPark.
func (o *rawOp) readSrc(src syscall.RawConn, fn func(uintptr) bool) error {
	o.n, o.err = 0, nil
	err := src.Read(fn)
	if err != nil && o.d.raw.armed && errors.Is(err, os.ErrDeadlineExceeded) {
		return errPark
	}
	return err
}

// arm sets the idle deadline after a read callback found src empty. It moves
// a deadline already set only once less than half of parkAfter is left, so a
// busy source updates its timer a few times per parkAfter, not at every empty
// read; a source then parks after between parkAfter/2 and parkAfter of
// silence.
func (d *dirState) arm() {
	r := &d.raw
	if !r.canPark {
		return
	}
	now := time.Now()
	ms := monoAt(now)
	if r.armed && time.Duration(int32(r.deadline-ms))*time.Millisecond > parkAfter/2 {
		return
	}
	r.deadline = ms + uint32(parkAfter/time.Millisecond)
	d.src().(*net.TCPConn).SetReadDeadline(now.Add(parkAfter))
	r.armed = true
}

// splice is the zero-copy loop: splice src into a pipe, then the pipe into dst.
// handled is false when the kernel refuses to splice the first bytes (EINVAL:
// a socket type without splice support).
func (d *dirState) splice() (error, bool) {
	o := takeOp(d)
	defer o.release()
	src, dst := d.srcRaw(), d.dstRaw()
	for {
		if err := o.readSrc(src, o.spliceInFn); err != nil {
			return err, true
		}
		if o.err != nil {
			if d.total == 0 && (o.err == unix.EINVAL || o.err == unix.EOPNOTSUPP) {
				return nil, false
			}
			return os.NewSyscallError("splice", o.err), true
		}
		if o.n == 0 {
			return nil, true // EOF
		}
		o.inPipe = int32(o.n)
		for o.inPipe > 0 {
			o.n, o.err = 0, nil
			err := dst.Write(o.spliceOutFn)
			d.wrote(o.n)
			if err != nil {
				return err, true
			}
			if o.err != nil {
				return os.NewSyscallError("splice", o.err), true
			}
		}
	}
}

// spliceIn is src's read callback: one splice from the socket into a pipe,
// taken from the pool for the attempt and given back when the socket has
// nothing (then false asks the netpoller to wait for readability).
func (o *rawOp) spliceIn(fd uintptr) bool {
	if o.pipe == nil {
		p, err := pipes.get()
		if err != nil {
			o.err = err
			return true
		}
		o.pipe = p
	}
	for {
		n, err := rawio.Splice(int(fd), o.pipe.w, o.pipe.size, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		switch err {
		case nil:
			o.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			pipes.put(o.pipe)
			o.pipe = nil
			o.d.arm()
			return false
		default:
			o.err = err
			return true
		}
	}
}

// spliceOut is dst's write callback: it drains the pipe into the socket until
// the pipe is empty; a full socket returns false, which waits for writability
// and calls it again. o.n counts what it wrote over those calls.
func (o *rawOp) spliceOut(fd uintptr) bool {
	for o.inPipe > 0 {
		n, err := rawio.Splice(o.pipe.r, int(fd), int(o.inPipe), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		switch err {
		case nil:
			o.inPipe -= int32(n)
			o.n += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			o.err = err
			return true
		}
	}
	return true
}

// readCopy reads the TCP source with read(2) into a pooled buffer taken only
// for the attempt, and writes what it read to dst.
func (d *dirState) readCopy() error {
	o := takeOp(d)
	defer o.release()
	src, dst := d.srcRaw(), d.dst()
	o.short = int32(relayBufSize - readLimit(dst))
	for {
		if err := o.readSrc(src, o.readInFn); err != nil {
			return err
		}
		if o.err != nil {
			return os.NewSyscallError("read", o.err)
		}
		if o.n == 0 {
			return nil // EOF
		}
		nw, err := dst.Write(o.buf[:o.n])
		d.wrote(nw)
		if err != nil {
			return err
		}
	}
}

// readLimit is the most a read for dst takes: dst's WriteSizeHint when it has a usable one,
// else the whole buffer.
func readLimit(dst net.Conn) int {
	if ws, ok := dst.(WriteSizer); ok {
		if n := ws.WriteSizeHint(); n >= relayBufSize/2 && n < relayBufSize {
			return n
		}
	}
	return relayBufSize
}

// readIn is src's read callback on the read path: like spliceIn, with a
// pooled buffer in place of a pipe.
func (o *rawOp) readIn(fd uintptr) bool {
	if o.buf == nil {
		o.buf = relayBufPool.Get().(*[relayBufSize]byte)
	}
	for {
		n, err := rawio.Read(int(fd), o.buf[:relayBufSize-o.short])
		switch err {
		case nil:
			o.n = n
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			relayBufPool.Put(o.buf)
			o.buf = nil
			o.d.arm()
			return false
		default:
			o.err = err
			return true
		}
	}
}

// deliverMax is the most deliver moves on the notifying goroutine in one
// notification before it hands the direction to a goroutine of its own: small
// exchanges (requests, responses, round trips) cost no goroutine switch, and a
// bulk transfer still gets a goroutine that writes while the notifier (an
// HBONE connection's reader) reads on.
const deliverMax = 16 << 10

// setupDeliver enables deliver for a ReadNotifier source and a TCP
// destination.
func (d *dirState) setupDeliver() {
	if d.link().rawConnOf(!d.aToB) == nil {
		return
	}
	d.raw.inline = true
	if _, ok := d.src().(DirectNotifier); ok {
		d.direct = true
	}
}

// Offer is the direct write a DirectNotifier source makes while the
// direction is parked (ReadWaiter): b goes from the source's buffer to the
// destination socket with no copy of ours, as far as the socket takes it
// without waiting. A write error leaves the bytes to the goroutine that
// takes the direction over, which meets the error again.
func (d *dirState) Offer(b []byte) int {
	if !d.direct {
		return 0
	}
	o := takeOp(d)
	o.wbuf = b
	d.writeDstNow(o)
	n := int(o.wdone)
	o.release()
	d.wrote(n)
	return n
}

// deliver runs on the goroutine that notified the direction (an HBONE
// connection's reader): it reads what the source has and writes it to the TCP
// destination without waiting, then parks the direction again. It reports
// false when a goroutine must take over: the source ended or failed (the
// goroutine reads that again), the destination could not take everything
// (the rest is in d.pending), or the source had more than deliverMax.
func (d *dirState) deliver() bool {
	if !d.raw.inline {
		return false
	}
	o := takeOp(d)
	defer o.release()
	src := d.src()
	for moved := 0; moved < deliverMax; {
		// A notification does not prove the source is readable now: the
		// goroutine that ran the direction may have read those bytes and
		// parked again before the notifier ran the callback. Read only what
		// NotifyReadable says is there, so Read never waits here (it would
		// wait on the very goroutine that must deliver the bytes).
		if d.notify() {
			return true // parked again: d belongs to the next notification
		}
		bp := relayBufPool.Get().(*[relayBufSize]byte)
		n, err := src.Read(bp[:])
		if err != nil || n == 0 {
			relayBufPool.Put(bp)
			return false
		}
		o.wbuf, o.wdone, o.err = bp[:n], 0, nil
		werr := d.writeDstNow(o)
		d.wrote(int(o.wdone))
		if werr != nil || o.err != nil || int(o.wdone) < n {
			// The goroutine writes the rest, waiting if it must, and meets
			// the error again if there was one.
			d.pending, d.pendOff, d.pendLast = bp, uint16(o.wdone), uint16(n-1)
			o.wbuf = nil
			return false
		}
		o.wbuf = nil
		relayBufPool.Put(bp)
		moved += n
	}
	return false
}

// writeDstNow writes o.wbuf to the destination without waiting (writeNow),
// for a direction parked on its notification: through its RawConn while the
// Link's sockets are attached, to the bare descriptor while they are
// detached. It holds l.dmu, so the destination is not detached or attached
// again under the write.
func (d *dirState) writeDstNow(o *rawOp) error {
	l := d.link()
	l.dmu.Lock()
	defer l.dmu.Unlock()
	if fd := d.other().bare; fd != 0 {
		o.writeNow(uintptr(fd - 1))
		return nil
	}
	rc := d.dstRaw()
	if rc == nil {
		return net.ErrClosed // lost while detached
	}
	return rc.Write(o.writeNowFn)
}

// writeDst writes all of b to the destination for copyNotified: to a TCP
// socket through its RawConn with rawio, waiting in the netpoller while the
// socket is full (as net.Conn.Write does; closing the socket wakes it), so
// the write wakes no scheduler thread; to anything else with its Write. The
// direction's goroutine runs it, so the Link is attached.
func (d *dirState) writeDst(b []byte) (int, error) {
	rc := d.dstRaw()
	if rc == nil {
		return d.dst().Write(b)
	}
	o := takeOp(d)
	o.wbuf, o.wait = b, true
	err := rc.Write(o.writeNowFn)
	n, werr := int(o.wdone), o.err
	o.release()
	if err == nil && werr != nil {
		err = rawio.WriteError(d.dst(), werr)
	}
	return n, err
}

// writeNow is dst's write callback for deliver, Offer and writeDst: it writes
// o.wbuf until done. A full socket leaves the rest to a goroutine (it never
// asks to wait) unless o.wait, for writeDst's goroutine: then it asks the
// netpoller to wait for room.
func (o *rawOp) writeNow(fd uintptr) bool {
	n, err := rawio.WriteAll(int(fd), o.wbuf[o.wdone:])
	o.wdone += int32(n)
	switch err {
	case nil:
	case unix.EAGAIN:
		return !o.wait
	default:
		o.err = err
	}
	return true
}

// parkInLoop hands the idle direction to the epoll loop. It reports false
// when the direction must keep running on this goroutine.
func (d *dirState) parkInLoop() bool {
	r := &d.raw
	d.src().(*net.TCPConn).SetReadDeadline(time.Time{})
	r.armed = false
	lp := theLoop()
	if lp == nil {
		r.canPark = false
		return false
	}
	return lp.park(d)
}

// unparkFromLoop takes d back from the epoll loop if it is parked there; the
// caller then owns d and must run it.
func unparkFromLoop(d *dirState) bool {
	lp := startedLoop.Load()
	return lp != nil && lp.take(d)
}

// loop is the package's epoll loop: one epoll set holding the sockets of
// parked directions (one-shot, readable), and the one goroutine that waits for
// it in Go's netpoller and starts a goroutine for each direction whose socket
// became readable.
// It lives as long as the process, as Go's own netpoller does; it starts with
// the first relay over a TCP source.
//
// A parked direction is in slots under an index and a generation that travel
// in its epoll event; whoever removes it from slots (the loop on an event,
// Link.closeBoth, or the direction itself when its park failed) owns it.
type loop struct {
	epfd int
	file *os.File // epfd, registered in Go's netpoller; kept for the process's life

	mu    sync.Mutex
	dirs  slotTable[*dirState] // parked relay directions; guarded by mu
	reads slotTable[*ReadPark] // parked ReadParks; guarded by mu
}

// An epoll event names its slot by index (Fd) and generation (Pad). The top
// bit of Pad says which table the slot is in: set for reads (a ReadPark),
// clear for dirs (a relay direction). Generations wrap within the other 31.
const (
	readSlotBit = 1 << 31
	genMask     = readSlotBit - 1
)

// slotTable holds the parked occupants of one kind (nil: a free slot) under
// an index and a generation, which travel in their epoll event. Whoever
// removes an occupant (remove, or takeAt for an event) owns it. The loop's
// mu guards it.
type slotTable[T comparable] struct {
	slots []slotEntry[T]
	free  []uint32 // indexes of free slots
}

type slotEntry[T comparable] struct {
	v   T
	gen uint32 // bumped at every put, so a stale event cannot take a later occupant
}

// put stores v in a free slot and returns its index and generation.
func (t *slotTable[T]) put(v T) (idx, gen uint32) {
	if n := len(t.free); n > 0 {
		idx = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		idx = uint32(len(t.slots))
		t.slots = append(t.slots, slotEntry[T]{})
	}
	e := &t.slots[idx]
	e.gen = (e.gen + 1) & genMask
	e.v = v
	return idx, e.gen
}

// remove frees slot idx if v is still its occupant.
func (t *slotTable[T]) remove(idx uint32, v T) bool {
	if t.slots[idx].v != v {
		return false
	}
	var zero T
	t.slots[idx].v = zero
	t.free = append(t.free, idx)
	return true
}

// takeAt removes and returns the occupant an event names, if the event is
// current (the slot holds something put at generation gen).
func (t *slotTable[T]) takeAt(idx, gen uint32) (v T, ok bool) {
	if idx >= uint32(len(t.slots)) {
		return v, false
	}
	e := &t.slots[idx]
	var zero T
	if e.v == zero || e.gen != gen {
		return v, false
	}
	v = e.v
	e.v = zero
	t.free = append(t.free, idx)
	return v, true
}

var (
	loopOnce    sync.Once
	startedLoop atomic.Pointer[loop]
)

// theLoop returns the epoll loop, starting it on first use; nil when epoll
// is unavailable (parking is then off and idle directions wait in Go's
// netpoller).
func theLoop() *loop {
	loopOnce.Do(func() {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return
		}
		lp := &loop{epfd: fd}
		// The epoll set is itself a pollable descriptor: made non-blocking,
		// os.NewFile puts it in Go's netpoller, so the loop's goroutine waits
		// there like any socket reader instead of holding a thread in
		// epoll_wait (a blocked system call costs a thread hand-off on every
		// wake-up: 30 us more per resumed direction, BenchmarkLinkWakeParked).
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return
		}
		lp.file = os.NewFile(uintptr(fd), "netutil-park-epoll")
		rc, err := lp.file.SyscallConn()
		if err != nil {
			lp.file.Close()
			return
		}
		spareMu.Lock()
		takeSpare() // before detached sockets can need it (detach_linux.go)
		spareMu.Unlock()
		startedLoop.Store(lp)
		go lp.run(rc) // owned by the process, like the runtime's netpoller
	})
	return startedLoop.Load()
}

// run waits in Go's netpoller for the epoll set to have events and resumes
// their directions. It never returns.
func (lp *loop) run(rc syscall.RawConn) {
	var evs [128]unix.EpollEvent
	resume := func(n int) {
		for i := range n {
			idx, gen := uint32(evs[i].Fd), uint32(evs[i].Pad)
			if gen&readSlotBit != 0 {
				if p := lp.takeReadSlot(idx, gen&genMask); p != nil {
					workers.Go(p.resume) // owned by whoever parked p
				}
				continue
			}
			if d := lp.takeSlot(idx, gen); d != nil {
				workers.Go(d.resume) // owned by the direction's Link
			}
		}
	}
	rc.Read(func(fd uintptr) bool {
		for {
			n, err := unix.EpollWait(int(fd), evs[:], 0)
			if err == unix.EINTR {
				continue
			}
			resume(max(n, 0))
			if err != nil || n < len(evs) {
				return false // drained: wait for the set to become readable again
			}
		}
	})
	// Read returns only when the netpoller cannot wait for this descriptor
	// (not expected on Linux): wait in epoll_wait instead, holding a thread.
	for {
		n, err := unix.EpollWait(lp.epfd, evs[:], -1)
		if err != nil {
			if err != unix.EINTR {
				time.Sleep(10 * time.Millisecond) // not expected; do not spin
			}
			continue
		}
		resume(n)
	}
}

// park registers d's source for one readable event. It reports false when d
// must keep running on the calling goroutine; true means d now belongs to
// the loop (or to closeBoth) and the caller must not touch it again.
func (lp *loop) park(d *dirState) bool {
	r := &d.raw
	wasRegistered := r.registered
	r.registered = true // written before d is published in slots
	lp.mu.Lock()
	idx, gen := lp.dirs.put(d)
	r.slot = idx + 1
	lp.mu.Unlock()

	var cerr error
	err := d.srcRaw().Control(func(fd uintptr) {
		cerr = lp.arm(int(fd), wasRegistered, idx, gen)
	})
	if err != nil || cerr != nil {
		// Nothing will fire for this registration: take d back, unless
		// closeBoth already did (it then runs d).
		if !lp.take(d) {
			return true
		}
		r.registered = wasRegistered && err == nil
		if err == nil {
			r.canPark = false // epoll refused this socket: stop trying
		}
		return false
	}
	// A close that began before the registration may have looked for d
	// before it was there: look again.
	if d.link().closing() && lp.take(d) {
		return false
	}
	return true
}

// arm asks epoll for one readable event on fd, naming the slot idx at
// generation gen (with readSlotBit for reads). A descriptor registered
// before (its one-shot event spent) is modified, others added.
func (lp *loop) arm(fd int, registered bool, idx, gen uint32) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(idx), Pad: int32(gen)}
	if registered {
		if err := unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_MOD, fd, &ev); err != unix.ENOENT {
			return err
		}
	}
	err := unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	if err == unix.EEXIST {
		err = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
	}
	return err
}

// take removes d from slots if it is parked; true makes the caller its owner.
func (lp *loop) take(d *dirState) bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	r := &d.raw
	if r.slot == 0 {
		return false
	}
	if !lp.dirs.remove(r.slot-1, d) {
		return false
	}
	r.slot = 0
	return true
}

// takeSlot removes the direction an event names, if the event is current.
func (lp *loop) takeSlot(idx, gen uint32) *dirState {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	d, ok := lp.dirs.takeAt(idx, gen)
	if !ok {
		return nil
	}
	d.raw.slot = 0
	return d
}

// pipeSize is the capacity asked of each splice pipe: one splice moves at
// most this much, so larger pipes mean fewer system calls per byte.
const pipeSize = 1 << 20

// maxFreePipes bounds the pipes the pool keeps between bursts; beyond it a
// returned pipe is closed. Pipes in use are not bounded: each holds bytes in
// flight of one direction.
const maxFreePipes = 16

// pipe is one splice pipe, non-blocking at both ends.
type pipe struct {
	r, w int
	size int // capacity in bytes (F_GETPIPE_SZ)
}

func newPipe() (*pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	p := &pipe{r: fds[0], w: fds[1], size: 64 << 10}
	// A smaller pipe still works (the limit is /proc/sys/fs/pipe-max-size and
	// the per-user pipe quota), with more system calls per byte.
	unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, pipeSize)
	if sz, err := unix.FcntlInt(uintptr(p.w), unix.F_GETPIPE_SZ, 0); err == nil && sz > 0 {
		p.size = sz
	}
	return p, nil
}

func (p *pipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// pipePool is the free list of empty pipes shared by all relays.
type pipePool struct {
	mu   sync.Mutex
	free []*pipe // guarded by mu; every pipe in it is empty
}

var pipes = &pipePool{free: make([]*pipe, 0, maxFreePipes)}

// get returns an empty pipe, from the free list or new.
func (pp *pipePool) get() (*pipe, error) {
	pp.mu.Lock()
	if n := len(pp.free); n > 0 {
		p := pp.free[n-1]
		pp.free = pp.free[:n-1]
		pp.mu.Unlock()
		return p, nil
	}
	pp.mu.Unlock()
	return newPipe()
}

// put returns an empty pipe to the free list, or closes it when the list is
// full.
func (pp *pipePool) put(p *pipe) {
	pp.mu.Lock()
	if len(pp.free) < cap(pp.free) {
		pp.free = append(pp.free, p)
		p = nil
	}
	pp.mu.Unlock()
	if p != nil {
		p.close()
	}
}
