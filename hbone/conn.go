package hbone

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/ztunnel-go/ztunnel/internal/workers"
	"github.com/ztunnel-go/ztunnel/netutil"
)

// Sizes of the per-connection buffers and socket tuning; see "HBONE engine"
// in benchmarks/README.md for the measurements behind them.
const (
	// readBufSize: crypto/tls returns at most one record (16 KiB) per Read,
	// so a larger bufio.Reader never fills further.
	readBufSize = 16 << 10
	// writeBufSize: one TLS record. A 64 KiB DATA frame then costs a copy
	// of its first record (behind the frame header); the rest goes from the
	// caller's buffer straight to crypto/tls.
	writeBufSize = 16 << 10
	// notSentLowat is the TCP_NOTSENT_LOWAT of the connection's socket:
	// the most unsent bytes the kernel holds, so a small stream's frame
	// waits behind at most this much of a bulk stream's.
	notSentLowat = 128 << 10
	// maxDataFrame caps the DATA frames we write, whatever the peer allows,
	// so one stream cannot hold the write lock for long.
	maxDataFrame = 64 << 10
	// maxCtrlQueue bounds queued control frames; a peer that makes us queue
	// more (e.g. a PING flood while not reading) loses the connection.
	maxCtrlQueue = 4096
	// goAwayGrace is how long a connection that hit a protocol error, or a
	// server connection ended by abort, waits for its GOAWAY to be written
	// before closing the socket.
	goAwayGrace = time.Second
	// drainAckWait is how long a draining server connection waits for the
	// answer to the PING after its first GOAWAY before it sends the final
	// one anyway (goAway).
	drainAckWait = time.Second
)

// drainPing is the payload of the PING that follows the first GOAWAY of a
// drain (goAway); its answer leads to the final GOAWAY. Keepalive PINGs carry
// a counter, which does not reach it.
var drainPing = [8]byte{'z', 't', 'd', 'r', 'a', 'i', 'n', 0}

// Limits on what a peer may make us do for nothing (see "Defences" in
// doc.go). Counters are per connection over a fixed window of calmWindow;
// a peer over a budget gets GOAWAY(ENHANCE_YOUR_CALM) and the connection
// closes.
const (
	calmWindow = 10 * time.Second
	// maxIdleFrames is the budget of frames that make no progress: empty
	// DATA without END_STREAM, PING, SETTINGS, PRIORITY, unknown frame
	// types, RST_STREAM on streams already closed, streams we had to refuse
	// or reset because of the peer.
	maxIdleFrames = 1000
	// minPrematureResets is the floor of the budget of streams the peer
	// resets before we answered them (rapid reset, CVE-2023-44487); the
	// budget is max(minPrematureResets, 2*MaxConcurrentStreams).
	minPrematureResets = 100
	// maxHeaderFrames caps the frames of one header block (HEADERS plus
	// CONTINUATIONs): a legitimate block of up to 64 KiB needs at most 5
	// frames of the smallest size; more is a CONTINUATION flood.
	maxHeaderFrames = 16
	// maxCtrlFrameLen caps the payload of SETTINGS, GOAWAY and the other
	// fixed-size control frames we read, whatever MaxFrameSize allows, so a
	// peer cannot make the frame reader keep a MaxFrameSize buffer.
	maxCtrlFrameLen = 16 << 10
	// headerPadSlack is what a HEADERS frame may carry beside its block
	// fragment: the pad length byte, up to 255 bytes of padding and the
	// 5-byte priority fields.
	headerPadSlack = 1 + 255 + 5
)

// readParkAfter is how long the read loop waits for the next frame on its
// own goroutine before it gives the goroutine up (see parkRead). Shorter
// parks sooner, freeing the stack of an idle pooled connection's read loop
// (8-16 KiB at each end); longer saves the park and the resume (a system call
// and a goroutine hand-off before the next frame) on connections that pause
// briefly. Connections that never pause that long never park. A variable for
// the tests.
var readParkAfter = 100 * time.Millisecond

// errParked ends serveFrames when the read loop parked: the connection lives
// on, and readTask runs the loop again once the socket is readable.
var errParked = errors.New("hbone: read loop parked")

// readWaiter is a connection whose reader can wait for input with a time
// limit and leave the waiting to an epoll set (tls/record.Conn). The read
// loop of a connection built on one parks while the peer is silent.
type readWaiter interface {
	WaitReadable(idle time.Duration) bool
	Socket() syscall.RawConn
}

// frameReader is what the read loop reads frames from: a bufio.Reader
// around the connection, or the connection itself when it buffers its own
// reads (selfBuffered).
type frameReader interface {
	io.Reader
	io.ByteReader
	Buffered() int
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
}

// frameWriter is what frames are written to: a bufio.Writer around the
// connection, or the connection itself when it buffers its own writes.
type frameWriter interface {
	io.Writer
	Flush() error
}

