package hbone

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// Handler serves one CONNECT stream. It runs in its own goroutine, owned by
// the Server, and must answer with s.Respond(200) (then relay) or
// s.Reject(code). When it returns, the stream is closed (and answered 500
// if it was not answered), unless it answered and called s.Detach to keep
// relaying the stream on goroutines of its own.
type Handler interface {
	ServeHBONE(s *Stream, req *Request)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(s *Stream, req *Request)

// ServeHBONE calls f(s, req).
func (f HandlerFunc) ServeHBONE(s *Stream, req *Request) { f(s, req) }

// Server serves HBONE on connections its caller accepted and handshook.
// Requests other than CONNECT, or without an authority, are answered 400
// without calling Handler; everything else is up to Handler.
//
// Config and Handler must be set before the first ServeConn and not changed
// afterwards.
type Server struct {
	Config  Config
	Handler Handler

	mu       sync.Mutex
	conns    map[*conn]struct{} // guarded by mu
	shutdown bool               // guarded by mu
	serving  sync.WaitGroup     // ServeConn calls in flight
}

// ServeConn serves HTTP/2 on nc until the connection ends, ctx is done
// (the connection is closed at once) or Shutdown drains it. It returns
// after every Handler it started has returned. A connection that ended
// normally (peer closed, drained, shut down) returns nil.
func (srv *Server) ServeConn(ctx context.Context, nc net.Conn) error {
	res := make(chan error, 1)
	srv.Serve(ctx, nc, func(err error) { res <- err })
	return <-res
}

// Serve is ServeConn without holding the calling goroutine for the
// connection's life: it returns once the connection's read loop parks (the
// peer silent for 100 ms, over a connection that can park: tls/record's Conn
// on a socket) or the connection ended, and done runs with what ServeConn
// would return when the connection has ended and every Handler it started
// has returned. done runs exactly once, on whichever goroutine ends the
// connection (the caller's, if it ends before Serve returns). Over a
// connection that cannot park, Serve returns only at the end, as ServeConn.
// A parked connection holds no goroutine (see the package doc).
func (srv *Server) Serve(ctx context.Context, nc net.Conn, done func(error)) {
	if srv.Handler == nil {
		nc.Close()
		done(errors.New("hbone: Server without Handler"))
		return
	}
	c := newConn(nc, srv.Config, true, srv)
	c.ctx = ctx
	c.served = done
	srv.mu.Lock()
	if srv.shutdown {
		srv.mu.Unlock()
		nc.Close()
		done(ErrServerClosed)
		return
	}
	if srv.conns == nil {
		srv.conns = make(map[*conn]struct{})
	}
	srv.conns[c] = struct{}{}
	srv.serving.Add(1)
	srv.mu.Unlock()

	c.stopCtx = neverStopped
	if ctx.Done() != nil { // a context that can end (the proxy's cannot: two objects fewer)
		c.stopCtx = context.AfterFunc(ctx, func() {
			c.fail(fmt.Errorf("hbone: serve context done: %w", context.Cause(ctx)))
		})
	}
	c.start()
	if err := c.readPreface(); err != nil {
		c.readEnded(err)
		return
	}
	c.readLoop()
}

// neverStopped is stopCtx for a context that never ends.
func neverStopped() bool { return false }

// connEnded is the end of a connection's service, after its read loop
// ended: it waits for the control writer and the Handlers, forgets the
// connection and reports to Serve's caller.
func (srv *Server) connEnded(c *conn) {
	c.stopCtx()
	c.wg.Wait()
	c.handlers.Wait()
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if isBenign(err) || errors.Is(err, errGoAwayDrain) {
		err = nil
	}
	srv.mu.Lock()
	delete(srv.conns, c)
	srv.mu.Unlock()
	srv.serving.Done()
	c.served(err)
}

// Shutdown drains every connection in two steps (conn.goAway): GOAWAY(2^31-1)
// and a PING, then, once the peer answered it, GOAWAY with the last accepted
// stream and no new streams; each connection closes when its streams are
// done. When ctx ends first, the remaining connections are closed. Shutdown
// returns once every ServeConn call returned (so every Handler too), with
// ctx's error if it had to force the close.
func (srv *Server) Shutdown(ctx context.Context) error {
	srv.mu.Lock()
	srv.shutdown = true
	conns := srv.connsLocked()
	srv.mu.Unlock()
	for _, c := range conns {
		c.goAway()
	}
	done := make(chan struct{})
	go func() { // owned by Shutdown, which waits for done below
		srv.serving.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	srv.mu.Lock()
	conns = srv.connsLocked()
	srv.mu.Unlock()
	for _, c := range conns {
		c.fail(ErrServerClosed)
	}
	<-done
	return ctx.Err()
}

// Abort ends the connection serving nc at once, as ztunnel ends one whose peer's certificate a
// reloaded revocation list revokes: GOAWAY(NO_ERROR) with the last stream it accepted, then the
// close, without waiting for its streams, which fail with err. It reports whether srv serves nc
// (a connection not yet given to Serve, or already ended, is not found).
func (srv *Server) Abort(nc net.Conn, err error) bool {
	srv.mu.Lock()
	var found *conn
	for c := range srv.conns {
		if c.nc == nc {
			found = c
			break
		}
	}
	srv.mu.Unlock()
	if found == nil {
		return false
	}
	found.abort(err)
	return true
}

func (srv *Server) connsLocked() []*conn {
	out := make([]*conn, 0, len(srv.conns))
	for c := range srv.conns {
		out = append(out, c)
	}
	return out
}
