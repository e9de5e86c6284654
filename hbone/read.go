package hbone

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/net/http2"

	"github.com/ztunnel-go/ztunnel/internal/workers"
)

// readPreface reads and checks the client connection preface (server side).
// The peer gets PingTimeout to send it.
func (c *conn) readPreface() error {
	c.nc.SetReadDeadline(time.Now().Add(c.cfg.PingTimeout))
	var pre [len(http2.ClientPreface)]byte
	_, err := io.ReadFull(c.br, pre[:])
	c.nc.SetReadDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("hbone: read client preface: %w", err)
	}
	if string(pre[:]) != http2.ClientPreface {
		return ProtocolError{Code: http2.ErrCodeProtocol, Reason: "bad client preface"}
	}
	return nil
}

// serveFrames is the read loop: it reads frames until the connection fails
// and dispatches them. It never writes to the socket; answers go through
// the control queue. DATA and WINDOW_UPDATE payloads are parsed here
// directly (no Framer allocation or copy), payloads of unknown frame types
// are skipped unread; other frames go through the Framer. Header blocks
// are gathered here (bounded in bytes and frames) and decoded once
// complete.
func (c *conn) serveFrames() error {
	for {
		if c.waiter != nil && !c.waiter.WaitReadable(readParkAfter) && c.parkRead() {
			return errParked
		}
		fh, err := c.rfr.ReadFrameHeader()
		if err != nil {
			return classifyReadErr(err)
		}
		now := c.now()
		c.lastRead.Store(now)
		if !c.sawSettings && (fh.Type != http2.FrameSettings || fh.Flags.Has(http2.FlagSettingsAck)) {
			return ProtocolError{Code: http2.ErrCodeProtocol, Reason: "first frame is not SETTINGS"}
		}
		if now-c.calmStart >= int64(calmWindow) {
			c.calmStart, c.idleFrames, c.prematures = now, 0, 0
		}
		switch fh.Type {
		case http2.FrameData:
			c.recvLoad.add(now, int(fh.Length))
			err = c.onData(fh)
		case http2.FrameWindowUpdate:
			err = c.onWindowUpdate(fh)
		case http2.FrameHeaders, http2.FrameContinuation:
			if int(fh.Length) > c.maxBlock+headerPadSlack {
				return ProtocolError{Code: http2.ErrCodeEnhanceYourCalm, Reason: "header frame larger than MaxHeaderListSize"}
			}
			err = c.onHeaderFrame(fh)
		case http2.FrameSettings, http2.FramePing, http2.FrameRSTStream, http2.FrameGoAway,
			http2.FramePriority, http2.FramePushPromise:
			if fh.Length > maxCtrlFrameLen {
				return ProtocolError{Code: http2.ErrCodeFrameSize, Reason: "control frame too large"}
			}
			var f http2.Frame
			if f, err = c.rfr.ReadFrameForHeader(fh); err == nil {
				err = c.onFrame(f)
			}
		default:
			// Unknown and extension frame types (PRIORITY_UPDATE, ...) are
			// ignored, skipped without being buffered, and counted.
			if err = c.idle("unknown frame type flood"); err == nil {
				err = c.discard(int(fh.Length))
			}
		}
		if err == nil {
			continue
		}
		var se streamError
		var hse http2.StreamError
		switch {
		case errors.As(err, &se):
		case errors.As(err, &hse):
			se = streamError{StreamID: hse.StreamID, Code: hse.Code}
		default:
			return classifyReadErr(err)
		}
		c.resetStreamID(se.StreamID, se.Code)
		// A stream error is the peer's fault and costs us an answer.
		if err := c.idle("stream error flood"); err != nil {
			return err
		}
	}
}

// readLoop runs the read loop until it parks or the connection ends, and
// then ends the connection's service (readEnded). It runs first on the
// goroutine that started the connection, then on a new one each time the
// parked loop's socket becomes readable (readTask).
func (c *conn) readLoop() {
	err := c.serveFrames()
	if err == errParked {
		return
	}
	c.readEnded(err)
}

// readEnded ends the connection's service once its read loop ended: the
// client's read loop leaves the WaitGroup, the server's connection leaves
// its Server.
func (c *conn) readEnded(err error) {
	c.afterReadLoop(err)
	if c.server {
		c.srv.connEnded(c)
		return
	}
	c.wg.Done()
}