// selfBuffered is a connection with its own read and write buffers, such
// as tls/record.Conn, a TLS record layer that decrypts into its read buffer
// and encrypts in its write buffer: the engine then adds no buffer of its
// own, saving a copy each way. BufferWrites makes its writes wait for
// Flush.
type selfBuffered interface {
	net.Conn
	frameReader
	BufferWrites()
	Flush() error
}

var clientPreface = []byte(http2.ClientPreface)

// ctrlKind is the type of a queued control frame.
type ctrlKind uint8

const (
	ctrlPreface      ctrlKind = iota // client connection preface (not a frame)
	ctrlSettings                     // our SETTINGS, built from Config
	ctrlSettingsAck                  // SETTINGS with ACK
	ctrlPing                         // PING
	ctrlPingAck                      // PING with ACK, echoing data
	ctrlWindowUpdate                 // WINDOW_UPDATE(stream, val)
	ctrlRSTStream                    // RST_STREAM(stream, code val)
	ctrlGoAway                       // GOAWAY(last stream id in stream, code val)
	ctrlClose                        // not a frame: flush what precedes, then close
)

// ctrlFrame is a control frame queued for the control writer. Queueing
// never blocks, so the read loop can answer the peer without ever waiting on
// the socket.
type ctrlFrame struct {
	kind   ctrlKind
	stream uint32
	val    uint32
	data   [8]byte
}

