package netutil

import (
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// rawDir is the raw-socket state of one relay direction: the callbacks given
// to syscall.RawConn, bound once per relay so no read allocates, and what the
// last callback did. Owned by the goroutine running the direction.
type rawDir struct {
	src, dst syscall.RawConn

	pipe   *pipe                 // spliced bytes in flight; nil while idle
	inPipe int                   // bytes in pipe not yet written to dst
	buf    *[relayBufSize]byte   // read path: bytes in flight; nil while idle
	n      int                   // bytes the last callback moved
	err    error                 // errno of the last callback
	readFn func(fd uintptr) bool // bound to spliceIn or readIn
	outFn  func(fd uintptr) bool // bound to spliceOut
}

// copyRaw moves src to dst when src is a TCP socket: by splice(2) when dst is
// one too, else by read(2) into a pooled buffer and dst.Write. handled is
// false when src is not a TCP socket (copyConn then does the work).
//
// An idle direction parks in src's RawConn.Read, that is in Go's netpoller,
// holding neither pipe nor buffer: the callback takes one from its pool only
// for a read attempt and gives it back when the attempt finds nothing.
func (d *dirState) copyRaw(dst, src net.Conn) (n int64, err error, handled bool) {
	stc, ok := src.(*net.TCPConn)
	if !ok {
		return 0, nil, false
	}
	r := &d.raw
	if r.src, err = stc.SyscallConn(); err != nil {
		return 0, err, true
	}
	if dtc, ok := dst.(*net.TCPConn); ok {
		if r.dst, err = dtc.SyscallConn(); err != nil {
			return 0, err, true
		}
		n, err, handled = d.splice()
		if handled {
			return n, err, true
		}
		// splice(2) refused these sockets before moving a byte: copy instead.
	}
	return d.readCopy(dst)
}

// splice is the zero-copy loop: splice src into a pipe, then the pipe into dst.
// handled is false when the kernel refuses to splice the first bytes (EINVAL:
// a socket type without splice support).
func (d *dirState) splice() (int64, error, bool) {
	r := &d.raw
	r.readFn, r.outFn = r.spliceIn, r.spliceOut
	defer func() {
		if r.pipe != nil {
			if r.inPipe == 0 {
				pipes.put(r.pipe)
			} else {
				r.pipe.close() // holds bytes that never left: not reusable
			}
			r.pipe = nil
		}
	}()
	for {
		r.n, r.err = 0, nil
		if err := r.src.Read(r.readFn); err != nil {
			return d.total, err, true
		}
		if r.err != nil {
			if d.total == 0 && (r.err == unix.EINVAL || r.err == unix.EOPNOTSUPP) {
				return 0, nil, false
			}
			return d.total, os.NewSyscallError("splice", r.err), true
		}
		if r.n == 0 {
			return d.total, nil, true // EOF
		}
		r.inPipe = r.n
		for r.inPipe > 0 {
			r.n, r.err = 0, nil
			err := r.dst.Write(r.outFn)
			d.wrote(r.n)
			if err != nil {
				return d.total, err, true
			}
			if r.err != nil {
				return d.total, os.NewSyscallError("splice", r.err), true
			}
		}
	}
}

// spliceIn is src's read callback: one splice from the socket into a pipe,
// taken from the pool for the attempt and given back when the socket has
// nothing (then false asks the netpoller to wait for readability).
func (r *rawDir) spliceIn(fd uintptr) bool {
	if r.pipe == nil {
		p, err := pipes.get()
		if err != nil {
			r.err = err
			return true
		}
		r.pipe = p
	}
	for {
		n, err := unix.Splice(int(fd), nil, r.pipe.w, nil, r.pipe.size, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		switch err {
		case nil:
			r.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			pipes.put(r.pipe)
			r.pipe = nil
			return false
		default:
			r.err = err
			return true
		}
	}
}

// spliceOut is dst's write callback: it drains the pipe into the socket until
// the pipe is empty; a full socket returns false, which waits for writability
// and calls it again. r.n counts what it wrote over those calls.
func (r *rawDir) spliceOut(fd uintptr) bool {
	for r.inPipe > 0 {
		n, err := unix.Splice(r.pipe.r, nil, int(fd), nil, r.inPipe, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		switch err {
		case nil:
			r.inPipe -= int(n)
			r.n += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			r.err = err
			return true
		}
	}
	return true
}

// readCopy reads the TCP source with read(2) into a pooled buffer taken only
// for the attempt, and writes what it read to dst.
func (d *dirState) readCopy(dst net.Conn) (int64, error, bool) {
	r := &d.raw
	r.readFn = r.readIn
	defer func() {
		if r.buf != nil {
			relayBufPool.Put(r.buf)
			r.buf = nil
		}
	}()
	for {
		r.n, r.err = 0, nil
		if err := r.src.Read(r.readFn); err != nil {
			return d.total, err, true
		}
		if r.err != nil {
			return d.total, os.NewSyscallError("read", r.err), true
		}
		if r.n == 0 {
			return d.total, nil, true // EOF
		}
		nw, err := dst.Write(r.buf[:r.n])
		d.wrote(nw)
		if err != nil {
			return d.total, err, true
		}
	}
}

// readIn is src's read callback on the read path: like spliceIn, with a
// pooled buffer in place of a pipe.
func (r *rawDir) readIn(fd uintptr) bool {
	if r.buf == nil {
		r.buf = relayBufPool.Get().(*[relayBufSize]byte)
	}
	for {
		n, err := unix.Read(int(fd), r.buf[:])
		switch err {
		case nil:
			r.n = n
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			relayBufPool.Put(r.buf)
			r.buf = nil
			return false
		default:
			r.err = err
			return true
		}
	}
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