// parkRead gives up the read loop's goroutine while the peer is silent:
// the socket goes to netutil's epoll loop, which runs readTask once it is
// readable. It reports false when the loop must go on reading here (the
// socket cannot be parked, or the connection failed meanwhile). Frames are
// never cut: the loop parks only between frames with nothing buffered.
func (c *conn) parkRead() bool {
	if !c.rpark.Park(c.sock, c.readTask) {
		c.waiter = nil // epoll refuses this socket: wait in Read from now on
		return false
	}
	select {
	case <-c.done:
		// fail may have looked for the parked loop before it was parked;
		// whoever takes it back runs it.
		return !c.rpark.Cancel()
	default:
		return true
	}
}

// idle counts one frame that made no progress; over maxIdleFrames in the
// window it returns the connection error ENHANCE_YOUR_CALM. Read loop only.
func (c *conn) idle(what string) error {
	c.idleFrames++
	if c.idleFrames > maxIdleFrames {
		return ProtocolError{Code: http2.ErrCodeEnhanceYourCalm, Reason: what}
	}
	return nil
}

// classifyReadErr maps Framer errors to connection errors.
func classifyReadErr(err error) error {
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		return ProtocolError{Code: http2.ErrCode(ce), Reason: "frame rejected by codec"}
	case errors.Is(err, http2.ErrFrameTooLarge):
		return ProtocolError{Code: http2.ErrCodeFrameSize, Reason: "frame larger than SETTINGS_MAX_FRAME_SIZE"}
	}
	return err
}

// resetStreamID answers a stream error with RST_STREAM, failing the local
// stream if there is one.
func (c *conn) resetStreamID(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	s := c.streams.get(id)
	if c.server && id > c.maxPeerID && id%2 == 1 {
		c.maxPeerID = id
	}
	c.mu.Unlock()
	if s != nil {
		s.resetLocal(code)
		return
	}
	c.enqueue(ctrlFrame{kind: ctrlRSTStream, stream: id, val: uint32(code)})
}

// lookup returns the open stream id, and whether id was ever opened (an id
// never opened is "idle": frames on it are a protocol error).
func (c *conn) lookup(id uint32) (s *Stream, opened bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s = c.streams.get(id)
	if s != nil {
		return s, true
	}
	if id%2 == 0 {
		return nil, false
	}
	if c.server {
		return nil, id <= c.maxPeerID
	}
	return nil, id < c.nextID
}

// discard skips n bytes of the current frame.
func (c *conn) discard(n int) error {
	if n <= 0 {
		return nil
	}
	_, err := c.br.Discard(n)
	return err
}

func (c *conn) onData(fh http2.FrameHeader) error {
	id := fh.StreamID
	if id == 0 {
		return ProtocolError{Code: http2.ErrCodeProtocol, Reason: "DATA on stream 0"}
	}
	n := int(fh.Length)
	pad := 0 // padding bytes still to skip, plus the pad length byte
	if fh.Flags.Has(http2.FlagDataPadded) {
		if n < 1 {
			return ProtocolError{Code: http2.ErrCodeFrameSize, Reason: "padded DATA without pad length"}
		}
		b, err := c.br.ReadByte()
		if err != nil {
			return err
		}
		pad = int(b) + 1
		if pad > n {
			return ProtocolError{Code: http2.ErrCodeProtocol, Reason: "DATA padding exceeds payload"}
		}
	}
	dataLen := n - pad
	if dataLen == 0 && !fh.Flags.Has(http2.FlagDataEndStream) {
		if err := c.idle("empty DATA flood"); err != nil {
			return err
		}
	}
	if c.recvWindow.Add(-int64(n)) < 0 {
		return ProtocolError{Code: http2.ErrCodeFlowControl, Reason: "connection receive window exceeded"}
	}
	s, opened := c.lookup(id)
	if s == nil {
		if !opened {
			return ProtocolError{Code: http2.ErrCodeProtocol, Reason: "DATA on idle stream"}
		}
		// A stream we already finished or reset: drop and credit.
		err := c.discard(n - min(pad, 1))
		c.creditConn(int64(n))
		return err
	}
	return s.onData(c, dataLen, n, pad, fh.Flags.Has(http2.FlagDataEndStream))
}

