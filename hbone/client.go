package hbone

import (
	"context"
	"errors"
	"net"
)

// ClientConn is one client HTTP/2 connection carrying CONNECT streams.
// Its methods are safe for concurrent use.
type ClientConn struct {
	c *conn // immutable
}

// NewClientConn starts HTTP/2 on nc, normally a *tls.Conn that completed
// its handshake with ALPN "h2". It queues the preface, SETTINGS and the
// connection WINDOW_UPDATE and starts the connection's goroutines; it does
// not wait for the server's SETTINGS. The ClientConn owns nc from now on.
func NewClientConn(nc net.Conn, cfg Config) (*ClientConn, error) {
	if nc == nil {
		return nil, errors.New("hbone: NewClientConn with nil conn")
	}
	c := newConn(nc, cfg, false, nil)
	c.start()
	c.wg.Add(1)     // the read loop's, until readEnded
	go c.readLoop() // owned by the connection; it parks while the peer is silent
	return &ClientConn{c: c}, nil
}

// Connect opens a CONNECT stream for req and waits for the answer. A 200
// returns the open stream; another status returns *StatusError. Errors
// matching ErrRefused mean the stream was not processed and may be retried
// on another connection. Cancelling ctx while waiting resets the stream.
func (cc *ClientConn) Connect(ctx context.Context, req *Request) (*Stream, error) {
	return cc.c.connect(ctx, req)
}

// Open opens a CONNECT stream for req and returns it as soon as the request
// is written, without waiting for the answer, so the tunnel's first bytes
// leave in the round trip of the request instead of after it. req.Early goes
// out as with Connect, the part the windows did not take at once before
// Open returns. Write may send more before the answer; Read waits for it
// and fails with *StatusError on an answer other than 200 (Refusal then
// tells a refused request from a later failure). ctx bounds the request's
// sending; its deadline, if any, also bounds the wait for the answer: a
// stream still unanswered then is reset and its Read fails with an error
// matching os.ErrDeadlineExceeded. A refusal after Open returned is not
// retried, even one matching ErrRefused: the stream may have sent bytes
// that only its caller had.
//
// The peer holds what arrives before it answers (RFC 9113 lets a client
// send DATA before the response; ztunnels deliver it only after a 200).
func (cc *ClientConn) Open(ctx context.Context, req *Request) (*Stream, error) {
	return cc.c.open(ctx, req)
}

// CanTakeNewStream reports whether Connect may open a stream now: false
// when the connection is closed or draining (GOAWAY), out of stream ids or
// at the peer's SETTINGS_MAX_CONCURRENT_STREAMS.
func (cc *ClientConn) CanTakeNewStream() bool {
	c := cc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closed && !c.closing && !c.goingAway && c.nextID <= maxStreamID &&
		uint32(c.streams.len()) < c.peerMaxStreams
}

// ActiveStreams returns the number of streams open on the connection.
func (cc *ClientConn) ActiveStreams() int {
	c := cc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams.len()
}

// Err returns why the connection ended, or nil while it is alive.
func (cc *ClientConn) Err() error {
	c := cc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection at once (open streams fail) and waits for its
// goroutines. It must not be called from a Stream completion hook.
func (cc *ClientConn) Close() error {
	cc.c.fail(errConnClosed)
	cc.c.wg.Wait()
	return nil
}

// Done returns a channel closed when the connection is gone.
func (cc *ClientConn) Done() <-chan struct{} { return cc.c.done }
