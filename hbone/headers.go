package hbone

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Header blocks.
//
// The read loop decodes each HEADERS or CONTINUATION fragment as it
// arrives: it peeks the fragment in the read buffer and writes it straight
// to the connection's HPACK decoder, whose emit function (onField) checks
// each field and keeps what the block's role needs in hdrBlock. No block
// buffer, frame or field list is allocated: a server keeps the request's
// pseudo-headers and its other fields (the Request's Header, one slice), a
// client only the response's status. The Framer still reads every frame
// header, which checks that a CONTINUATION follows its HEADERS with no
// other frame between.
//
// The checks are RFC 9113's (8.2, 8.3), as x/net's MetaHeadersFrame makes
// them: a field value with control characters, a name that is not a
// lower-case token, a pseudo-header after a regular field, an unknown or
// repeated pseudo-header, or a response's pseudo-header in a request (or
// the reverse) make the message malformed, a stream error PROTOCOL_ERROR.
// A server also refuses connection-specific fields (8.2.2). A field that
// would take the decoded list past MaxHeaderListSize truncates the block
// (a server answers 431). After the first malformed or truncating field
// the decoder runs on without emitting, to keep its table in step: a block
// cannot be dropped half-decoded without breaking the HPACK state of the
// whole connection.

// hdrBlock is the header block being decoded; the read loop owns it.
type hdrBlock struct {
	stream uint32 // the block's stream; 0: no block in progress
	frames int    // HEADERS and CONTINUATION frames so far
	bytes  int    // encoded bytes so far
	end    bool   // the HEADERS frame had END_STREAM

	remain    uint32 // decoded list size still allowed (MaxHeaderListSize)
	truncated bool   // a field went past remain; it and the rest were dropped
	bad       bool   // a field made the message malformed
	regular   bool   // a regular (non-pseudo) field was seen
	pseudo    uint8  // pseudo-headers seen (pseudoMethod, ...)

	method, authority string // requests (server side)
	status            string // responses (client side)
	header            Header // a request's regular fields (handed to its Request), or a response's when keep
	keep              bool   // client side: the stream's Request asked for the answer's fields
}

// hdrBlock.pseudo bits.
const (
	pseudoMethod uint8 = 1 << iota
	pseudoScheme
	pseudoAuthority
	pseudoPath
	pseudoProtocol
	pseudoStatus
)

// onHeaderFrame reads a HEADERS or CONTINUATION frame's payload and decodes
// its fragment; the block is handled once it is complete.
func (c *conn) onHeaderFrame(fh http2.FrameHeader) error {
	h := &c.hdr
	if fh.StreamID == 0 {
		return ProtocolError{Code: http2.ErrCodeProtocol, Reason: "header frame on stream 0"}
	}
	n, pad := int(fh.Length), 0 // fragment and padding bytes
	if fh.Type == http2.FrameHeaders {
		if fh.Flags.Has(http2.FlagHeadersPadded) {
			if n < 1 {
				return ProtocolError{Code: http2.ErrCodeFrameSize, Reason: "padded HEADERS without pad length"}
			}
			b, err := c.br.ReadByte()
			if err != nil {
				return err
			}
			pad = int(b)
			n--
		}
		if fh.Flags.Has(http2.FlagHeadersPriority) { // ignored (RFC 9113 5.3.2)
			if n < 5 {
				return ProtocolError{Code: http2.ErrCodeFrameSize, Reason: "HEADERS too short for its priority"}
			}
			if err := c.discard(5); err != nil {
				return err
			}
			n -= 5
		}
		if pad > n {
			return ProtocolError{Code: http2.ErrCodeProtocol, Reason: "HEADERS padding exceeds payload"}
		}
		n -= pad
		*h = hdrBlock{stream: fh.StreamID, end: fh.Flags.Has(http2.FlagHeadersEndStream), remain: c.cfg.MaxHeaderListSize}
		if !c.server && c.wantAnswers.Load() > 0 {
			c.mu.Lock()
			h.keep = c.answers[fh.StreamID] != nil
			c.mu.Unlock()
		}
		c.hdec.SetEmitEnabled(true)
	} else if fh.StreamID != h.stream {
		// The Framer's order check makes this unreachable; kept as a guard.
		return ProtocolError{Code: http2.ErrCodeProtocol, Reason: "unexpected CONTINUATION"}
	}
	h.frames++
	h.bytes += n
	switch {
	case h.frames > maxHeaderFrames:
		return ProtocolError{Code: http2.ErrCodeEnhanceYourCalm, Reason: "CONTINUATION flood"}
	case h.bytes > c.maxBlock:
		return ProtocolError{Code: http2.ErrCodeEnhanceYourCalm, Reason: "header block larger than MaxHeaderListSize"}
	}
	if err := c.decodeFragment(n); err != nil {
		return err
	}
	if err := c.discard(pad); err != nil {
		return err
	}
	if !fh.Flags.Has(http2.FlagHeadersEndHeaders) {
		return nil
	}
	if err := c.hdec.Close(); err != nil {
		return ProtocolError{Code: http2.ErrCodeCompression, Reason: "header block ends inside a field"}
	}
	var err error
	switch {
	case h.bad:
		err = streamError{StreamID: h.stream, Code: http2.ErrCodeProtocol}
	case c.server:
		err = c.onRequestHeaders(h.stream)
	default:
		err = c.onResponseHeaders(h.stream)
	}
	*h = hdrBlock{} // no block in progress; nothing of this one stays referenced
	return err
}