func (c *conn) onWindowUpdate(fh http2.FrameHeader) error {
	if fh.Length != 4 {
		return ProtocolError{Code: http2.ErrCodeFrameSize, Reason: "WINDOW_UPDATE length"}
	}
	if _, err := io.ReadFull(c.br, c.scratch[:4]); err != nil {
		return err
	}
	inc := int64(binary.BigEndian.Uint32(c.scratch[:4]) & 0x7fffffff)
	id := fh.StreamID
	if inc == 0 {
		if id == 0 {
			return ProtocolError{Code: http2.ErrCodeProtocol, Reason: "zero WINDOW_UPDATE"}
		}
		return streamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == 0 {
		c.sendWindow += inc
		if c.sendWindow > maxWindow {
			return ProtocolError{Code: http2.ErrCodeFlowControl, Reason: "connection send window overflow"}
		}
		for i, s := range c.connWaiters {
			s.connWaiting = false
			signal(s.wakeW)
			c.connWaiters[i] = nil
		}
		c.connWaiters = c.connWaiters[:0]
		return nil
	}
	s := c.streams.get(id)
	if s == nil {
		return nil
	}
	s.sendWindow += inc
	if s.sendWindow > maxWindow {
		return streamError{StreamID: id, Code: http2.ErrCodeFlowControl}
	}
	signal(s.wakeW)
	return nil
}

func (c *conn) onFrame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if err := c.idle("SETTINGS flood"); err != nil {
			return err
		}
		return c.onSettings(f)
	case *http2.PingFrame:
		if err := c.idle("PING flood"); err != nil {
			return err
		}
		if !f.IsAck() {
			c.enqueue(ctrlFrame{kind: ctrlPingAck, data: f.Data})
		} else if c.server && f.Data == drainPing {
			c.finishGoAway() // the peer read the drain's first GOAWAY
		}
	case *http2.PriorityFrame:
		return c.idle("PRIORITY flood")
	case *http2.RSTStreamFrame:
		s, opened := c.lookup(f.StreamID)
		switch {
		case s != nil:
			if c.server && !s.answered() {
				c.prematures++
				if c.prematures > c.maxResets {
					return ProtocolError{Code: http2.ErrCodeEnhanceYourCalm, Reason: "rapid reset"}
				}
			}
			s.resetRemote(f.ErrCode)
		case !opened:
			return ProtocolError{Code: http2.ErrCodeProtocol, Reason: "RST_STREAM on idle stream"}
		default:
			return c.idle("RST_STREAM flood")
		}
	case *http2.GoAwayFrame:
		c.onGoAway(f)
	case *http2.PushPromiseFrame:
		return ProtocolError{Code: http2.ErrCodeProtocol, Reason: "PUSH_PROMISE not enabled"}
	case *http2.ContinuationFrame:
		return ProtocolError{Code: http2.ErrCodeProtocol, Reason: "unexpected CONTINUATION"}
	}
	return nil
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	c.sawSettings = true
	c.mu.Lock()
	initWindow := int64(-1)
	err := f.ForeachSetting(func(st http2.Setting) error {
		if err := st.Valid(); err != nil {
			return err
		}
		switch st.ID {
		case http2.SettingInitialWindowSize:
			// Applied once below: a frame repeating it costs one pass
			// over the streams, not one per entry.
			initWindow = int64(st.Val)
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = st.Val
		case http2.SettingMaxConcurrentStreams:
			c.peerMaxStreams = st.Val
		case http2.SettingHeaderTableSize:
			c.peerTableSize = st.Val
		}
		return nil
	})
	if err == nil && initWindow >= 0 && initWindow != c.peerInitWindow {
		delta := initWindow - c.peerInitWindow
		c.peerInitWindow = initWindow
		for _, s := range c.streams.all() {
			s.sendWindow += delta
			if s.sendWindow > maxWindow {
				err = ProtocolError{Code: http2.ErrCodeFlowControl, Reason: "stream window overflow by SETTINGS"}
				break
			}
			signal(s.wakeW)
		}
	}
	c.mu.Unlock()
	if err != nil {
		return classifyReadErr(err)
	}
	c.enqueue(ctrlFrame{kind: ctrlSettingsAck})
	return nil
}

func (c *conn) onGoAway(f *http2.GoAwayFrame) {
	if f.ErrCode != http2.ErrCodeNo {
		c.log.Debug("hbone: peer sent GOAWAY", "remote", c.nc.RemoteAddr(), "code", f.ErrCode,
			"debug", string(f.DebugData()))
	}
	c.mu.Lock()
	c.goingAway = true
	var refused []*Stream
	if !c.server {
		for _, s := range c.streams.all() {
			if s.id > f.LastStreamID {
				refused = append(refused, s)
			}
		}
	}
	empty := c.streams.len() == len(refused)
	c.mu.Unlock()
	gerr := GoAwayError{Code: f.ErrCode}
	for _, s := range refused {
		s.fail(gerr)
	}
	if empty && !c.server {
		c.closeGraceful(errGoAwayDrain)
	}
}

