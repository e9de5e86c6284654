package proxy

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"syscall"

	"golang.org/x/net/http2"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/netutil"
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
// (ioText).
type causeError struct {
	prefix string
	err    error
}

func (e *causeError) Error() string { return e.prefix + ioText(e.err) }
func (e *causeError) Unwrap() error { return e.err }

// policyRejection is the error of a connection that policy refused, for reason (the
// policy.Decision's).
func policyRejection(reason string) error {
	return errors.New("connection closed due to policy rejection: " + reason)
}

// connectionFailed is the error of an inbound connection whose application could not be
// connected (ztunnel's ConnectionFailed).
func connectionFailed(err error) error { return &causeError{"connection failed: ", err} }

// ioError is the error of a failed read, write or outbound connect (ztunnel's Io).
func ioError(err error) error { return &causeError{"io error: ", err} }

// networkPolicyError is the error of an HBONE connection whose TCP connect to port 15008
// timed out (response flag NETWORK_POLICY): in a cluster, a NetworkPolicy that drops the
// SYNs is the usual cause.
func networkPolicyError(err error) error {
	return &causeError{"connection timed out, maybe a NetworkPolicy is blocking HBONE port 15008: ", err}
}

// statusError is the error of an HBONE request answered with a status other than 200.
type statusError struct{ *hbone.StatusError }

func (e statusError) Error() string {
	return "http status: " + strconv.Itoa(e.Code) + " " + http.StatusText(e.Code)
}
func (e statusError) Unwrap() error { return e.StatusError }

// ioText writes err as Rust writes the std::io::Error of the same failure: an errno as
// "<strerror> (os error <n>)", a timeout as ETIMEDOUT (ztunnel's connects time out in the
// kernel, ours at the connect deadline), anything else as Go writes it.
func ioText(err error) string {
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno) && errno != 0:
		return osErrorText(errno)
	case isTimeout(err):
		return osErrorText(syscall.ETIMEDOUT)
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
//   - any other: "io error: <cause>".
func outboundFailure(err error) (error, string) {
	var se *hbone.StatusError
	var hs *handshakeError
	var de *hbone.DialError
	switch {
	case errors.As(err, &se):
		return statusError{se}, metrics.FlagConnect
	case errors.As(err, &hs):
		return &causeError{"tls error: ", hs}, metrics.FlagTLSFailure
	case errors.As(err, &de) && isTimeout(err):
		return networkPolicyError(err), metrics.FlagNetworkPolicy
	}
	return ioError(err), metrics.FlagConnect
}

// relayErr is the error a relayed connection's record ends with (err is the relay's). A peer
// that went away ungracefully during the relay is not an error, as ztunnel's copy does not
// report one: a reset, a broken pipe, an unexpected EOF (netutil.IsDisconnect), or an HBONE
// stream that the client's ztunnel cancelled because its client reset.
func relayErr(err error) error {
	if err == nil {
		return nil // most relays: and errors.As would put re on the heap
	}
	var re *hbone.ResetError
	if netutil.IsDisconnect(err) || errors.As(err, &re) && re.Remote && re.Code == http2.ErrCodeCancel {
		return nil
	}
	return benign(err)
}