// decodeFragment writes the next n bytes of the read buffer to the HPACK
// decoder. They go through hchunk, a small array of the connection's: the
// decoder keeps a (zero-length) slice of the last bytes it was given, and
// a slice of the read buffer would keep that buffer alive after a TLS
// connection returned it to its pool. A request's block is about 100
// bytes, so the copy costs next to nothing.
func (c *conn) decodeFragment(n int) error {
	for n > 0 {
		k := min(n, len(c.hchunk), max(c.br.Buffered(), 1))
		p, err := c.br.Peek(k)
		if len(p) < k {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		copy(c.hchunk[:], p)
		if err := c.discard(k); err != nil {
			return err
		}
		if _, err := c.hdec.Write(c.hchunk[:k]); err != nil {
			return ProtocolError{Code: http2.ErrCodeCompression, Reason: "header block does not decode"}
		}
		n -= k
	}
	return nil
}

// onField is the HPACK decoder's emit function: it checks one field and
// keeps what the block's role needs.
func (c *conn) onField(f hpack.HeaderField) {
	h := &c.hdr
	if !httpguts.ValidHeaderFieldValue(f.Value) {
		c.malformed()
		return
	}
	pseudo := strings.HasPrefix(f.Name, ":")
	if pseudo {
		bit := pseudoBit(f.Name, c.server)
		if h.regular || bit == 0 || h.pseudo&bit != 0 {
			c.malformed()
			return
		}
		h.pseudo |= bit
	} else {
		h.regular = true
		if !validWireName(f.Name) || c.server && connectionSpecific(f) {
			c.malformed()
			return
		}
	}
	if size := f.Size(); size <= h.remain {
		h.remain -= size
	} else {
		h.truncated, h.remain = true, 0
		c.hdec.SetEmitEnabled(false)
		return
	}
	switch {
	case !pseudo:
		if c.server || h.keep {
			if h.header == nil {
				// One allocation for the fields of a ztunnel's request (forwarded, baggage,
				// traceparent), instead of one per growth.
				h.header = make(Header, 0, 3)
			}
			h.header = append(h.header, Field{Name: f.Name, Value: f.Value})
		}
	case f.Name == ":method":
		h.method = f.Value
	case f.Name == ":authority":
		h.authority = f.Value
	case f.Name == ":status":
		h.status = f.Value
	}
}

// malformed marks the block's message malformed; the decoder goes on only
// to keep its table in step.
func (c *conn) malformed() {
	c.hdr.bad = true
	c.hdec.SetEmitEnabled(false)
}

// pseudoBit is the hdrBlock.pseudo bit of a pseudo-header that a server
// (in requests) or a client (in responses) accepts, 0 for any other.
func pseudoBit(name string, server bool) uint8 {
	if !server {
		if name == ":status" {
			return pseudoStatus
		}
		return 0
	}
	switch name {
	case ":method":
		return pseudoMethod
	case ":scheme":
		return pseudoScheme
	case ":authority":
		return pseudoAuthority
	case ":path":
		return pseudoPath
	case ":protocol":
		return pseudoProtocol
	}
	return 0
}

// validWireName reports whether name is a valid HTTP/2 field name: a
// non-empty token without upper-case letters.
func validWireName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if 'A' <= b && b <= 'Z' || !httpguts.IsTokenRune(rune(b)) {
			return false
		}
	}
	return true
}

// connectionSpecific reports whether f is a connection-specific field,
// which RFC 9113 8.2.2 forbids in HTTP/2 ("te" is allowed as "trailers").
func connectionSpecific(f hpack.HeaderField) bool {
	switch f.Name {
	case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
		return true
	case "te":
		return f.Value != "trailers"
	}
	return false
}

// takeRequest builds the Request of the block just decoded (server side).
// ok=false means the request is malformed (stream error); status!=0 means
// it is well-formed HTTP/2 but must be answered with that status instead of
// the Handler.
func (h *hdrBlock) takeRequest() (req *Request, status int, ok bool) {
	if h.pseudo&pseudoMethod == 0 {
		return nil, 0, false
	}
	req = &Request{Method: h.method, Authority: h.authority, Header: h.header}
	h.header = nil
	if req.Authority == "" {
		req.Authority = req.Header.Get("host")
	}
	switch {
	case h.truncated:
		status = http.StatusRequestHeaderFieldsTooLarge
	case req.Method != http.MethodConnect:
		status = http.StatusBadRequest
	case req.Authority == "":
		status = http.StatusBadRequest
	}
	return req, status, true
}

// responseStatus is the status of the response block just decoded (client
// side); ok=false means a malformed response.
func (h *hdrBlock) responseStatus() (status int, ok bool) {
	status, err := strconv.Atoi(h.status)
	if err != nil || status < 100 || status > 999 || h.truncated {
		return 0, false
	}
	return status, true
}