// conn is one HTTP/2 connection, client or server side. ClientConn wraps it;
// Server drives it from ServeConn.
type conn struct {
	// Immutable after newConn.
	nc     net.Conn
	cfg    Config
	log    *slog.Logger
	server bool
	srv    *Server // server side: the owner, for its Handler
	// writeHint is what streams report from WriteSizeHint (packet.go); 0: none.
	writeHint int
	// ctx is what streams report from Context: the ServeConn context on the server side (so a
	// Handler can read what its caller knows of the connection, e.g. the verified peer), and
	// context.Background on the client side. Set before the read loop starts.
	ctx   context.Context
	epoch time.Time
	done  chan struct{} // closed by fail
	// streamDone, if not nil, runs once for each client stream of the connection when
	// the stream leaves it: the pool's release of the stream's reservation. Set by the
	// pool before it hands out the connection; one hook a connection rather than one
	// a stream (8 bytes of every Stream).
	streamDone func()

	// Owned by the read loop.
	br frameReader
	// waiter is br when the read loop may park (a readWaiter over a socket
	// that epoll takes), else nil; sock is its socket. rpark is where the
	// loop parks, readTask (c.readLoop, bound once) what resumes it.
	waiter      readWaiter
	sock        syscall.RawConn
	rpark       netutil.ReadPark
	readTask    func()
	rfr         *http2.Framer // read side only; returns raw HEADERS/CONTINUATION
	scratch     [8]byte
	sawSettings bool

	// Header block decoding (headers.go), owned by the read loop: the
	// block in progress and the connection's HPACK decoder, whose emit
	// function is onField.
	hdr      hdrBlock
	hdec     *hpack.Decoder
	hchunk   [128]byte // fragment bytes on their way to hdec (decodeFragment)
	maxBlock int       // largest encoded header block accepted (MaxHeaderListSize)

	// Abuse accounting (see the limits above), owned by the read loop.
	calmStart  int64 // start of the current window, as c.now()
	idleFrames int   // zero-progress frames in the window
	prematures int   // streams reset by the peer before we answered, in the window
	maxResets  int   // budget of prematures per window

	// Write side. wmu, the write lock, guards every field in this block;
	// take it with lockWrite and release it with unlockWrite. It is a
	// channel of capacity 1 rather than a sync.Mutex because a channel
	// hands off in FIFO order: a bulk writer that releases it and asks again
	// at once queues behind the small writers already waiting, instead of
	// barging ahead of them for up to a millisecond (sync.Mutex's
	// starvation threshold). Each turn writes at most one DATA frame.
	wmu          chan struct{}
	writers      atomic.Int32 // goroutines holding or waiting for wmu; the last one out flushes
	bw           frameWriter
	flusher      writeFlusher  // under nc (a WriteBuffer), flushed after bw; nil: none
	wfr          *http2.Framer // write side only
	henc         *hpack.Encoder
	hbuf         bytes.Buffer
	dataHdr      [9]byte
	encTableSize uint32
	named        uint8       // noIndexBit names already sent once, indexed: later ones are never-indexed literals
	ctrlSpare    []ctrlFrame // the control queue's second buffer, swapped with ctrlQ
	closeReq     bool        // a ctrlClose was written: close after the flush

	// Control queue, guarded by cmu. The control writer (flushCtrl) is not a
	// goroutine of its own: a worker runs it while frames wait, so an idle
	// connection holds no stack for it. ctrlRun is set while one is
	// scheduled or running, ctrlOpen from start until fail; a worker is
	// counted in wg before ctrlOpen can be cleared, so wg.Wait (which runs
	// after fail) covers it.
	cmu      sync.Mutex
	ctrlQ    []ctrlFrame
	ctrlN    atomic.Int32 // len(ctrlQ), read without cmu as a hint
	ctrlRun  bool
	ctrlOpen bool
	ctrlTask func() // c.flushCtrl, bound once so that starting it allocates nothing

	// Receive-side connection flow control.
	recvWindow  atomic.Int64 // bytes the peer may still send us on the connection
	recvUnacked atomic.Int64 // bytes consumed but not yet returned by WINDOW_UPDATE

	lastRead atomic.Int64 // time since epoch of the last frame read, in ns
	// recvLoad counts received DATA (owned by the read loop), sendLoad sent DATA (owned by the
	// holder of wmu); the pool reads both through conn.busy.
	recvLoad, sendLoad loadMeter
	// wlockedAt is when the current holder of wmu took it (time since
	// epoch in ns), 0 when wmu is free. The keepalive tick closes a
	// connection whose writer has been stuck on the socket for PingTimeout
	// (a peer that stopped reading).
	wlockedAt atomic.Int64

	// Keepalive runs on a timer, not a goroutine of its own: kaTimer runs
	// keepaliveTick, which re-arms it as its last step, so ticks never
	// overlap and kaLastPing and kaSeq belong to the tick. fail stops it.
	kaTimer    *time.Timer
	kaLastPing int64  // when the last PING was queued, time since epoch in ns
	kaSeq      uint64 // payload of the last PING

	// answers maps the id of a client stream whose Request asked for its
	// answer's fields (Request.Response) to where they go, until they are
	// stored or its Connect returns; guarded by mu, nil until a request asks.
	// wantAnswers counts the entries, so the read loop looks only then.
	answers     map[uint32]*Header
	wantAnswers atomic.Int32

	// Guarded by mu. Lock order: wmu before mu; never take wmu (or any
	// caller's lock) while holding mu.
	mu             sync.Mutex
	streams        streamSet
	nextID         uint32 // client: id of the next stream we open
	maxPeerID      uint32 // server: highest stream id the peer opened
	sendWindow     int64  // connection-level send window
	peerInitWindow int64
	peerMaxFrame   uint32
	peerMaxStreams uint32
	peerTableSize  uint32
	connWaiters    []*Stream // streams blocked on the connection send window
	handlersLive   uint32    // server: Handler goroutines running (<= MaxConcurrentStreams)
	goingAway      bool      // server: we sent the final GOAWAY; client: we received one
	drainAnnounced bool      // server: goAway sent GOAWAY(2^31-1), the final one waits (finishGoAway)
	closing        bool      // ctrlClose queued
	closeErr       error     // reason given to closeGraceful
	closed         bool      // fail ran
	endHook        func()    // run by fail, once, after it released every lock (onEnd)
	err            error     // why the connection ended
	streamErr      error     // err as seen by streams that were still open

	// Client: streams opened by open with a deadline for their answer, in
	// the order they were opened; an entry leaves when the answer comes, the
	// stream goes, or the deadline passes (answerTick). answerTimer (made by
	// the first such stream) fires at answerAt, the earliest deadline, as
	// c.now(); 0 when it is not armed. Guarded by mu.
	awaiting    []awaitEntry
	answerTimer *time.Timer
	answerAt    int64

	wg       sync.WaitGroup // the control writer while it runs, and (client) the read loop
	handlers sync.WaitGroup // server: Handler goroutines

	// Server side: what ends the connection's service once the read loop
	// ended (see Server.Serve), set before the read loop starts.
	stopCtx func() bool
	served  func(error)
}

