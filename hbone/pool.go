package hbone

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Key identifies a pool of connections: ztunnel pools per source identity,
// expected destination identities and HBONE address. Source and Expected
// are opaque to this package.
type Key struct {
	Source   string         // source identity
	Expected string         // expected destination identities, canonical string
	Addr     netip.AddrPort // HBONE endpoint dialed (ip:15008)
}

// PoolConfig configures a Pool.
type PoolConfig struct {
	// Dial returns a connection to k.Addr that completed its TLS handshake
	// (ALPN h2) with the identities k names. Required. The context carries
	// the first waiting caller's deadline and ends when the pool closes.
	Dial func(ctx context.Context, k Key) (net.Conn, error)
	// MaxStreamsPerConn is the most streams one connection carries (also
	// capped by the peer's SETTINGS_MAX_CONCURRENT_STREAMS). 0 means 100.
	MaxStreamsPerConn int
	// IdleTimeout closes a connection that carried no stream for this
	// long. 0 means 5 minutes.
	IdleTimeout time.Duration
	// Config applies to every connection.
	Config Config
	// Closed, if set, is called once for each connection Dial returned,
	// when the pool is done with it: it ended (and was closed), or it was
	// closed unused because the pool closed first. Its owner may keep what it
	// learned of the connection until then.
	Closed func(nc net.Conn)
}

// Defaults of PoolConfig.
const (
	DefaultMaxStreamsPerConn = 100
	DefaultIdleTimeout       = 5 * time.Minute
)

// PoolStats is a snapshot of a pool.
type PoolStats struct {
	Conns   int // open connections
	Streams int // streams checked out
}

// Pool keeps client connections per Key: a Connect reuses a connection of
// its key with spare streams, otherwise it waits for the key's single dial
// in flight (or starts it). A connection with no streams for IdleTimeout is
// closed; a dead one is dropped.
type Pool struct {
	cfg    PoolConfig      // immutable after NewPool
	ctx    context.Context // ends at Close; parent of dials
	cancel context.CancelFunc

	mu      sync.Mutex // guards the fields below and poolConn.streams/idleSince
	keys    map[Key]*poolKey
	closed  bool
	conns   int
	streams int

	wg sync.WaitGroup // dial goroutines, and idle closes under way
}

type poolKey struct {
	conns []*poolConn
	dial  *poolDial // the dial in flight, if any
}

type poolDial struct {
	done chan struct{} // closed when the dial ended
	err  error         // set before done is closed
}

// poolConn is one pooled connection. It has no goroutine of its own: its
// idle timer checks it now and then, and its end (whatever the cause)
// removes it from the pool through the connection's end hook.
type poolConn struct {
	key       Key
	cc        *ClientConn
	streams   int       // checked-out streams; guarded by Pool.mu
	idleSince time.Time // when streams dropped to 0; guarded by Pool.mu
	// idle runs p.idleCheck(pc) IdleTimeout after the connection was made;
	// a check that finds streams open looks again IdleTimeout later, one
	// that finds the connection idle for less than IdleTimeout looks again
	// when it will have been. So the connection closes IdleTimeout after its
	// last stream ended, and releasing a stream costs nothing.
	idle *time.Timer
}

