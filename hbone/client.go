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
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.afterReadLoop(c.serveFrames())
	}()
	return &ClientConn{c: c}, nil
}

// Connect opens a CONNECT stream for req and waits for the answer. A 200
// returns the open stream; another status returns *StatusError. Errors
// matching ErrRefused mean the stream was not processed and may be retried
// on another connection. Cancelling ctx while waiting resets the stream.
func (cc *ClientConn) Connect(ctx context.Context, req *Request) (*Stream, error) {
	return cc.c.connect(ctx, req, nil)
}

// CanTakeNewStream reports whether Connect may open a stream now: false
// when the connection is closed or draining (GOAWAY), out of stream ids or
// at the peer's SETTINGS_MAX_CONCURRENT_STREAMS.
func (cc *ClientConn) CanTakeNewStream() bool {
	c := cc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closed && !c.closing && !c.goingAway && c.nextID <= maxStreamID &&
		uint32(len(c.streams)) < c.peerMaxStreams
}

// ActiveStreams returns the number of streams open on the connection.
func (cc *ClientConn) ActiveStreams() int {
	c := cc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.streams)
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
