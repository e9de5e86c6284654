package hbone

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
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
		return connError{Code: http2.ErrCodeProtocol, Reason: "bad client preface"}
	}
	return nil
}

// serveFrames is the read loop: it reads frames until the connection fails
// and dispatches them. It never writes to the socket; answers go through
// the control queue. DATA and WINDOW_UPDATE payloads are parsed here
// directly (no Framer allocation or copy); other frames go through the
// Framer, which also merges HEADERS+CONTINUATION and enforces
// MaxHeaderListSize.
func (c *conn) serveFrames() error {
	for {
		fh, err := c.rfr.ReadFrameHeader()
		if err != nil {
			return classifyReadErr(err)
		}
		c.lastRead.Store(c.now())
		if !c.sawSettings && (fh.Type != http2.FrameSettings || fh.Flags.Has(http2.FlagSettingsAck)) {
			return connError{Code: http2.ErrCodeProtocol, Reason: "first frame is not SETTINGS"}
		}
		switch fh.Type {
		case http2.FrameData:
			err = c.onData(fh)
		case http2.FrameWindowUpdate:
			err = c.onWindowUpdate(fh)
		default:
			var f http2.Frame
			f, err = c.rfr.ReadFrameForHeader(fh)
			if err == nil {
				err = c.onFrame(f)
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
	}
}

// classifyReadErr maps Framer errors to connection errors.
func classifyReadErr(err error) error {
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		return connError{Code: http2.ErrCode(ce), Reason: "frame rejected by codec"}
	case errors.Is(err, http2.ErrFrameTooLarge):
		return connError{Code: http2.ErrCodeFrameSize, Reason: "frame larger than SETTINGS_MAX_FRAME_SIZE"}
	}
	return err
}

// resetStreamID answers a stream error with RST_STREAM, failing the local
// stream if there is one.
func (c *conn) resetStreamID(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	s := c.streams[id]
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
	s = c.streams[id]
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
		return connError{Code: http2.ErrCodeProtocol, Reason: "DATA on stream 0"}
	}
	n := int(fh.Length)
	pad := 0 // padding bytes still to skip, plus the pad length byte
	if fh.Flags.Has(http2.FlagDataPadded) {
		if n < 1 {
			return connError{Code: http2.ErrCodeFrameSize, Reason: "padded DATA without pad length"}
		}
		b, err := c.br.ReadByte()
		if err != nil {
			return err
		}
		pad = int(b) + 1
		if pad > n {
			return connError{Code: http2.ErrCodeProtocol, Reason: "DATA padding exceeds payload"}
		}
	}
	dataLen := n - pad
	if c.recvWindow.Add(-int64(n)) < 0 {
		return connError{Code: http2.ErrCodeFlowControl, Reason: "connection receive window exceeded"}
	}
	s, opened := c.lookup(id)
	if s == nil {
		if !opened {
			return connError{Code: http2.ErrCodeProtocol, Reason: "DATA on idle stream"}
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
		return connError{Code: http2.ErrCodeFrameSize, Reason: "WINDOW_UPDATE length"}
	}
	if _, err := io.ReadFull(c.br, c.scratch[:4]); err != nil {
		return err
	}
	inc := int64(binary.BigEndian.Uint32(c.scratch[:4]) & 0x7fffffff)
	id := fh.StreamID
	if inc == 0 {
		if id == 0 {
			return connError{Code: http2.ErrCodeProtocol, Reason: "zero WINDOW_UPDATE"}
		}
		return streamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == 0 {
		c.sendWindow += inc
		if c.sendWindow > maxWindow {
			return connError{Code: http2.ErrCodeFlowControl, Reason: "connection send window overflow"}
		}
		for i, s := range c.connWaiters {
			signal(s.wakeW)
			c.connWaiters[i] = nil
		}
		c.connWaiters = c.connWaiters[:0]
		return nil
	}
	s := c.streams[id]
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
		return c.onSettings(f)
	case *http2.MetaHeadersFrame:
		if c.server {
			return c.onRequestHeaders(f)
		}
		return c.onResponseHeaders(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			c.enqueue(ctrlFrame{kind: ctrlPingAck, data: f.Data})
		}
	case *http2.RSTStreamFrame:
		s, opened := c.lookup(f.StreamID)
		if s != nil {
			s.resetRemote(f.ErrCode)
		} else if !opened {
			return connError{Code: http2.ErrCodeProtocol, Reason: "RST_STREAM on idle stream"}
		}
	case *http2.GoAwayFrame:
		c.onGoAway(f)
	case *http2.PushPromiseFrame:
		return connError{Code: http2.ErrCodeProtocol, Reason: "PUSH_PROMISE not enabled"}
	case *http2.ContinuationFrame:
		return connError{Code: http2.ErrCodeProtocol, Reason: "unexpected CONTINUATION"}
	}
	// PRIORITY, PRIORITY_UPDATE and unknown frame types are ignored.
	return nil
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	c.sawSettings = true
	c.mu.Lock()
	err := f.ForeachSetting(func(st http2.Setting) error {
		if err := st.Valid(); err != nil {
			return err
		}
		switch st.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(st.Val) - c.peerInitWindow
			c.peerInitWindow = int64(st.Val)
			for _, s := range c.streams {
				s.sendWindow += delta
				if s.sendWindow > maxWindow {
					return connError{Code: http2.ErrCodeFlowControl, Reason: "stream window overflow by SETTINGS"}
				}
				signal(s.wakeW)
			}
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = st.Val
		case http2.SettingMaxConcurrentStreams:
			c.peerMaxStreams = st.Val
		case http2.SettingHeaderTableSize:
			c.peerTableSize = st.Val
		}
		return nil
	})
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
		for id, s := range c.streams {
			if id > f.LastStreamID {
				refused = append(refused, s)
			}
		}
	}
	empty := len(c.streams) == len(refused)
	c.mu.Unlock()
	gerr := peerGoAwayError{Code: f.ErrCode}
	for _, s := range refused {
		s.fail(gerr)
	}
	if empty && !c.server {
		c.closeGraceful(errGoAwayDrain)
	}
}

