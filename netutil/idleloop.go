package netutil

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// IdleLoop runs the serving loop of one socket (an accept loop, a datagram
// read loop) on a goroutine only while the socket is busy. The loop serves in
// periods: each begins by setting the socket's deadline one idle period ahead
// and ends when serve returns the deadline error. A period in which serve took
// something (it calls Active) is followed by another one on the same
// goroutine; after a quiet one the socket goes to netutil's epoll loop
// (ReadPark) and the goroutine ends, and a new period starts on a new
// goroutine once a connection or a datagram is waiting. An idle listener
// then holds no goroutine stack, which matters in shared mode, where every
// pod has its own listeners.
//
// A socket that epoll refuses (and every socket off Linux) keeps its
// goroutine and serves without a deadline.
//
// Ownership: the IdleLoop owns the socket's deadline and, between periods,
// its read side; serve owns the read side during a period. Close gives both
// back for good.
type IdleLoop struct {
	rc       syscall.RawConn
	deadline func(time.Time) error
	serve    func() error
	runTask  func() // l.run, bound once for the epoll loop

	// idle is the length of a period; zero once the socket could not be
	// parked (one goroutine for good). Only the goroutine running the loop
	// uses it; the hand-over through ReadPark orders one run after the other.
	idle time.Duration

	active atomic.Bool // serve took something in this period

	mu     sync.Mutex
	park   ReadPark // Park and Cancel under mu
	closed bool     // guarded by mu
	// ended holds one count from Start until the loop ends: run returns without parking,
	// or Close takes the parked socket back. Close waits for it.
	ended sync.WaitGroup
}

// Socket is what an IdleLoop serves: a listener or a datagram socket.
type Socket interface {
	SyscallConn() (syscall.RawConn, error)
}

// NewIdleLoop prepares a loop over sock. deadline sets the deadline of the
// socket's reads or accepts (net.TCPListener's SetDeadline, net.UDPConn's
// SetReadDeadline). serve takes connections or datagrams until the socket
// fails and returns that error: an error for which errors.Is(err,
// os.ErrDeadlineExceeded) holds ends the period, any other ends the loop.
// serve calls Active after each connection or datagram it takes. idle is the
// length of a period: how long the goroutine waits for the next connection
// before it gives itself up.
func NewIdleLoop(sock Socket, deadline func(time.Time) error, idle time.Duration, serve func() error) (*IdleLoop, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	if idle <= 0 {
		return nil, errors.New("netutil: IdleLoop needs a positive idle period")
	}
	l := &IdleLoop{rc: rc, deadline: deadline, serve: serve, idle: idle}
	l.runTask = l.run
	return l, nil
}

// Start runs the first period on a goroutine of its own. Call it once. That goroutine ends
// when the loop parks; later periods run on internal/workers goroutines, which the epoll loop
// starts.
func (l *IdleLoop) Start() {
	l.ended.Add(1)
	go l.run() // owned by l: Close waits for it
}

// Active tells the loop that serve took a connection or a datagram, so the
// loop keeps its goroutine through the next period. It costs one atomic
// store; serve calls it from its own goroutine.
func (l *IdleLoop) Active() { l.active.Store(true) }

// run serves periods until the loop parks or ends.
func (l *IdleLoop) run() {
	for {
		var until time.Time
		if l.idle > 0 {
			until = time.Now().Add(l.idle)
		}
		// Under mu, so that Close's stop comes after this deadline, not before it.
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			l.ended.Done()
			return
		}
		l.deadline(until) // an error means a closed socket, which serve reports
		l.mu.Unlock()
		err := l.serve()
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			l.ended.Done()
			return
		}
		if l.active.Swap(false) || l.idle == 0 {
			continue
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			l.ended.Done()
			return
		}
		parked := l.park.Park(l.rc, l.runTask)
		l.mu.Unlock()
		if parked {
			return // the epoll loop runs l.run again; l stays owed to Close
		}
		l.idle = 0 // epoll refused the socket: keep this goroutine, no deadline
	}
}

// Close ends the loop: it takes a parked socket back from the epoll loop, calls stop, which
// makes a running serve return (closing the socket does; so does a deadline in the past, for
// an owner that still has answers to send on the socket), and waits until no goroutine of the
// loop runs. It returns stop's error. Close is safe to call more than once and at any time
// after Start; no period starts after it.
func (l *IdleLoop) Close(stop func() error) error {
	l.mu.Lock()
	if !l.closed && l.park.Cancel() {
		l.ended.Done() // parked: no goroutine will run
	}
	l.closed = true
	l.mu.Unlock()
	err := stop()
	l.ended.Wait()
	return err
}