func newConn(nc net.Conn, cfg Config, server bool, srv *Server) *conn {
	cfg = cfg.withDefaults()
	limitUnsent(nc, notSentLowat)
	c := &conn{
		nc:             nc,
		writeHint:      writeHint(nc),
		cfg:            cfg,
		log:            cfg.Logger,
		server:         server,
		srv:            srv,
		epoch:          time.Now(),
		ctx:            context.Background(),
		done:           make(chan struct{}),
		wmu:            make(chan struct{}, 1),
		nextID:         1,
		sendWindow:     initialWindow,
		peerInitWindow: initialWindow,
		peerMaxFrame:   minFrameSize,
		peerMaxStreams: ^uint32(0),
		peerTableSize:  4096,
		encTableSize:   4096,
	}
	if sb, ok := nc.(selfBuffered); ok {
		// A record layer that buffers its own reads and writes: frames go
		// straight into its buffers, sealed at the flush.
		sb.BufferWrites()
		c.br, c.bw = sb, sb
		if w, ok := nc.(readWaiter); ok {
			if raw := w.Socket(); raw != nil {
				c.waiter, c.sock = w, raw
			}
		}
	} else {
		c.br = bufio.NewReaderSize(nc, readBufSize)
		c.bw = bufio.NewWriterSize(nc, writeBufSize)
		c.flusher = findFlusher(nc)
	}
	c.ctrlTask = c.flushCtrl
	c.readTask = c.readLoop
	c.rfr = http2.NewFramer(nil, c.br)
	c.rfr.SetMaxReadFrameSize(cfg.MaxFrameSize)
	c.hdec = hpack.NewDecoder(4096, c.onField)
	c.hdec.SetMaxStringLength(int(cfg.MaxHeaderListSize))
	c.maxBlock = int(cfg.MaxHeaderListSize)
	c.maxResets = max(minPrematureResets, 2*int(min(cfg.MaxConcurrentStreams, 1<<20)))
	c.wfr = http2.NewFramer(c.bw, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.recvWindow.Store(int64(cfg.ConnWindow))

	// The first bytes on the wire: (client) preface, SETTINGS, and the
	// WINDOW_UPDATE raising the connection window from its initial 65535.
	if !server {
		c.enqueue(ctrlFrame{kind: ctrlPreface})
	}
	c.enqueue(ctrlFrame{kind: ctrlSettings})
	if inc := cfg.ConnWindow - initialWindow; inc > 0 {
		c.enqueue(ctrlFrame{kind: ctrlWindowUpdate, val: inc})
	}
	return c
}

// start arms the keepalive timer and lets the control writer run (frames
// queued by newConn go out now). The timer comes first: a control write
// that fails at once (a peer that already hung up) ends the connection,
// and fail stops the timer.
func (c *conn) start() {
	c.kaLastPing = c.now()
	// Made unarmed and then armed, so that the tick (on the timer's
	// goroutine) sees kaTimer set: Reset happens before the tick it arms.
	c.kaTimer = time.AfterFunc(time.Duration(math.MaxInt64), c.keepaliveTick)
	c.kaTimer.Reset(min(c.cfg.PingInterval, c.cfg.PingTimeout))
	c.cmu.Lock()
	c.ctrlOpen = true
	run := c.ctrlWorkerLocked()
	c.cmu.Unlock()
	if run {
		workers.Go(c.ctrlTask)
	}
}

func (c *conn) now() int64 { return int64(time.Since(c.epoch)) }

// ---- write side ----

// lockWrite takes the write lock and first writes queued control frames,
// so they keep their order relative to what the caller writes next. The
// caller must call unlockWrite, even when lockWrite fails.
func (c *conn) lockWrite() error {
	c.writers.Add(1)
	c.wmu <- struct{}{}
	c.wlockedAt.Store(max(c.now(), 1))
	if c.closeReq {
		return errConnClosed
	}
	if c.ctrlN.Load() == 0 {
		return nil
	}
	return c.writeCtrlLocked()
}

// unlockWrite releases the write lock, flushing when no other writer waits
// (so frames written back to back share a syscall).
func (c *conn) unlockWrite() error {
	var err error
	if c.writers.Add(-1) == 0 || c.closeReq {
		err = c.bw.Flush()
		if err == nil && c.flusher != nil {
			err = c.flusher.Flush()
		}
	}
	if err == nil && c.closeReq {
		// The close is done before the lock goes: a writer waiting for it would find the
		// connection closing (lockWrite) and fail it with an error of its own first.
		c.mu.Lock()
		reason := c.closeErr
		c.mu.Unlock()
		c.fail(reason)
	}
	c.wlockedAt.Store(0)
	<-c.wmu
	if c.writers.Load() > 0 {
		// Another writer waits, and the release just handed it the lock: the channel gives
		// the slot to its first waiter and readies that goroutine on this P, where it would
		// wait until this one blocks (a relay first reads its next chunk). Meanwhile the
		// lock is held by a goroutine that is not running, and the connection's writes
		// stand still. Yielding runs the new holder at once; this goroutine goes on from
		// the global run queue, on another P when one is free (benchmarks/README.md,
		// "Eight streams on one connection").
		runtime.Gosched()
	}
	if err != nil {
		c.fail(fmt.Errorf("hbone: write: %w", err))
		return c.connErr()
	}
	return nil
}

// writeCtrlLocked writes every queued control frame. wmu must be held.
func (c *conn) writeCtrlLocked() error {
	c.cmu.Lock()
	q := c.ctrlQ
	c.ctrlQ = c.ctrlSpare[:0]
	c.ctrlN.Store(0)
	c.cmu.Unlock()
	var err error
	for i := range q {
		if c.closeReq {
			break
		}
		f := &q[i]
		switch f.kind {
		case ctrlPreface:
			_, err = c.bw.Write(clientPreface)
		case ctrlSettings:
			err = c.writeSettingsLocked()
		case ctrlSettingsAck:
			err = c.wfr.WriteSettingsAck()
		case ctrlPing:
			err = c.wfr.WritePing(false, f.data)
		case ctrlPingAck:
			err = c.wfr.WritePing(true, f.data)
		case ctrlWindowUpdate:
			err = c.wfr.WriteWindowUpdate(f.stream, f.val)
		case ctrlRSTStream:
			err = c.wfr.WriteRSTStream(f.stream, http2.ErrCode(f.val))
		case ctrlGoAway:
			err = c.wfr.WriteGoAway(f.stream, http2.ErrCode(f.val), nil)
		case ctrlClose:
			c.closeReq = true
		}
		if err != nil {
			break
		}
	}
	clear(q)
	c.ctrlSpare = q[:0]
	return err
}

func (c *conn) writeSettingsLocked() error {
	s := []http2.Setting{
		{ID: http2.SettingInitialWindowSize, Val: c.cfg.StreamWindow},
		{ID: http2.SettingMaxFrameSize, Val: c.cfg.MaxFrameSize},
		{ID: http2.SettingMaxHeaderListSize, Val: c.cfg.MaxHeaderListSize},
	}
	if c.server {
		s = append(s, http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.cfg.MaxConcurrentStreams})
	} else {
		s = append(s, http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	}
	return c.wfr.WriteSettings(s...)
}

// enqueue queues a control frame for the control writer. It never blocks.
// An overflowing queue means the peer makes us answer faster than it reads:
// the connection is closed.
func (c *conn) enqueue(f ctrlFrame) bool {
	c.cmu.Lock()
	if len(c.ctrlQ) >= maxCtrlQueue {
		c.cmu.Unlock()
		c.fail(ProtocolError{Code: http2.ErrCodeEnhanceYourCalm, Reason: "control frame queue overflow"})
		return false
	}
	c.ctrlQ = append(c.ctrlQ, f)
	c.ctrlN.Store(int32(len(c.ctrlQ)))
	run := c.ctrlWorkerLocked()
	c.cmu.Unlock()
	if run {
		workers.Go(c.ctrlTask)
	}
	return true
}

// ctrlWorkerLocked reports whether the caller must start the control writer
// (workers.Go(c.ctrlTask)): frames wait, the connection is started and not
// failed, and no writer is scheduled. It counts the writer in wg. cmu must be
// held.
func (c *conn) ctrlWorkerLocked() bool {
	if c.ctrlRun || !c.ctrlOpen || len(c.ctrlQ) == 0 {
		return false
	}
	c.ctrlRun = true
	c.wg.Add(1)
	return true
}

// flushCtrl is the control writer: it takes the write lock, which writes the
// queued control frames first (lockWrite), until the queue stays empty. A
// writer of DATA that takes the lock first writes them as well, and the turn
// here then finds nothing to do.
func (c *conn) flushCtrl() {
	defer c.wg.Done()
	for {
		err := c.lockWrite()
		if uerr := c.unlockWrite(); err == nil {
			err = uerr
		}
		if err != nil {
			c.fail(err)
			return
		}
		c.cmu.Lock()
		more := c.ctrlOpen && len(c.ctrlQ) > 0
		c.ctrlRun = more
		c.cmu.Unlock()
		if !more {
			return
		}
	}
}

// writeData writes one DATA frame for s. The caller holds streamWBusy and has
// reserved len(p) bytes of send window. The 9-byte header is written by
// hand so the payload goes from p to the bufio.Writer without a detour
// through the Framer's buffer.
func (c *conn) writeData(s *Stream, p []byte, end bool) error {
	err := c.lockWrite()
	skipped := false
	if err == nil {
		if s.has(streamRstSent) {
			// The stream was reset: no DATA may follow the RST_STREAM.
			skipped = true
		} else {
			err = c.writeDataLocked(s.id, p, end)
		}
	}
	uerr := c.unlockWrite()
	switch {
	case skipped:
		return s.termErr()
	case err != nil:
		c.fail(fmt.Errorf("hbone: write: %w", err))
		return c.connErr()
	case uerr != nil:
		return c.connErr()
	}
	return nil
}

// writeDataLocked writes one DATA frame of p on stream id to the write
// buffer. wmu must be held, and the caller has reserved len(p) bytes of send
// window.
func (c *conn) writeDataLocked(id uint32, p []byte, end bool) error {
	h := &c.dataHdr
	n := len(p)
	c.sendLoad.add(c.wlockedAt.Load(), n) // wlockedAt: set by lockWrite, a clock reading of this turn
	h[0], h[1], h[2] = byte(n>>16), byte(n>>8), byte(n)
	h[3] = byte(http2.FrameData)
	h[4] = 0
	if end {
		h[4] = byte(http2.FlagDataEndStream)
	}
	binary.BigEndian.PutUint32(h[5:], id)
	_, err := c.bw.Write(h[:])
	if err == nil && n > 0 {
		_, err = c.bw.Write(p)
	}
	return err
}

// noIndexBit returns a bit for a header name whose values differ on every stream (Forwarded
// carries the client's address and port, traceparent a new trace), 0 for any other name.
// Indexed, each value would take a place in both ends' HPACK dynamic tables (with the map
// entries that index them) only to evict entries that do repeat, such as the :authority of a
// busy destination, and keep its value alive there. So they go out as never-indexed literals,
// all but the first of each name on a connection (conn.named): that one is indexed, so that the
// later literals name it by its table index, and the peer's decoder does not allocate the name
// again for every stream.
func noIndexBit(name string) uint8 {
	switch name {
	case "forwarded":
		return 1
	case "traceparent":
		return 2
	}
	return 0
}

// writeHeadersLocked encodes fields (name, value pairs) and writes them as
// HEADERS plus CONTINUATION frames. wmu must be held.
func (c *conn) writeHeadersLocked(id uint32, end bool, fields ...string) error {
	c.mu.Lock()
	maxFrag := int(c.peerMaxFrame)
	tableSize := c.peerTableSize
	c.mu.Unlock()
	if tableSize != c.encTableSize {
		c.henc.SetMaxDynamicTableSizeLimit(tableSize)
		c.encTableSize = tableSize
	}
	c.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		f := hpack.HeaderField{Name: fields[i], Value: fields[i+1]}
		if bit := noIndexBit(f.Name); bit != 0 {
			f.Sensitive = c.named&bit != 0
			c.named |= bit
		}
		if err := c.henc.WriteField(f); err != nil {
			return fmt.Errorf("hbone: encode headers: %w", err)
		}
	}
	block := c.hbuf.Bytes()
	first := true
	for first || len(block) > 0 {
		frag := block[:min(len(block), maxFrag)]
		block = block[len(frag):]
		var err error
		if first {
			err = c.wfr.WriteHeaders(http2.HeadersFrameParam{
				StreamID: id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0,
			})
			first = false
		} else {
			err = c.wfr.WriteContinuation(id, len(block) == 0, frag)
		}
		if err != nil {
			return fmt.Errorf("hbone: write headers: %w", err)
		}
	}
	return nil
}

