package hbone

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
)

// Defaults of Config (ztunnel's values).
const (
	DefaultStreamWindow         = 4 << 20
	DefaultConnWindow           = 16 << 20
	DefaultMaxFrameSize         = 1 << 20
	DefaultMaxConcurrentStreams = 200
	DefaultMaxHeaderListSize    = 64 << 10
	DefaultPingInterval         = 10 * time.Second
	DefaultPingTimeout          = 20 * time.Second
)

// HTTP/2 protocol limits (RFC 9113).
const (
	initialWindow   = 65535 // flow-control window before SETTINGS/WINDOW_UPDATE
	maxWindow       = 1<<31 - 1
	minFrameSize    = 1 << 14 // smallest legal SETTINGS_MAX_FRAME_SIZE
	maxFrameSizeCap = 1<<24 - 1
	maxStreamID     = 1<<31 - 1
)

// Config tunes one HTTP/2 connection. The zero value of every field means
// ztunnel's default. A Config is copied when a connection starts.
type Config struct {
	// StreamWindow is the initial flow-control window of every stream we
	// receive on (SETTINGS_INITIAL_WINDOW_SIZE). 0 means 4 MiB.
	StreamWindow uint32
	// ConnWindow is the connection-level receive window. 0 means 16 MiB.
	ConnWindow uint32
	// MaxFrameSize is the largest frame we accept (SETTINGS_MAX_FRAME_SIZE).
	// 0 means 1 MiB. Values are clamped to [16 KiB, 16 MiB-1].
	MaxFrameSize uint32
	// MaxConcurrentStreams is the number of concurrent streams a server
	// allows per connection; streams beyond it are refused with
	// RST_STREAM(REFUSED_STREAM). 0 means 200. Clients ignore it.
	MaxConcurrentStreams uint32
	// MaxHeaderListSize caps the decoded size of a header block we accept.
	// 0 means 64 KiB.
	MaxHeaderListSize uint32
	// PingInterval is how often a PING is sent. 0 means 10 s.
	PingInterval time.Duration
	// PingTimeout is how long the connection may stay silent (no frame of
	// any kind received), or have a write stuck on a peer that does not
	// read, before it is closed. 0 means 20 s.
	PingTimeout time.Duration
	// Logger receives connection-level events (never per-frame ones).
	// nil discards them.
	Logger *slog.Logger
}

// withDefaults returns c with zero fields replaced by defaults and values
// clamped to what HTTP/2 allows.
func (c Config) withDefaults() Config {
	if c.StreamWindow == 0 {
		c.StreamWindow = DefaultStreamWindow
	}
	c.StreamWindow = min(c.StreamWindow, maxWindow)
	if c.ConnWindow == 0 {
		c.ConnWindow = DefaultConnWindow
	}
	c.ConnWindow = min(max(c.ConnWindow, initialWindow), maxWindow)
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = DefaultMaxFrameSize
	}
	c.MaxFrameSize = min(max(c.MaxFrameSize, minFrameSize), maxFrameSizeCap)
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if c.MaxHeaderListSize == 0 {
		c.MaxHeaderListSize = DefaultMaxHeaderListSize
	}
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = DefaultPingTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Request is an HBONE request: the pseudo-headers of a CONNECT and the
// regular headers that travel with it.
type Request struct {
	// Method is the request method; "CONNECT" for HBONE. An empty Method
	// sent by a client means "CONNECT".
	Method string
	// Authority is the tunnel target, "ip:port" (or "hostname:port").
	Authority string
	// Header holds the other fields, e.g. "forwarded", "baggage",
	// "traceparent". A client's names are sent in lower case (HTTP/2's
	// form), without the connection-specific ones; a server's Request has
	// them as they arrived, in order.
	Header Header
	// Early holds the first bytes of the tunnel, already read from the
	// client, to send with the request instead of after its answer. As much
	// of it as the peer's flow-control windows and frame size allow goes out
	// as DATA in the same write as the HEADERS; the rest is written after a
	// 200, before Connect returns (Open writes it at once). On any other
	// answer it is dropped. The
	// peer must hold DATA that arrives before it answers (RFC 9113 lets a
	// client send it; HTTP/2 frames keep it inside the stream): ztunnels
	// do, and never deliver it before they answer 200. Connect does not
	// keep Early after it returns.
	Early []byte
	// Response, when not nil, receives the regular fields of the answer
	// (names in lower case, as they arrived), whatever its status, before
	// Connect returns; a Response of an answer that did not come is left
	// alone. Open does not wait for the answer and ignores it. ztunnel
	// answers 200 with a baggage field describing the destination.
	Response *Header
}