// onResponseHeaders handles HEADERS on the client side.
func (c *conn) onResponseHeaders(id uint32) error {
	ended := c.hdr.end
	s, opened := c.lookup(id)
	if s == nil {
		if !opened {
			return ProtocolError{Code: http2.ErrCodeProtocol, Reason: "HEADERS on idle stream"}
		}
		return nil
	}
	if c.hdr.keep {
		if status, ok := c.hdr.responseStatus(); ok && status >= 200 {
			c.deliverAnswer(id, c.hdr.header) // before the status is set: Connect reads it once it sees that
		}
	}
	s.mu.Lock()
	if s.status != 0 { // trailers
		s.mu.Unlock()
		if !ended {
			return streamError{StreamID: id, Code: http2.ErrCodeProtocol}
		}
		s.onRemoteEnd()
		return nil
	}
	status, ok := c.hdr.responseStatus()
	if !ok {
		s.mu.Unlock()
		return streamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	if status < 200 { // informational: wait for the final answer
		s.mu.Unlock()
		if ended {
			return streamError{StreamID: id, Code: http2.ErrCodeProtocol}
		}
		return nil
	}
	s.status = int32(status) // 100..999, checked above
	closed := s.localClosed
	s.mu.Unlock()
	c.answered(s)
	if closed {
		// Closed while it waited for this answer (see Close): it ends now.
		if ended {
			s.onRemoteEnd()
		} else {
			s.resetLocal(http2.ErrCodeCancel)
		}
		return nil
	}
	if status == http.StatusOK {
		s.signalR() // connect waits for the answer on wakeR
	} else {
		s.wake() // an opened stream's reader learns of the refusal (Read fails)
	}
	if ended {
		s.onRemoteEnd()
	}
	return nil
}

// onRequestHeaders handles HEADERS on the server side: a new request, or
// trailers ending one.
func (c *conn) onRequestHeaders(id uint32) error {
	ended := c.hdr.end
	if id%2 == 0 {
		return ProtocolError{Code: http2.ErrCodeProtocol, Reason: "client opened an even stream"}
	}
	c.mu.Lock()
	if s := c.streams.get(id); s != nil {
		c.mu.Unlock()
		if !ended {
			return streamError{StreamID: id, Code: http2.ErrCodeProtocol}
		}
		s.onRemoteEnd()
		return nil
	}
	if id <= c.maxPeerID {
		c.mu.Unlock()
		return streamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
	}
	c.maxPeerID = id
	// Handlers of streams the peer already reset may still run (e.g. a
	// dial in progress): they count against the limit too, so a rapid
	// reset cannot pile them up.
	limit := c.cfg.MaxConcurrentStreams
	if c.goingAway || c.closing || uint32(c.streams.len()) >= limit || c.handlersLive >= limit {
		c.mu.Unlock()
		return streamError{StreamID: id, Code: http2.ErrCodeRefusedStream}
	}
	c.mu.Unlock()

	req, status, ok := c.hdr.takeRequest()
	if !ok {
		return streamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	s := newStream(c, id, false)
	s.recvEnd = ended
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	s.sendWindow = c.peerInitWindow
	c.streams.add(s)
	c.handlersLive++
	c.mu.Unlock()

	c.handlers.Add(1)
	workers.Go(func() { c.runHandler(s, req, status) })
	return nil
}

// runHandler runs in the goroutine that owns one server stream: it answers
// invalid requests itself, otherwise calls the Handler, and closes the
// stream when the Handler returns, unless the Handler answered it and
// detached it (Stream.Detach).
func (c *conn) runHandler(s *Stream, req *Request, status int) {
	defer c.handlers.Done()
	defer func() {
		c.mu.Lock()
		c.handlersLive--
		c.mu.Unlock()
	}()
	if status != 0 {
		s.Reject(status)
		s.Close()
		return
	}
	defer func() {
		s.mu.Lock()
		answered := s.status != 0
		s.mu.Unlock()
		if !answered {
			s.Reject(http.StatusInternalServerError)
		} else if s.has(streamDetached) {
			return // the Handler's relay owns the stream now
		}
		s.Close()
	}()
	c.srv.Handler.ServeHBONE(s, req)
}
