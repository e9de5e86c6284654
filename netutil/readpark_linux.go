package netutil

import (
	"syscall"
)

// ReadPark lets a reader of a socket give up its goroutine while the socket
// is idle: Park hands the socket to the package's epoll loop (the one idle
// relay directions park in), which starts resume on a new goroutine once the
// socket is readable. It is how the HBONE engine's read loop leaves an idle
// pooled connection without a stack.
//
// One ReadPark serves one socket for its life; the zero value is ready, and
// it must not be copied. Park and Cancel are not safe to call at once from
// several goroutines for the same ReadPark, except that Cancel may race with
// the loop's event (whoever takes the ReadPark out of the loop wins).
type ReadPark struct {
	resume func()
	slot   uint32 // 1 + index in loop.reads while parked, 0 otherwise; guarded by loop.mu
	// registered: the socket is in the loop's epoll set (perhaps disarmed
	// after its one-shot event): the next Park modifies it. Owned by the
	// ReadPark's owner.
	registered bool
}

// Park arranges for resume to run, on a goroutine of its own, once rc's
// socket has bytes to read, has been shut down by the peer or has an error.
// It reports false when the socket cannot be watched (no epoll loop, or
// epoll refused it, or rc is closed): the caller keeps its goroutine and
// reads on. After true, the caller gives up the read side: it must not read
// until resume runs or Cancel returns true.
func (p *ReadPark) Park(rc syscall.RawConn, resume func()) bool {
	lp := theLoop()
	if lp == nil || rc == nil {
		return false
	}
	wasRegistered := p.registered
	p.registered = true // written before p is published in the loop
	p.resume = resume
	lp.mu.Lock()
	idx, gen := lp.reads.put(p)
	p.slot = idx + 1
	lp.mu.Unlock()

	var cerr error
	err := rc.Control(func(fd uintptr) {
		cerr = lp.arm(int(fd), wasRegistered, idx, gen|readSlotBit)
	})
	if err != nil || cerr != nil {
		// Nothing will fire for this registration: take p back, unless a
		// Cancel already did (its caller then owns the read side).
		if !p.Cancel() {
			return true
		}
		p.registered = wasRegistered && err == nil
		return false
	}
	return true
}

// Cancel takes the ReadPark back from the loop if it is parked there. True
// means resume will not run for that Park and the caller owns the read side;
// false means it was not parked, or its event already started resume.
func (p *ReadPark) Cancel() bool {
	lp := startedLoop.Load()
	if lp == nil {
		return false
	}
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if p.slot == 0 {
		return false
	}
	if !lp.reads.remove(p.slot-1, p) {
		return false
	}
	p.slot = 0
	return true
}

// takeReadSlot removes the ReadPark an event names, if the event is current.
func (lp *loop) takeReadSlot(idx, gen uint32) *ReadPark {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	p, ok := lp.reads.takeAt(idx, gen)
	if !ok {
		return nil
	}
	p.slot = 0
	return p
}