// ---- keepalive ----

// logPingFailure logs the keepalive's closing of the connection for cause, with how long
// (d) the peer was silent or the write stuck, in ztunnel's words: a warning on the client
// side, where the connection's streams end without an error of their own, and a debug line
// on the server side, where a silent peer is most often a pod whose network namespace went
// away before it could send GOAWAY.
func (c *conn) logPingFailure(cause error, key string, d time.Duration) {
	if c.server {
		c.log.Debug("HBONE ping timeout/error, peer may have shutdown", "remote", c.nc.RemoteAddr(),
			"cause", cause, key, d)
		return
	}
	c.log.Warn("HBONE ping timeout/error", "remote", c.nc.RemoteAddr(), "cause", cause, key, d)
}

// keepaliveTick runs on the keepalive timer: it queues a PING every
// PingInterval and closes the connection when nothing at all was received
// for PingTimeout, or when a writer has been stuck on the socket for
// PingTimeout (the peer stopped reading).
func (c *conn) keepaliveTick() {
	select {
	case <-c.done:
		return
	default:
	}
	interval, timeout := c.cfg.PingInterval, c.cfg.PingTimeout
	now := c.now()
	silent := time.Duration(now - c.lastRead.Load())
	if silent >= timeout {
		c.logPingFailure(ErrPingTimeout, "silent", silent)
		if c.server {
			// As ztunnel's server: GOAWAY before the close, for a peer that is still there.
			c.abort(ErrPingTimeout)
		} else {
			c.fail(ErrPingTimeout)
		}
		return
	}
	if at := c.wlockedAt.Load(); at != 0 && time.Duration(now-at) >= timeout {
		c.logPingFailure(ErrWriteStalled, "stuck", time.Duration(now-at))
		c.fail(ErrWriteStalled)
		return
	}
	if time.Duration(now-c.kaLastPing) >= interval {
		c.kaSeq++
		f := ctrlFrame{kind: ctrlPing}
		binary.BigEndian.PutUint64(f.data[:], c.kaSeq)
		c.enqueue(f)
		c.kaLastPing = now
	}
	next := min(time.Duration(c.kaLastPing-now)+interval, timeout-silent)
	c.kaTimer.Reset(max(next, time.Millisecond))
}