// onResponseHeaders handles HEADERS on the client side.
func (c *conn) onResponseHeaders(f *http2.MetaHeadersFrame) error {
	s, opened := c.lookup(f.StreamID)
	if s == nil {
		if !opened {
			return connError{Code: http2.ErrCodeProtocol, Reason: "HEADERS on idle stream"}
		}
		return nil
	}
	s.mu.Lock()
	if s.status != 0 { // trailers
		s.mu.Unlock()
		if !f.StreamEnded() {
			return streamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
		}
		s.onRemoteEnd()
		return nil
	}
	status, err := strconv.Atoi(f.PseudoValue("status"))
	if err != nil || status < 100 || status > 999 || f.Truncated {
		s.mu.Unlock()
		return streamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
	}
	if status < 200 { // informational: wait for the final answer
		s.mu.Unlock()
		if f.StreamEnded() {
			return streamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
		}
		return nil
	}
	s.status = status
	s.closeRespLocked()
	s.mu.Unlock()
	if f.StreamEnded() {
		s.onRemoteEnd()
	}
	return nil
}

// onRequestHeaders handles HEADERS on the server side: a new request, or
// trailers ending one.
func (c *conn) onRequestHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return connError{Code: http2.ErrCodeProtocol, Reason: "client opened an even stream"}
	}
	c.mu.Lock()
	if s := c.streams[id]; s != nil {
		c.mu.Unlock()
		if !f.StreamEnded() {
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
	if c.goingAway || c.closing || uint32(len(c.streams)) >= c.cfg.MaxConcurrentStreams {
		c.mu.Unlock()
		return streamError{StreamID: id, Code: http2.ErrCodeRefusedStream}
	}
	c.mu.Unlock()

	req, status, ok := parseRequest(f)
	if !ok {
		return streamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	s := newStream(c, id, false)
	s.req = req
	s.recvEnd = f.StreamEnded()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	s.sendWindow = c.peerInitWindow
	c.streams[id] = s
	c.mu.Unlock()

	c.handlers.Add(1)
	go c.runHandler(s, status)
	return nil
}

// runHandler runs in the goroutine that owns one server stream: it answers
// invalid requests itself, otherwise calls the Handler, and closes the
// stream when the Handler returns.
func (c *conn) runHandler(s *Stream, status int) {
	defer c.handlers.Done()
	defer s.Close()
	if status != 0 {
		s.Reject(status)
		return
	}
	defer func() {
		s.mu.Lock()
		answered := s.status != 0
		s.mu.Unlock()
		if !answered {
			s.Reject(http.StatusInternalServerError)
		}
	}()
	c.srv.Handler.ServeHBONE(s, s.req)
}

// parseRequest builds a Request from request HEADERS. ok=false means the
// request is malformed (stream error); status!=0 means it is well-formed
// HTTP/2 but must be answered with that status instead of the Handler.
func parseRequest(f *http2.MetaHeadersFrame) (req *Request, status int, ok bool) {
	req = &Request{Header: make(http.Header)}
	var seen [4]bool // method, authority, scheme, path
	for _, hf := range f.Fields {
		if !strings.HasPrefix(hf.Name, ":") {
			req.Header.Add(http.CanonicalHeaderKey(hf.Name), hf.Value)
			continue
		}
		var i int
		switch hf.Name {
		case ":method":
			i = 0
			req.Method = hf.Value
		case ":authority":
			i = 1
			req.Authority = hf.Value
		case ":scheme":
			i = 2
		case ":path":
			i = 3
		case ":protocol":
			continue
		default:
			return nil, 0, false
		}
		if seen[i] {
			return nil, 0, false
		}
		seen[i] = true
	}
	if !seen[0] {
		return nil, 0, false
	}
	if req.Authority == "" {
		req.Authority = req.Header.Get("Host")
	}
	switch {
	case f.Truncated:
		status = http.StatusRequestHeaderFieldsTooLarge
	case req.Method != http.MethodConnect:
		status = http.StatusBadRequest
	case req.Authority == "":
		status = http.StatusBadRequest
	}
	return req, status, true
}
