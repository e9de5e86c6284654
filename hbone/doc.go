// Package hbone implements HBONE, Istio's tunnel protocol: HTTP/2 CONNECT
// streams carried over an already-established (normally mutual-TLS)
// connection.
//
// The package is its own small HTTP/2 engine built on the frame codec of
// golang.org/x/net/http2 (Framer) and its HPACK implementation. It knows
// sockets and bytes only: it never looks at workloads, policies or
// certificates. Callers hand it handshaken net.Conns.
//
// The pieces are:
//
//   - ClientConn: one client HTTP/2 connection; Connect opens a CONNECT
//     stream and returns it as a *Stream once the peer answered 200.
//   - Pool: client connections keyed by Key with ztunnel's pool semantics
//     (stream limit per connection, one dial in flight per key, idle release).
//   - Server: serves CONNECT streams of accepted connections and hands each
//     to a Handler in its own goroutine.
//   - Stream: a net.Conn over one CONNECT stream, with CloseWrite for
//     half-close (END_STREAM).
//
// # Connection internals
//
// Every connection (client or server) has exactly three goroutines, all
// owned by the connection and waited for when it ends:
//
//   - the read loop (ClientConn: started by NewClientConn; Server: the
//     goroutine that called ServeConn) reads frames, copies DATA payloads
//     straight from its bufio.Reader into the stream's receive buffer and
//     never writes to the socket itself;
//   - the control writer writes frames queued without blocking by the read
//     loop and by stream readers (SETTINGS, PING, WINDOW_UPDATE, RST_STREAM,
//     GOAWAY);
//   - the keepalive goroutine sends PINGs and drops a silent peer.
//
// Application goroutines (Stream.Write, Connect, Respond) write DATA and
// HEADERS frames themselves under the connection's write lock, into a
// bufio.Writer that is flushed when the last waiting writer leaves, so frames
// queued together share one TLS record and one syscall.
package hbone