// Field is one header field.
type Field struct{ Name, Value string }

// Header is a request's header fields other than the pseudo-headers. It is
// a list rather than a map: an HBONE request carries one to three fields.
type Header []Field

// Get returns the value of the first field named name (compared without
// regard to case), or "".
func (h Header) Get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// StatusError is a non-200 answer to CONNECT.
type StatusError struct{ Code int }

func (e *StatusError) Error() string {
	return "hbone: CONNECT answered " + strconv.Itoa(e.Code) + " " + http.StatusText(e.Code)
}

// ResetError reports that a stream was reset with RST_STREAM.
type ResetError struct {
	Code   http2.ErrCode // the RST_STREAM error code
	Remote bool          // the peer reset the stream (false: we did)
}

func (e *ResetError) Error() string {
	if e.Remote {
		return "hbone: stream reset by peer: " + e.Code.String()
	}
	return "hbone: stream reset: " + e.Code.String()
}

// Is makes a refused stream match ErrRefused.
func (e *ResetError) Is(target error) bool {
	return target == ErrRefused && e.Remote && e.Code == http2.ErrCodeRefusedStream
}

// Errors reported by this package. Match them with errors.Is.
var (
	// ErrRefused means the peer did not process the stream (REFUSED_STREAM,
	// or a GOAWAY below its id, or no capacity); retrying on another
	// connection is safe.
	ErrRefused = errors.New("hbone: stream refused, safe to retry")
	// ErrPingTimeout closes a connection whose peer stayed silent for
	// PingTimeout.
	ErrPingTimeout = errors.New("hbone: keepalive timeout")
	// ErrWriteStalled closes a connection whose writes have not progressed
	// for PingTimeout: the peer stopped reading.
	ErrWriteStalled = errors.New("hbone: peer stopped reading (write stalled)")
	// ErrServerClosed is returned by ServeConn after Shutdown.
	ErrServerClosed = errors.New("hbone: server closed")
	// ErrPoolClosed is returned by Pool.Connect after Close.
	ErrPoolClosed = errors.New("hbone: pool closed")
)

// Stream and connection errors built once so the data path never allocates
// an error value.
var (
	errStreamClosed = fmt.Errorf("hbone: stream closed: %w", net.ErrClosed)
	errWriteClosed  = errors.New("hbone: write after CloseWrite")
	errNotOpen      = errors.New("hbone: stream has no 200 response")
	errNoAnswer     = fmt.Errorf("hbone: no answer to CONNECT by the deadline: %w", os.ErrDeadlineExceeded)
	errConnClosed   = error(&ConnError{Err: net.ErrClosed})
	errGoAwayDrain  = fmt.Errorf("hbone: connection drained after GOAWAY: %w", net.ErrClosed)
	errPeerEOF      = fmt.Errorf("hbone: peer closed the connection: %w", io.ErrUnexpectedEOF)
)

// ProtocolError is a connection-level protocol error of the peer's: we send
// GOAWAY with Code and close the connection. The connection's streams fail
// with an error that wraps it.
type ProtocolError struct {
	Code   http2.ErrCode
	Reason string
}

func (e ProtocolError) Error() string {
	return "hbone: connection error " + e.Code.String() + ": " + e.Reason
}

// streamError is a stream-level protocol error: we send RST_STREAM with Code.
type streamError struct {
	StreamID uint32
	Code     http2.ErrCode
}

func (e streamError) Error() string {
	return "hbone: stream " + strconv.FormatUint(uint64(e.StreamID), 10) + " error " + e.Code.String()
}

// GoAwayError is the error of a client stream above the last stream id of the
// peer's GOAWAY (sent with Code): the peer did not process it, so it matches
// ErrRefused.
type GoAwayError struct{ Code http2.ErrCode }

func (e GoAwayError) Error() string        { return "hbone: peer sent GOAWAY " + e.Code.String() }
func (e GoAwayError) Is(target error) bool { return target == ErrRefused }

// ConnError is the error of the streams that were open when their connection
// failed with Err: a ProtocolError, ErrPingTimeout, ErrWriteStalled, the
// socket's error, or the peer's end of the connection (io.ErrUnexpectedEOF).
type ConnError struct{ Err error }

func (e *ConnError) Error() string { return "hbone: connection closed: " + e.Err.Error() }
func (e *ConnError) Unwrap() error { return e.Err }
