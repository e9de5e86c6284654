package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/net/http2"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/netutil"
	"github.com/ztunnel-go/ztunnel/tls/certs"
)

// The error of a connection that failed is what its access log line's error field says.
// Operators search those lines for ztunnel's words ("connection closed due to policy
// rejection", "Connection refused (os error 111)"), so the errors below say what ztunnel's
// proxy errors say for the same failure, and an operating system error is written as Rust's
// std::io::Error writes one. Each keeps its cause for errors.Is and errors.As.

var (
	// errPolicyChange ends an inbound connection that a policy update denies (its response
	// flag DENY).
	errPolicyChange = errors.New("connection closed due to policy change")
	// errCertRevoked ends a connection whose tunnel's peer certificate a reloaded revocation
	// list revokes (its response flag CERT_REVOKED).
	errCertRevoked = errors.New("connection closed: peer certificate revoked by CRL")
	// errClosedFromDrain ends a connection that the proxy's drain closed: at its deadline, or
	// at once when the proxy stops (its pod was deleted).
	errClosedFromDrain = errors.New("connection closed due to connection drain")
	// errSelfCall refuses a connection addressed to one of the proxy's own ports.
	errSelfCall = errors.New("attempted recursive call to ourselves")
)

// causeError is an error in ztunnel's words: prefix, then its cause as ztunnel writes it
// (text: ioText when nil; ioDebug where ztunnel writes the cause's Debug form, h2Text where
// the cause is its HTTP/2 library's error).
type causeError struct {
	prefix string
	err    error
	text   func(error) string
}

func (e *causeError) Error() string {
	if e.text == nil {
		return e.prefix + ioText(e.err)
	}
	return e.prefix + e.text(e.err)
}

func (e *causeError) Unwrap() error { return e.err }

// policyRejection is the error of a connection that policy refused, for reason (the
// policy.Decision's).
func policyRejection(reason string) error {
	return errors.New("connection closed due to policy rejection: " + reason)
}

// connectionFailed is the error of an inbound connection whose application could not be
// connected (ztunnel's ConnectionFailed).
func connectionFailed(err error) error { return &causeError{prefix: "connection failed: ", err: err} }

// ioError is the error of a failed read, write or outbound connect (ztunnel's Io).
func ioError(err error) error { return &causeError{prefix: "io error: ", err: err} }

// networkPolicyError is the error of an HBONE connection whose TCP connect to port 15008
// timed out (response flag NETWORK_POLICY): in a cluster, a NetworkPolicy that drops the
// SYNs is the usual cause.
func networkPolicyError(err error) error {
	return &causeError{prefix: "connection timed out, maybe a NetworkPolicy is blocking HBONE port 15008: ", err: err}
}

// statusError is the error of an HBONE request answered with a status other than 200.
type statusError struct{ *hbone.StatusError }

func (e statusError) Error() string {
	return "http status: " + strconv.Itoa(e.Code) + " " + http.StatusText(e.Code)
}
func (e statusError) Unwrap() error { return e.StatusError }

// ioText writes err as Rust writes the std::io::Error of the same failure: an errno as
// "<strerror> (os error <n>)", a timeout as ETIMEDOUT (ztunnel's connects time out in the
// kernel, ours at the connect deadline), an HBONE stream's reset (resetText) or the protocol
// error its connection ended on as ztunnel's HTTP/2 library writes them, a failure of the TLS
// connection under it as ztunnel's TLS library writes it (tlsFailureOf), anything else as Go
// writes it.
func ioText(err error) string {
	var errno syscall.Errno
	var re *hbone.ResetError
	var pe hbone.ProtocolError
	switch {
	case errors.As(err, &errno) && errno != 0:
		return osErrorText(errno)
	case errors.As(err, &re):
		return resetText(re)
	case errors.As(err, &pe):
		return detectedText(pe)
	case isTimeout(err):
		return osErrorText(syscall.ETIMEDOUT)
	}
	if f, ok := tlsFailureOf(err); ok {
		return f.display()
	}
	return err.Error()
}

// osErrorText is glibc's strerror of e, as Rust's io::Error shows an OS error. Go's texts for
// errnos are glibc's with a lower-case first letter.
func osErrorText(e syscall.Errno) string {
	s := e.Error()
	if c := s[0]; 'a' <= c && c <= 'z' {
		s = string(c-'a'+'A') + s[1:]
	}
	return s + " (os error " + strconv.Itoa(int(e)) + ")"
}