// ---- teardown ----

// fail ends the connection: it records err, closes the socket and fails
// every open stream. It is idempotent (the first reason wins) and may be
// called from any goroutine holding no lock of this package except wmu.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.err = err
	c.streamErr = &ConnError{Err: err}
	streams := c.streams.takeAll()
	c.connWaiters = nil
	c.awaiting = nil
	if c.answerTimer != nil {
		c.answerTimer.Stop()
	}
	serr := c.streamErr
	hook := c.endHook
	c.mu.Unlock()
	c.cmu.Lock()
	c.ctrlOpen = false // no control writer starts from now on
	c.cmu.Unlock()
	close(c.done)
	if c.kaTimer != nil {
		// A tick already past its check of done may re-arm the timer once;
		// the tick that fires then sees done and stops.
		c.kaTimer.Stop()
	}
	c.nc.Close()
	if c.rpark.Cancel() {
		// The read loop was parked: epoll forgets a closed socket, so
		// nothing would resume it. It runs now, finds the socket closed
		// and ends the connection's service.
		workers.Go(c.readTask) // owned by the connection, as its read loop
	}
	if !isBenign(err) {
		c.log.Debug("hbone: connection failed", "remote", c.nc.RemoteAddr(), "err", err)
	}
	for _, s := range streams {
		s.connFailed(serr)
	}
	if hook != nil {
		hook()
	}
}

