package proxy

import (
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// fdHeadroom is how many descriptors below RLIMIT_NOFILE's soft limit accepted connections leave
// free. A flood of connections that never finish a handshake (or any burst) would otherwise take
// every descriptor, and what the connections already served need next would fail: an upstream
// dial, the second descriptor netutil needs for a moment to attach an idle socket again (its
// spare covers one attach at a time, and another thread can take the number it frees), xDS and
// CA reconnects. Descriptor numbers are allocated lowest first, so an accepted socket whose
// number is within fdHeadroom of the limit means fewer than fdHeadroom are free: it is reset at
// once.
const fdHeadroom = 16

// fdGuard refuses accepted connections that would eat into fdHeadroom. Safe for concurrent use.
type fdGuard struct {
	// ceiling is the lowest descriptor number an accepted connection may not have: the soft
	// limit less fdHeadroom, read by New. 0: no check (the limit is unknown, or too low to
	// keep any headroom). Atomic so that tests can move it while the accept loops run.
	ceiling atomic.Int64
	limit   int64 // the soft limit New read; for the log line only
	refused atomic.Uint64
	logs    logLimiter
}

// newFDGuard reads RLIMIT_NOFILE (after the Go runtime raised its soft limit to the hard one).
func newFDGuard() *fdGuard {
	g := &fdGuard{}
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<31 {
		return g
	}
	g.limit = int64(r.Cur)
	if g.limit > 2*fdHeadroom {
		g.ceiling.Store(g.limit - fdHeadroom)
	}
	return g
}

// admit reports whether c may be served; when it may not, it was reset and closed, and the
// refusal logged (at most once per logEvery). probe is the calling accept loop's, and l its
// listener.
func (g *fdGuard) admit(c net.Conn, probe *fdProbe, log *slog.Logger, l net.Listener) bool {
	ceiling := g.ceiling.Load()
	if ceiling <= 0 {
		return true
	}
	fd := probe.of(c)
	if fd < ceiling {
		return true
	}
	g.refused.Add(1)
	if suppressed, ok := g.logs.allow(); ok {
		log.Warn("file descriptors nearly exhausted, refusing connection", "fd", fd,
			"limit", g.limit, "headroom", fdHeadroom, "listener", l.Addr().String(),
			"src", c.RemoteAddr().String(), "suppressed", suppressed, "refused_total", g.refused.Load())
	}
	refuse(c)
	return false
}

// refuse closes a connection the accept loop will not serve with a reset: the client learns at
// once, and no TIME_WAIT stays here.
func refuse(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// fdProbe reads accepted sockets' descriptor numbers for one accept loop, which owns it. Its
// callback is made once, so that a reading costs only the syscall.RawConn (one allocation per
// accepted connection; TestCRRAllocs counts it).
type fdProbe struct {
	fd   int64
	read func(uintptr)
}

func newFDProbe() *fdProbe {
	p := &fdProbe{}
	p.read = func(fd uintptr) { p.fd = int64(fd) }
	return p
}

// of is c's descriptor number, or -1 when c has none.
func (p *fdProbe) of(c net.Conn) int64 {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	p.fd = -1
	rc.Control(p.read)
	return p.fd
}

// logLimiter lets a log line through at most once per logEvery: an attacker can trigger a
// refusal per connection attempt. Safe for concurrent use.
type logLimiter struct {
	next       atomic.Int64 // the earliest time (unix nanoseconds) the next line may pass
	suppressed atomic.Uint64
}

// allow reports whether a line may be logged now, and how many were held back since the last.
func (l *logLimiter) allow() (suppressed uint64, ok bool) {
	now := time.Now().UnixNano()
	next := l.next.Load()
	if now < next || !l.next.CompareAndSwap(next, now+int64(logEvery)) {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}