// tlsHandshakeError is the error of a connection to 15008 whose TLS handshake failed, as
// ztunnel's: "tls handshake error: " and then the handshake's std::io::Error as Rust's Debug
// writes one (ioDebug), which is what ztunnel's inbound "connection failed" line says.
func tlsHandshakeError(err error) error {
	return &causeError{prefix: "tls handshake error: ", err: err, text: ioDebug}
}

// ioDebug writes a failed TLS handshake's error as Rust's Debug writes the std::io::Error that
// ztunnel's TLS stack returns for the same failure:
//   - an errno: Os { code: 104, kind: ConnectionReset, message: "Connection reset by peer" };
//   - the peer's end of stream: the "tls handshake eof" of ztunnel's TLS stream;
//   - our handshake deadline (ztunnel has none): Kind(TimedOut);
//   - bytes that are not a TLS record, a certificate the verifier refused, or none, as the TLS
//     library's error inside an InvalidData error: InvalidMessage(InvalidContentType) (or what
//     else that library finds wrong with the record's header: recordHeaderFailure),
//     InvalidCertificate(Revoked), InvalidCertificate(UnknownIssuer), NoCertificatesPresented,
//     InvalidCertificate(ExpiredContext { time: UnixTime(<s>), not_after: UnixTime(<s>) }) and
//     its NotValidYetContext twin;
//   - the peer's alert (a client that refused the proxy's certificate), a record that failed
//     its authentication, and the like, as the TLS library's error (tlsFailureOf):
//     AlertReceived(BadCertificate), DecryptError;
//   - anything else as Go says it, quoted inside an InvalidData error.
func ioDebug(err error) string {
	var errno syscall.Errno
	var unknown x509.UnknownAuthorityError
	var record tls.RecordHeaderError
	var validity *certs.ValidityError
	switch {
	case errors.As(err, &errno) && errno != 0:
		msg := osErrorText(errno)
		msg = msg[:strings.LastIndex(msg, " (os error")]
		return "Os { code: " + strconv.Itoa(int(errno)) + ", kind: " + errorKind(errno) + ", message: " + strconv.Quote(msg) + " }"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return `Custom { kind: UnexpectedEof, error: "tls handshake eof" }`
	case isTimeout(err):
		return "Kind(TimedOut)"
	case errors.As(err, &record):
		if f, ok := recordHeaderFailure(record.RecordHeader); ok {
			return "Custom { kind: InvalidData, error: " + f.debug() + " }"
		}
		return "Custom { kind: InvalidData, error: InvalidMessage(InvalidContentType) }"
	case errors.Is(err, certs.ErrRevoked):
		return "Custom { kind: InvalidData, error: InvalidCertificate(Revoked) }"
	case errors.As(err, &validity):
		// The verifier's time and the certificate's bound, in seconds since the epoch.
		at := strconv.FormatInt(validity.At.Unix(), 10)
		if validity.Expired() {
			return "Custom { kind: InvalidData, error: InvalidCertificate(ExpiredContext { time: UnixTime(" + at +
				"), not_after: UnixTime(" + strconv.FormatInt(validity.NotAfter.Unix(), 10) + ") }) }"
		}
		return "Custom { kind: InvalidData, error: InvalidCertificate(NotValidYetContext { time: UnixTime(" + at +
			"), not_before: UnixTime(" + strconv.FormatInt(validity.NotBefore.Unix(), 10) + ") }) }"
	case errors.As(err, &unknown):
		return "Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }"
	case strings.Contains(err.Error(), "didn't provide a certificate"): // crypto/tls's own, unexported
		return "Custom { kind: InvalidData, error: NoCertificatesPresented }"
	}
	if f, ok := tlsFailureOf(err); ok {
		return "Custom { kind: InvalidData, error: " + f.debug() + " }"
	}
	return "Custom { kind: InvalidData, error: " + strconv.Quote(err.Error()) + " }"
}

