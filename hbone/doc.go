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
//     (stream limit per connection, one dial in flight per key, idle release);
//     new streams stay off connections moving bulk DATA and go to the calm
//     connection with the fewest streams.
//   - Server: serves CONNECT streams of accepted connections and hands each
//     to a Handler in its own goroutine.
//   - Stream: a net.Conn over one CONNECT stream, with CloseWrite for
//     half-close (END_STREAM).
//
// # Connection internals
//
// Every connection (client or server) has a read loop, a control writer
// and a timer; the connection owns them and waits for them when it ends.
// None of them holds a goroutine while the connection is idle:
//
//   - the read loop (ClientConn: started by NewClientConn; Server: begun on
//     the goroutine that called Serve or ServeConn) reads frames, copies
//     DATA payloads straight from its bufio.Reader into the buffer of a Read
//     waiting on the stream (or, when none waits or bytes are already
//     buffered, into the stream's receive buffer) and never writes to the
//     socket itself. Over a connection that can wait for input with a time
//     limit (tls/record's Conn on a socket), the loop parks once the peer
//     has been silent for 100 ms between frames: its socket goes to
//     netutil's epoll loop (netutil.ReadPark) and its goroutine ends, and a
//     new one runs the loop when the socket becomes readable. A connection
//     that fails while its loop is parked takes the loop back and runs it to
//     its end. Serve returns once the loop parks or the connection ends;
//     ServeConn waits for the end;
//   - the control writer writes frames queued without blocking by the read
//     loop and by stream readers (SETTINGS, PING, WINDOW_UPDATE, RST_STREAM,
//     GOAWAY). The first frame queued while none runs starts it on an
//     internal/workers goroutine, and it ends when the queue is empty;
//   - a keepalive timer (no goroutine of its own while it waits) queues
//     PINGs and drops a silent peer: a client closes the connection, a
//     server sends GOAWAY(NO_ERROR) first, as ztunnel's does (Server.Abort
//     ends a connection the same way). The peer's PINGs and their answers
//     wake a parked read loop, which parks again after them.
//
// Application goroutines (Stream.Write, Connect, Respond) write DATA and
// HEADERS frames themselves under the connection's write lock, into a
// bufio.Writer that is flushed when the last waiting writer leaves, so frames
// queued together share one TLS record and one syscall. When the socket under
// the *tls.Conn is a WriteBuffer (the proxy builds it so), crypto/tls's
// records (one per 16 KiB) gather there too and are flushed right after the
// bufio.Writer: a 64 KiB DATA frame leaves in one write(2) instead of five.
// A connection that buffers its own reads and writes (tls/record's Conn,
// which the proxy uses for TLS 1.3) replaces both bufio buffers: frames are
// written into its record buffer and sealed in place at the flush, and the
// read loop parses frames in its decrypted buffer, from which a relay parked
// on a stream (NotifyReadableWith) writes DATA payloads straight to its
// socket. The write lock is
// handed over in FIFO order and held for one DATA frame at a time, and the
// socket keeps at most 128 KiB unsent (TCP_NOTSENT_LOWAT), so a small
// stream's frame waits behind at most one bulk frame plus that much. A writer
// that hands the lock to a waiting one yields, so the new holder runs at once
// instead of after the releaser's next read.
//
// A stream tells a bulk writer how much one Write may carry for its DATA
// frame, sealed into records and flushed alone, to leave the socket as one
// TCP packet (Stream.WriteSizeHint, from the socket's MSS and the record
// layer's overhead; packet.go). netutil's relay reads its TCP source in pieces
// of that size, so a download is not sent as a full packet and a short one
// per read.
//
// # Defences
//
// Port 15008 is reachable by any peer on the network, so no small input may
// cost the proxy much more than its size, one connection's abuse must not
// touch the others, and every refusal is a GOAWAY or RST_STREAM with a
// clear code. The limits, all per connection and on both the client and
// the server side unless noted:
//
//   - Concurrent streams (server): Config.MaxConcurrentStreams (200, as
//     ztunnel). A stream beyond it gets RST_STREAM(REFUSED_STREAM). Handler
//     goroutines count too: a stream the peer reset while its Handler still
//     runs (a dial in progress) keeps its slot until the Handler returns, so
//     HEADERS+RST_STREAM bursts cannot pile up goroutines.
//   - Rapid reset (server, CVE-2023-44487): streams the peer resets before
//     we answered them are counted over a fixed 10 s window (calmWindow);
//     more than max(100, 2*MaxConcurrentStreams) ends the connection with
//     GOAWAY(ENHANCE_YOUR_CALM). Resets after the answer are ordinary
//     cancellations and are not counted.
//   - Zero-progress frames: at most 1000 per 10 s window (maxIdleFrames) of
//     empty DATA without END_STREAM (padding-only included), PING, SETTINGS
//     (ACKs included), PRIORITY, unknown or extension frame types (skipped
//     without being buffered), RST_STREAM on closed streams, and streams we
//     refuse or reset because of the peer (each costs us an answer). Then
//     GOAWAY(ENHANCE_YOUR_CALM). Legitimate peers send a handful of these
//     per window (a keepalive PING every 10 s).
//   - Header blocks: the encoded block (HEADERS plus CONTINUATION fragments,
//     each decoded in place as it arrives: headers.go) may not exceed
//     Config.MaxHeaderListSize (64 KiB, as ztunnel; a sensible encoder
//     never makes a block larger
//     than the list it carries, whose size counts 32 bytes per field on top
//     of names and values) nor span more than 16 frames
//     (maxHeaderFrames; a 64 KiB block needs 5 frames of the smallest size).
//     Either is GOAWAY(ENHANCE_YOUR_CALM): the HPACK state cannot be kept
//     in sync without decoding the block, so the connection must go. A HEADERS
//     or CONTINUATION frame larger than the limit is refused from its frame
//     header, before its payload is read. A small block that decodes to
//     more than MaxHeaderListSize (indexed fields repeated) is answered 431
//     on its stream. So a CONTINUATION flood costs at most the HPACK
//     decoder's buffer of one unfinished field, bounded by the same 64 KiB.
//   - Malformed messages (RFC 9113 8.2, 8.3: invalid names or values,
//     pseudo-headers misplaced, unknown or repeated, connection-specific
//     fields in a request) reset their stream with PROTOCOL_ERROR; the
//     rest of the block is still decoded to keep the HPACK table in step.
//   - Control frames: SETTINGS, PING, RST_STREAM, GOAWAY, PRIORITY and
//     PUSH_PROMISE larger than 16 KiB (maxCtrlFrameLen) are GOAWAY
//     (FRAME_SIZE_ERROR) from their frame header, so no MaxFrameSize (1 MiB)
//     read buffer is ever kept for them. A SETTINGS frame repeating
//     INITIAL_WINDOW_SIZE is applied to the open streams once, not per entry.
//   - Control queue: at most 4096 queued control frames (maxCtrlQueue,
//     about 80 KiB); a peer that makes us answer faster than it reads loses
//     the connection.
//   - A peer that stops reading: a writer stuck on the socket for
//     Config.PingTimeout (20 s) closes the connection (ErrWriteStalled), even
//     if the peer keeps sending frames. A silent peer is dropped after
//     PingTimeout too (ErrPingTimeout).
//   - A peer that never opens its flow-control window: Stream.Write never
//     buffers, it blocks at the window (and honours its write deadline)
//     without holding the connection's write lock, so other streams flow.
//     Streams waiting for the connection window are listed once, however
//     many WINDOW_UPDATEs the peer sends.
//   - Peer SETTINGS: whatever SETTINGS_MAX_FRAME_SIZE (up to 16 MiB) or
//     INITIAL_WINDOW_SIZE the peer announces, we write DATA frames of at most
//     64 KiB (maxDataFrame) straight from the caller's buffer; nothing is
//     sized by the peer's numbers.
//   - Flow control: DATA beyond a stream or connection window is a
//     FLOW_CONTROL_ERROR; the receive buffer of a stream is bounded by its
//     window (Config.StreamWindow, 4 MiB).
package hbone