// onEnd makes f run once the connection has failed: at once on this
// goroutine if it already has, otherwise on the goroutine that fails it,
// after fail released its locks. One hook per connection (the pool's).
func (c *conn) onEnd(f func()) {
	c.mu.Lock()
	if !c.closed {
		c.endHook = f
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	f()
}

// isClosed reports whether fail ran.
func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// closeGraceful closes the connection once every frame queued or written
// before this call has been flushed.
func (c *conn) closeGraceful(reason error) {
	c.mu.Lock()
	if c.closed || c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.closeErr = reason
	c.mu.Unlock()
	c.enqueue(ctrlFrame{kind: ctrlClose})
}

// connErr is the error streams see once the connection failed.
func (c *conn) connErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.streamErr != nil {
		return c.streamErr
	}
	return errConnClosed
}

// isBenign reports whether err is an ordinary end of a connection.
func isBenign(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, ErrServerClosed)
}

// afterReadLoop ends the connection after the read loop returned err. A
// protocol error is reported to the peer with GOAWAY first.
func (c *conn) afterReadLoop(err error) {
	var ce ProtocolError
	if errors.As(err, &ce) {
		c.log.Debug("hbone: protocol error from peer", "remote", c.nc.RemoteAddr(), "err", err)
		c.mu.Lock()
		last := c.maxPeerID
		c.mu.Unlock()
		c.enqueue(ctrlFrame{kind: ctrlGoAway, stream: last, val: uint32(ce.Code)})
		c.closeGraceful(err)
		t := time.NewTimer(goAwayGrace)
		select {
		case <-c.done:
		case <-t.C:
		}
		t.Stop()
	}
	c.fail(err)
}

// removeStream forgets a finished stream and runs its completion hook.
// A draining connection closes when its last stream goes.
func (c *conn) removeStream(s *Stream) {
	c.mu.Lock()
	c.streams.remove(s)
	if len(c.awaiting) > 0 {
		c.dropAwaitingLocked(s)
	}
	drained := c.goingAway && c.streams.len() == 0 && !c.closed
	c.mu.Unlock()
	s.runOnDone()
	if drained {
		c.closeGraceful(errGoAwayDrain)
	}
}

// goAway starts a graceful shutdown of a server connection in two steps, as RFC 9113 (section
// 6.8) advises and ztunnel's HTTP/2 server does: GOAWAY(2^31-1, NO_ERROR) tells the peer to open
// no more streams, and a PING follows it; streams the peer opened before it read the GOAWAY are
// still accepted. The PING's answer, which comes after the peer read the GOAWAY (or drainAckWait
// without one), leads to finishGoAway.
func (c *conn) goAway() {
	c.mu.Lock()
	if c.closed || c.goingAway || c.drainAnnounced {
		c.mu.Unlock()
		return
	}
	c.drainAnnounced = true
	c.mu.Unlock()
	c.enqueue(ctrlFrame{kind: ctrlGoAway, stream: maxStreamID, val: uint32(http2.ErrCodeNo)})
	c.enqueue(ctrlFrame{kind: ctrlPing, data: drainPing})
	time.AfterFunc(drainAckWait, c.finishGoAway) // a no-op once the answer came
}