// errorKinds are the std::io::ErrorKind names Rust decodes the errnos of sockets into; any
// other is Uncategorized (errorKind).
var errorKinds = map[syscall.Errno]string{
	syscall.ECONNRESET: "ConnectionReset", syscall.ECONNREFUSED: "ConnectionRefused",
	syscall.ECONNABORTED: "ConnectionAborted", syscall.EPIPE: "BrokenPipe",
	syscall.ENOTCONN: "NotConnected", syscall.ETIMEDOUT: "TimedOut",
	syscall.EHOSTUNREACH: "HostUnreachable", syscall.ENETUNREACH: "NetworkUnreachable",
	syscall.ENETDOWN: "NetworkDown", syscall.EADDRINUSE: "AddrInUse",
	syscall.EADDRNOTAVAIL: "AddrNotAvailable", syscall.EAGAIN: "WouldBlock",
	syscall.EINTR: "Interrupted", syscall.EINVAL: "InvalidInput",
	syscall.EACCES: "PermissionDenied", syscall.EPERM: "PermissionDenied",
	syscall.ENOMEM: "OutOfMemory",
}

// errorKind is the std::io::ErrorKind Rust decodes e into.
func errorKind(e syscall.Errno) string {
	if k, ok := errorKinds[e]; ok {
		return k
	}
	return "Uncategorized"
}

// isTimeout reports whether err is a deadline that passed: a socket's (os.ErrDeadlineExceeded),
// a context's or the kernel's (ETIMEDOUT) all say so through net.Error's Timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// outboundFailure is the error and response flag of an outbound connection whose upstream
// could not be connected (err is the dial's or the HBONE pool's):
//   - an HBONE request answered with another status than 200: "http status: <code> <text>";
//   - a failed TLS handshake with the peer: "tls error: <cause>", TLS_FAILURE (ztunnel means
//     this flag for it, though its handshake errors reach the line as io errors, CONNECT);
//   - a pool connection to an HBONE peer that timed out before its TLS handshake failed
//     (hbone.DialError): NETWORK_POLICY;
//   - an HBONE request that its pool connection failed after the connection was up: reset by
//     the peer, refused by its GOAWAY, or lost with the connection before an answer came:
//     "h2 failed: <cause>" in ztunnel's HTTP/2 library's words (h2Text),
//     H2_HANDSHAKE_FAILURE, as ztunnel flags its H2 errors;
//   - any other: "io error: <cause>".
func outboundFailure(err error) (error, string) {
	var se *hbone.StatusError
	var hs *handshakeError
	var de *hbone.DialError
	switch {
	case errors.As(err, &se):
		return statusError{se}, metrics.FlagConnect
	case errors.As(err, &hs):
		return &causeError{prefix: "tls error: ", err: hs}, metrics.FlagTLSFailure
	case errors.As(err, &de):
		if isTimeout(err) {
			return networkPolicyError(err), metrics.FlagNetworkPolicy
		}
	case h2Text(err) != "":
		return &causeError{prefix: "h2 failed: ", err: err, text: h2Text}, metrics.FlagH2Handshake
	}
	return ioError(err), metrics.FlagConnect
}

// h2Text writes the failure of an HBONE request on a pool connection that was up as
// ztunnel's HTTP/2 library writes it, or returns "" for another error:
//   - the peer's reset of the stream (resetText);
//   - the peer's GOAWAY below the stream's id: "connection error received: <reason>";
//   - a protocol error of the peer's that ended the connection: "connection error detected:
//     <reason>";
//   - the connection's socket error, as Rust writes the std::io::Error, or its TLS
//     connection's failure, as ztunnel's TLS library writes it (tlsFailureOf);
//   - the connection's end for any other cause (its peer closed it or went silent): the
//     library's "stream closed because of a broken pipe", as ztunnel's streams end when it
//     drops a connection.
func h2Text(err error) string {
	var re *hbone.ResetError
	var ga hbone.GoAwayError
	var pe hbone.ProtocolError
	var ce *hbone.ConnError
	switch {
	case errors.As(err, &re):
		return resetText(re)
	case errors.As(err, &ga):
		return "connection error received: " + reasonText(ga.Code)
	case errors.As(err, &pe):
		return detectedText(pe)
	case errors.As(err, &ce):
		var errno syscall.Errno
		if errors.As(ce.Err, &errno) && errno != 0 {
			return osErrorText(errno) // the socket's error reaches the streams as it is
		}
		if f, ok := tlsFailureOf(ce.Err); ok {
			return f.display() // and so does the TLS connection's
		}
		return "stream closed because of a broken pipe"
	}
	return ""
}

