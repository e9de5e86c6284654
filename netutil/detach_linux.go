package netutil

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ztunnel-go/ztunnel/internal/workers"
)

// Detached sockets.
//
// A *net.TCPConn costs about 900 bytes of process memory beyond the kernel's
// socket (its netFD and addresses, the runtime's poll descriptor, a
// finalizer record: BenchmarkIdleSocketFootprint), a bare descriptor about
// 85. Once both directions of a Link are parked, nothing reads or writes its
// TCP sockets through Go's net package until a direction resumes, so the
// Link holds them as bare descriptors in the meantime:
//
//   - detach (the last direction to park, under dmu): each TCP socket that
//     is the source of a parked direction is duplicated (F_DUPFD_CLOEXEC),
//     its epoll registration moves to the duplicate, and the *net.TCPConn is
//     closed. The socket stays open, since the duplicate refers to it.
//   - while detached, the epoll loop watches the bare descriptors, and a
//     direction parked on its notification writes arriving bytes straight
//     to them (Offer, deliver, under dmu).
//   - attach (the first direction to resume, under dmu, before it touches a
//     socket): net.FileConn makes a *net.TCPConn of each bare descriptor
//     again, the socket options Go's FileConn resets (TCP_NODELAY and the
//     keepalive settings) are put back, and the registration of a direction
//     still parked moves to the new descriptor.
//   - closeBoth closes bare descriptors itself, with SO_LINGER 0 where the
//     socket's close must be a reset.
//
// The duplicate has another descriptor number, and the kernel keys epoll
// registrations by file and number, so each move deletes the old
// registration explicitly before the old number is closed and adds the new
// one (ADD reports a socket that is already readable, so no wake-up is lost
// in between). A registration the loop has already taken (its event is being
// handled) is not added again.

// tcpOpts are the socket options net.FileConn sets on the socket it wraps,
// read before and written back after.
type tcpOpts struct {
	noDelay, keepAlive, keepIdle, keepIntvl, keepCnt int
	ok                                               bool
}

// read reads the options of fd; ok is false when one cannot be read.
func (t *tcpOpts) read(fd int) {
	var err [5]error
	t.noDelay, err[0] = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
	t.keepAlive, err[1] = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	t.keepIdle, err[2] = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	t.keepIntvl, err[3] = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
	t.keepCnt, err[4] = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	t.ok = err == [5]error{}
}

// write sets the options read on fd again.
func (t *tcpOpts) write(fd int) error {
	if !t.ok {
		return nil
	}
	for _, o := range [...]struct{ level, opt, v int }{
		{unix.IPPROTO_TCP, unix.TCP_NODELAY, t.noDelay},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, t.keepIdle},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, t.keepIntvl},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, t.keepCnt},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, t.keepAlive},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
	}
	return nil
}

// setSrc replaces the source connection of d (and its RawConn) in the Link;
// nil for both while it is detached.
func (d *dirState) setSrc(c net.Conn, rc syscall.RawConn) {
	if d.aToB {
		d.link().a, d.link().rawA = c, rc
	} else {
		d.link().b, d.link().rawB = c, rc
	}
}

// detachable reports whether d's source is a TCP socket that d watches in
// the epoll loop while parked.
func (d *dirState) detachable() bool {
	return (d.mode == modeSplice || d.mode == modeRead) && d.raw.canPark
}

// detach detaches the Link's TCP sockets: both directions are parked and the
// Link is not closing. Called with dmu held. A socket that cannot be
// detached (no descriptor left for the duplicate) stays attached.
func (l *Link) detach() {
	lp := startedLoop.Load()
	if lp == nil {
		return
	}
	for _, d := range [2]*dirState{&l.aToB, &l.bToA} {
		if d.bare == 0 && d.detachable() {
			d.detachSrc(lp)
		}
	}
}

// detaches counts the sockets detached since the process started (tests
// read it to know that they raced what they meant to race).
var detaches atomic.Uint64

// detachSrc detaches d's source.
func (d *dirState) detachSrc(lp *loop) {
	tc, ok := d.src().(*net.TCPConn)
	if !ok {
		return
	}
	nfd, derr := -1, error(nil)
	err := d.srcRaw().Control(func(fd uintptr) {
		if nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0); derr != nil {
			return
		}
		if d.raw.registered {
			unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
			d.raw.registered = false
		}
	})
	if err != nil || derr != nil {
		return
	}
	resume := lp.rearm(d, nfd)
	tc.Close() // the duplicate keeps the socket open: no FIN
	d.setSrc(nil, nil)
	d.bare = int32(nfd) + 1
	detaches.Add(1)
	if resume {
		workers.Go(d.resume) // owned by the Link, as every direction goroutine
	}
}