// finishGoAway is the second step of goAway: the final GOAWAY names the last stream accepted,
// later ones are refused, and the connection closes when its last stream ends. It does nothing
// unless goAway announced the drain, or after it ran once.
func (c *conn) finishGoAway() {
	c.mu.Lock()
	if c.closed || c.goingAway || !c.drainAnnounced {
		c.mu.Unlock()
		return
	}
	c.goingAway = true
	last := c.maxPeerID
	empty := c.streams.len() == 0
	c.mu.Unlock()
	c.enqueue(ctrlFrame{kind: ctrlGoAway, stream: last, val: uint32(http2.ErrCodeNo)})
	if empty {
		c.closeGraceful(errGoAwayDrain)
	}
}

// abort ends a server connection without waiting for its streams, as ztunnel's HTTP/2 server
// does (h2's abrupt_shutdown) when its keepalive gives up on the peer or the peer's certificate
// is revoked: GOAWAY(NO_ERROR) naming the last stream it accepted, then the close (close_notify
// over TLS); the open streams fail with err. The frames have goAwayGrace to go out (a peer that
// stopped reading cannot hold the connection up); then the connection is failed, written or not.
func (c *conn) abort(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.goingAway = true // no stream above last from now on
	last := c.maxPeerID
	c.mu.Unlock()
	c.enqueue(ctrlFrame{kind: ctrlGoAway, stream: last, val: uint32(http2.ErrCodeNo)})
	c.closeGraceful(err)
	time.AfterFunc(goAwayGrace, func() { c.fail(err) }) // a no-op once the close is done
}

// creditConn returns n consumed bytes to the connection receive window,
// sending WINDOW_UPDATE once half the window is pending.
func (c *conn) creditConn(n int64) {
	if n <= 0 {
		return
	}
	c.recvUnacked.Add(n)
	thresh := int64(c.cfg.ConnWindow) / 2
	for {
		u := c.recvUnacked.Load()
		if u < thresh {
			return
		}
		if c.recvUnacked.CompareAndSwap(u, 0) {
			c.recvWindow.Add(u)
			c.enqueue(ctrlFrame{kind: ctrlWindowUpdate, val: uint32(u)})
			return
		}
	}
}

// ---- answer deadlines of opened streams (client) ----

// awaitEntry is a stream opened by open and the deadline of its answer, as
// c.now().
type awaitEntry struct {
	s  *Stream
	by int64
}

// awaitAnswer gives the opened stream s until dl for its answer. The request is already out,
// so the answer may have come before the entry is added, when answered found nothing to drop:
// the stream's state is looked at once more after, and an answered or ended stream leaves
// the list at once rather than at its deadline.
func (c *conn) awaitAnswer(s *Stream, dl time.Time) {
	if !c.addAwaiting(s, c.now()+int64(time.Until(dl))) {
		return
	}
	s.mu.Lock()
	done := s.status != 0 || s.finished
	s.mu.Unlock()
	if done {
		c.answered(s)
	}
}

// addAwaiting adds s's entry with its deadline by and arms the timer; false when the
// connection is closed (the stream failed with it).
func (c *conn) addAwaiting(s *Stream, by int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.awaiting = append(c.awaiting, awaitEntry{s: s, by: by})
	if c.answerAt != 0 && c.answerAt <= by {
		return true // the timer fires first for an earlier deadline
	}
	c.answerAt = by
	d := time.Duration(by - c.now())
	if c.answerTimer == nil {
		c.answerTimer = time.AfterFunc(d, c.answerTick)
	} else {
		c.answerTimer.Reset(d)
	}
	return true
}

// answered removes s from the streams waiting for an answer (it has one).
func (c *conn) answered(s *Stream) {
	c.mu.Lock()
	if len(c.awaiting) > 0 {
		c.dropAwaitingLocked(s)
	}
	c.mu.Unlock()
}

// dropAwaitingLocked removes s's entry, if any. Answers come mostly in the
// order of the requests, so the entry is usually the first. c.mu must be
// held.
func (c *conn) dropAwaitingLocked(s *Stream) {
	for i, e := range c.awaiting {
		if e.s == s {
			c.awaiting = slices.Delete(c.awaiting, i, i+1) // clears the vacated entry
			return
		}
	}
}

// answerTick runs on answerTimer: it resets the streams whose answer is
// late and arms the timer for the next deadline.
func (c *conn) answerTick() {
	c.mu.Lock()
	now := c.now()
	var late []*Stream
	keep, next := c.awaiting[:0], int64(0)
	for _, e := range c.awaiting {
		if e.by <= now {
			late = append(late, e.s)
			continue
		}
		keep = append(keep, e)
		if next == 0 || e.by < next {
			next = e.by
		}
	}
	clear(c.awaiting[len(keep):])
	c.awaiting = keep
	c.answerAt = next
	if next != 0 && !c.closed {
		c.answerTimer.Reset(time.Duration(next - now))
	}
	c.mu.Unlock()
	for _, s := range late {
		s.answerTimedOut()
	}
}