// detectedText writes a protocol error of the peer's that ended an HBONE connection as
// ztunnel's HTTP/2 library writes the connection error it detected. Its GOAWAY carries no
// debug data, so the library writes only the reason.
func detectedText(pe hbone.ProtocolError) string {
	return "connection error detected: " + reasonText(pe.Code)
}

// relayErr is the error a relayed connection's record ends with (err is the relay's, a
// *netutil.DirError when one direction failed). As ztunnel's copy, it does not report a peer
// that went away ungracefully: a reset, a broken pipe, an unexpected EOF
// (netutil.IsDisconnect), an HBONE stream the peer reset with NO_ERROR, CANCEL or
// STREAM_CLOSED (a client's ztunnel cancels the stream when its client resets), or an HBONE
// connection closed because its peer stopped answering (hbone.ErrPingTimeout,
// hbone.ErrWriteStalled: ztunnel drops such a connection, and its streams end as a broken
// pipe; the connection's log line says why, once). Any other
// failure is written as ztunnel's: "send: " for the client-to-server direction (the Link's
// a to b), "receive: " for the other, then "io error: <cause>"; "while closing connection: "
// goes before both when the half-close at the end failed.
func relayErr(err error) error {
	if err == nil {
		return nil // most relays: and errors.As would put its targets on the heap
	}
	var re *hbone.ResetError
	if netutil.IsDisconnect(err) || errors.As(err, &re) && quietReset(re) || benign(err) == nil ||
		errors.Is(err, hbone.ErrPingTimeout) || errors.Is(err, hbone.ErrWriteStalled) {
		return nil
	}
	var de *netutil.DirError
	if !errors.As(err, &de) {
		return err // the Link was not ended by a direction (see netutil.Ender)
	}
	prefix := "send: io error: "
	if !de.AToB {
		prefix = "receive: io error: "
	}
	if de.Shutdown {
		prefix = "while closing connection: " + prefix
	}
	return &causeError{prefix: prefix, err: de.Err}
}

// quietReset reports whether an HBONE stream's reset is one that ztunnel's relay takes as the
// stream's end (the peer reset it with NO_ERROR, CANCEL or STREAM_CLOSED) or one we sent as we
// closed it ourselves (NO_ERROR, CANCEL).
func quietReset(re *hbone.ResetError) bool {
	switch re.Code {
	case http2.ErrCodeNo, http2.ErrCodeCancel:
		return true
	case http2.ErrCodeStreamClosed:
		return re.Remote
	}
	return false
}

// resetText writes an HBONE stream's reset as ztunnel's HTTP/2 library writes one:
// "stream error received: <reason>" for the peer's, "stream error detected: <reason>" for one
// we sent because the peer broke the protocol.
func resetText(re *hbone.ResetError) string {
	if re.Remote {
		return "stream error received: " + reasonText(re.Code)
	}
	return "stream error detected: " + reasonText(re.Code)
}

// reasonTexts are how ztunnel's HTTP/2 library describes the error codes, by code (RFC 9113,
// section 7; 14 is that library's own keepalive timeout).
var reasonTexts = [...]string{
	http2.ErrCodeNo:                 "not a result of an error",
	http2.ErrCodeProtocol:           "unspecific protocol error detected",
	http2.ErrCodeInternal:           "unexpected internal error encountered",
	http2.ErrCodeFlowControl:        "flow-control protocol violated",
	http2.ErrCodeSettingsTimeout:    "settings ACK not received in timely manner",
	http2.ErrCodeStreamClosed:       "received frame when stream half-closed",
	http2.ErrCodeFrameSize:          "frame with invalid size",
	http2.ErrCodeRefusedStream:      "refused stream before processing any application logic",
	http2.ErrCodeCancel:             "stream no longer needed",
	http2.ErrCodeCompression:        "unable to maintain the header compression context",
	http2.ErrCodeConnect:            "connection established in response to a CONNECT request was reset or abnormally closed",
	http2.ErrCodeEnhanceYourCalm:    "detected excessive load generating behavior",
	http2.ErrCodeInadequateSecurity: "security properties do not meet minimum requirements",
	http2.ErrCodeHTTP11Required:     "endpoint requires HTTP/1.1",
	14:                              "keepalive timeout reached",
}

// reasonText is reasonTexts' description of code, "unknown reason" for a code it lacks.
func reasonText(code http2.ErrCode) string {
	if int(code) < len(reasonTexts) {
		return reasonTexts[code]
	}
	return "unknown reason"
}