// attach attaches the Link's detached sockets again (under dmu). On an
// error the Link is lost: the bare descriptors left are closed, and every
// direction that resumes ends.
func (l *Link) attach() error {
	if l.aToB.bare == 0 && l.bToA.bare == 0 {
		return nil
	}
	lp := startedLoop.Load()
	var first error
	for _, d := range [2]*dirState{&l.aToB, &l.bToA} {
		if d.bare == 0 {
			continue
		}
		if first != nil {
			unix.Close(int(d.bare - 1))
			d.bare, d.raw.registered = 0, false
			continue
		}
		first = d.attachSrc(lp)
	}
	l.attachedAt = mono()
	if first != nil {
		l.flags.Or(linkLost)
	}
	return first
}

// The spare descriptor. Attaching needs a second descriptor of the socket
// for a moment (net.FileConn duplicates the bare one before it is closed),
// so a process at its RLIMIT_NOFILE, such as a ztunnel flooded with
// connections that never finish a handshake, would lose every detached
// connection that wakes up. An eventfd is held in reserve instead: an
// attach that finds no descriptor free closes it, which frees the number
// net.FileConn then takes, and the number the bare descriptor leaves takes
// the spare again. spareMu serialises those attaches, and guards spare;
// an attach that finds a descriptor free does not take it.
var (
	spareMu sync.Mutex
	spare   = -1 // the reserved descriptor; -1 while it is not held
)

// takeSpare reserves the spare descriptor if it is not held (with spareMu
// held). Without a free descriptor it stays unheld until a later call.
func takeSpare() {
	if spare < 0 {
		if fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC); err == nil {
			spare = fd
		}
	}
}

// fileConn is net.FileConn of f, which it closes. When no descriptor is
// free it gives the spare up for the call, and takes it again after.
func fileConn(f *os.File) (net.Conn, error) {
	nc, err := net.FileConn(f)
	if !errors.Is(err, unix.EMFILE) && !errors.Is(err, unix.ENFILE) {
		f.Close()
		return nc, err
	}
	spareMu.Lock()
	defer spareMu.Unlock()
	if spare >= 0 {
		unix.Close(spare)
		spare = -1
		nc, err = net.FileConn(f)
	}
	f.Close()
	takeSpare()
	return nc, err
}

// attachSrc makes d's bare source a *net.TCPConn again. The bare descriptor
// is closed either way.
func (d *dirState) attachSrc(lp *loop) error {
	fd := int(d.bare - 1)
	d.bare = 0
	var opts tcpOpts
	opts.read(fd)
	if d.raw.registered {
		unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, fd, nil)
		d.raw.registered = false
	}
	// A new descriptor of the same socket; the bare one is closed.
	nc, err := fileConn(os.NewFile(uintptr(fd), "netutil-detached"))
	if err != nil {
		return fmt.Errorf("netutil: attaching an idle socket again: %w", err)
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		return fmt.Errorf("netutil: attaching an idle socket again: %T is not TCP", nc)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		tc.Close()
		return fmt.Errorf("netutil: attaching an idle socket again: %w", err)
	}
	var resume bool
	cerr := rc.Control(func(nfd uintptr) {
		if err = opts.write(int(nfd)); err == nil {
			resume = lp.rearm(d, int(nfd))
		}
	})
	if cerr != nil || err != nil {
		tc.Close()
		return fmt.Errorf("netutil: attaching an idle socket again: %w", cmp.Or(cerr, err))
	}
	d.setSrc(tc, rc)
	if resume {
		workers.Go(d.resume) // owned by the Link, as every direction goroutine
	}
	return nil
}

// closeDetached closes the Link's bare descriptors for closeBoth (under
// dmu), with a reset (SO_LINGER 0) where asked, and marks the Link lost.
// Closing the last descriptor of a socket also removes it from the epoll
// set.
func (l *Link) closeDetached(resetA, resetB bool) {
	for _, d := range [2]*dirState{&l.aToB, &l.bToA} {
		if d.bare == 0 {
			continue
		}
		fd := int(d.bare - 1)
		reset := resetA // d's source is a
		if !d.aToB {
			reset = resetB
		}
		if reset {
			unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
		}
		unix.Close(fd)
		d.bare, d.raw.registered = 0, false
		l.flags.Or(linkLost)
	}
}

// rearm registers fd, d's source's new descriptor, for d's parked slot if d
// is still parked in the loop. It reports true when d was parked but the
// registration failed: d was taken back, and the caller must resume it.
func (lp *loop) rearm(d *dirState, fd int) (resume bool) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	r := &d.raw
	if r.slot == 0 {
		return false // not parked, or its event is being handled
	}
	idx := r.slot - 1
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(idx), Pad: int32(lp.dirs.slots[idx].gen)}
	if unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, fd, &ev) == nil {
		r.registered = true
		return false
	}
	lp.dirs.remove(idx, d)
	r.slot = 0
	return true
}