// NewPool returns a pool. Close it to release its connections.
func NewPool(cfg PoolConfig) *Pool {
	if cfg.MaxStreamsPerConn <= 0 {
		cfg.MaxStreamsPerConn = DefaultMaxStreamsPerConn
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Pool{cfg: cfg, ctx: ctx, cancel: cancel, keys: make(map[Key]*poolKey)}
}

// maxRefusedRetries bounds retries of streams the peer did not process.
const maxRefusedRetries = 3

// Connect opens a CONNECT stream to k on a pooled connection.
func (p *Pool) Connect(ctx context.Context, k Key, req *Request) (*Stream, error) {
	return p.request(ctx, k, req, true)
}

// Open is ClientConn.Open on a pooled connection to k: it returns the stream
// once the request is written. Streams the connection cannot take now (it
// is draining or at the peer's limit) are retried on another connection, as
// with Connect; a refusal that comes after Open returned is not.
func (p *Pool) Open(ctx context.Context, k Key, req *Request) (*Stream, error) {
	return p.request(ctx, k, req, false)
}

// OpenBy is Open bounded by a deadline instead of a context. It makes no
// context or timer while a pooled connection of k has room, which is the
// common case; a caller that must wait for a dial gets one then.
func (p *Pool) OpenBy(deadline time.Time, k Key, req *Request) (*Stream, error) {
	return p.request(deadlineCtx(deadline.UnixNano()), k, req, false)
}

// deadlineCtx is a context with a deadline (Unix nanoseconds) and no Done
// channel. It exists only inside this package, on the path of an Open
// (OpenBy), whose every wait the deadline bounds by other means: acquire
// makes a real context before it waits for a dial, the dial gets a real
// context with the deadline, and an opened stream's answer is awaited
// until the deadline (awaitAnswer). It is never handed outside the package.
type deadlineCtx int64

func (d deadlineCtx) Deadline() (time.Time, bool) { return time.Unix(0, int64(d)), true }
func (d deadlineCtx) Done() <-chan struct{}       { return nil }
func (d deadlineCtx) Value(any) any               { return nil }
func (d deadlineCtx) Err() error {
	if time.Now().UnixNano() >= int64(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// request is Connect (wait true) and Open (wait false).
func (p *Pool) request(ctx context.Context, k Key, req *Request, wait bool) (*Stream, error) {
	for attempt := 0; ; attempt++ {
		pc, err := p.acquire(ctx, k)
		if err != nil {
			return nil, err
		}
		s, err := pc.cc.c.request(ctx, req, wait)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, ErrRefused) || attempt >= maxRefusedRetries || ctx.Err() != nil {
			return nil, err
		}
	}
}

// acquire reserves one stream on a connection of k, dialing if needed. It prefers a
// connection that is not moving bulk DATA (conn.busy): while all of the key's connections are
// busy and there are fewer than maxBusyConns, it waits for a new one rather than queue the
// stream behind a bulk transfer; when that dial fails, a busy connection still serves.
// Among calm connections it takes the one with the fewest streams: streams that open
// together, before any has moved enough DATA to make its connection busy, spread over the
// connections the key has rather than all joining the first.
func (p *Pool) acquire(ctx context.Context, k Key) (*poolConn, error) {
	avoidBusy := true
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		e := p.keys[k]
		if e == nil {
			e = &poolKey{}
			p.keys[k] = e
		}
		// pick is the calm connection with room that carries the fewest streams (the
		// first of equals); spare is a busy one with room.
		var pick, spare *poolConn
		for _, pc := range e.conns {
			if pc.streams >= p.cfg.MaxStreamsPerConn || !pc.cc.CanTakeNewStream() {
				continue
			}
			// A connection without streams carries nobody's transfer, whatever it moved
			// just before its last stream ended.
			if avoidBusy && pc.streams > 0 && pc.cc.c.busy() {
				if spare == nil {
					spare = pc
				}
				continue
			}
			if pick == nil || pc.streams < pick.streams {
				pick = pc
			}
			if pick.streams == 0 {
				break
			}
		}
		if pick == nil && spare != nil && (!avoidBusy || len(e.conns) >= maxBusyConns) {
			pick = spare
		}
		if pick != nil {
			pick.streams++
			p.streams++
			p.mu.Unlock()
			return pick, nil
		}
		d := e.dial
		if d == nil {
			d = &poolDial{done: make(chan struct{})}
			e.dial = d
			dctx, cancel := p.ctx, context.CancelFunc(func() {})
			if dl, ok := ctx.Deadline(); ok {
				dctx, cancel = context.WithDeadline(p.ctx, dl)
			}
			p.wg.Add(1)
			go p.dial(dctx, cancel, k, e, d)
		}
		p.mu.Unlock()
		if err := waitDial(ctx, d); err != nil {
			return nil, &DialError{Addr: k.Addr, Waited: true, Err: err}
		}
		if d.err != nil {
			if spare != nil && avoidBusy {
				avoidBusy = false // the busy connection is better than none
				continue
			}
			return nil, d.err
		}
	}
}

// DialError reports that a pool connection to Addr could not be established: Config.Dial
// failed (the TCP connect or the TLS handshake), or the HTTP/2 client could not start on the
// connection, or (Waited) the request's deadline passed while the dial was in progress.
type DialError struct {
	Addr   netip.AddrPort
	Waited bool
	Err    error
}

func (e *DialError) Error() string {
	if e.Waited {
		return "hbone: waiting for connection to " + e.Addr.String() + ": " + e.Err.Error()
	}
	return "hbone: dial " + e.Addr.String() + ": " + e.Err.Error()
}

func (e *DialError) Unwrap() error { return e.Err }

// waitDial waits for d to end, or for ctx to end first (its cause). A
// deadlineCtx has no Done channel: a timer-backed context is made for it
// here, on the slow path only.
func waitDial(ctx context.Context, d *poolDial) error {
	if dc, ok := ctx.(deadlineCtx); ok {
		dl, _ := dc.Deadline()
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(context.Background(), dl)
		defer cancel()
	}
	select {
	case <-d.done:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// dial runs in a goroutine owned by the pool: the key's one dial in flight.
func (p *Pool) dial(ctx context.Context, cancel context.CancelFunc, k Key, e *poolKey, d *poolDial) {
	defer p.wg.Done()
	defer cancel()
	var cc *ClientConn
	var added *poolConn
	nc, err := p.cfg.Dial(ctx, k)
	if err == nil {
		cc, err = NewClientConn(nc, p.cfg.Config)
	}
	p.mu.Lock()
	e.dial = nil
	if err == nil && p.closed {
		err = ErrPoolClosed
		defer p.closed1(nc)
		defer cc.Close()
	}
	if err != nil {
		d.err = &DialError{Addr: k.Addr, Err: err}
		if len(e.conns) == 0 && p.keys[k] == e {
			delete(p.keys, k)
		}
	} else {
		pc := &poolConn{key: k, cc: cc, idleSince: time.Now()}
		// Every stream on the connection gives its reservation back when it ends.
		cc.c.streamDone = func() { p.release(pc) }
		e.conns = append(e.conns, pc)
		p.conns++
		pc.idle = time.AfterFunc(p.cfg.IdleTimeout, func() { p.idleCheck(pc) })
		added = pc
	}
	close(d.done)
	p.mu.Unlock()
	if added != nil {
		// A connection that ends (peer gone, GOAWAY drained, keepalive)
		// leaves the pool at once.
		cc.c.onEnd(func() {
			p.ended(added)
			p.closed1(nc)
		})
	}
}

// closed1 reports a connection Dial returned to cfg.Closed.
func (p *Pool) closed1(nc net.Conn) {
	if p.cfg.Closed != nil {
		p.cfg.Closed(nc)
	}
}

// release returns a stream reservation; it is the stream's completion hook.
func (p *Pool) release(pc *poolConn) {
	p.mu.Lock()
	pc.streams--
	p.streams--
	if pc.streams == 0 {
		pc.idleSince = time.Now()
	}
	p.mu.Unlock()
}

// idleCheck runs on pc's idle timer: it closes a connection that carried no
// stream for IdleTimeout, and otherwise looks again when that could be true.
func (p *Pool) idleCheck(pc *poolConn) {
	idle := p.cfg.IdleTimeout
	p.mu.Lock()
	if p.closed || pc.cc.c.isClosed() {
		p.mu.Unlock()
		return
	}
	if pc.streams > 0 {
		p.mu.Unlock()
		pc.idle.Reset(idle)
		return
	}
	if wait := idle - time.Since(pc.idleSince); wait > 0 {
		p.mu.Unlock()
		pc.idle.Reset(wait)
		return
	}
	p.removeLocked(pc)
	p.wg.Add(1) // Close waits for this close
	p.mu.Unlock()
	pc.cc.Close()
	p.wg.Done()
}

// ended is pc's end hook: the connection is gone, so it leaves the pool.
// It runs on the goroutine that ended the connection and only forgets it
// (ClientConn.Close, which waits for the read loop, is for its owners).
func (p *Pool) ended(pc *poolConn) {
	pc.idle.Stop()
	p.remove(pc)
}

func (p *Pool) remove(pc *poolConn) {
	p.mu.Lock()
	p.removeLocked(pc)
	p.mu.Unlock()
}

func (p *Pool) removeLocked(pc *poolConn) {
	e := p.keys[pc.key]
	if e == nil {
		return
	}
	for i, x := range e.conns {
		if x == pc {
			e.conns = append(e.conns[:i], e.conns[i+1:]...)
			p.conns--
			break
		}
	}
	if len(e.conns) == 0 && e.dial == nil {
		delete(p.keys, pc.key)
	}
}

// Close closes every connection and waits for the pool's goroutines.
// Streams still open fail.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	var conns []*poolConn
	for _, e := range p.keys {
		conns = append(conns, e.conns...)
	}
	p.mu.Unlock()
	p.cancel() // dials in flight
	for _, pc := range conns {
		pc.idle.Stop()
		pc.cc.Close()
	}
	p.wg.Wait()
	p.mu.Lock()
	clear(p.keys)
	p.conns = 0
	p.mu.Unlock()
	return nil
}

// Stats returns the number of open connections and checked-out streams.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PoolStats{Conns: p.conns, Streams: p.streams}
}
