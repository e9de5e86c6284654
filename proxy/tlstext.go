package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"reflect"
	"strconv"

	tlsrec "github.com/ztunnel-go/ztunnel/tls/record"
)

// A TLS connection that fails after its handshake, or during it for another reason than the
// peer's certificate, reaches the access log through the error of ztunnel's TLS library
// (rustls): its Display inside a relay's "io error: ", its Debug inside the inbound
// "tls handshake error: ". tlsFailure is that error, for the failures that crypto/tls (the
// handshake) and our record layer (tls/record, the records after it) report in a form that
// says which one it was.

// tlsFailure is a rustls error: variant is its name, arg its argument's Debug form ("" for a
// variant without one).
type tlsFailure struct {
	variant string
	arg     string
}

// display writes f as rustls' Display does.
func (f tlsFailure) display() string {
	switch f.variant {
	case "AlertReceived":
		return "received fatal alert: " + f.arg
	case "DecryptError":
		return "cannot decrypt peer's message"
	case "PeerSentOversizedRecord":
		return "peer sent excess record size"
	case "PeerMisbehaved":
		return "peer misbehaved: " + f.arg
	}
	return "received corrupt message of type " + f.arg // InvalidMessage
}

// debug writes f as Rust's derived Debug does.
func (f tlsFailure) debug() string {
	if f.arg == "" {
		return f.variant
	}
	return f.variant + "(" + f.arg + ")"
}

// tlsFailureOf reports the rustls error of the same failure as err, an error of crypto/tls
// or of our record layer:
//   - an alert from the peer: AlertReceived(<description>);
//   - a record whose authentication failed (answered with bad_record_mac): DecryptError;
//   - a record whose plaintext is longer than TLS allows (answered with record_overflow):
//     PeerSentOversizedRecord;
//   - a record refused for its header: what rustls' check of the same header says
//     (recordHeaderFailure); a header rustls lets through that our record layer refuses (a
//     content type or version that a TLS 1.3 record after the handshake does not have, a
//     record too short for its tag) is one whose authentication rustls then fails, as its
//     header is authenticated data: DecryptError;
//   - a record whose plaintext is all padding: PeerMisbehaved(IllegalTlsInnerPlaintext);
//   - another record between the parts of a handshake message:
//     PeerMisbehaved(MessageInterleavedWithHandshakeMessage);
//   - a record of a content type that rustls does not know either:
//     InvalidMessage(InvalidContentType).
//
// It returns false for any other error, crypto/tls' or the record layer's own words being
// the closest then.
func tlsFailureOf(err error) (tlsFailure, bool) {
	var ae *tlsrec.AlertError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &ae):
		return recordFailure(ae)
	case errors.As(err, &rh):
		return recordHeaderFailure(rh.RecordHeader)
	}
	code, remote, ok := alertOf(err)
	switch {
	case !ok:
		return tlsFailure{}, false
	case remote:
		return tlsFailure{variant: "AlertReceived", arg: alertName(code)}, true
	}
	switch code { // crypto/tls says no more than the alert it sent
	case alertBadRecordMAC:
		return tlsFailure{variant: "DecryptError"}, true
	case alertRecordOverflow:
		return tlsFailure{variant: "PeerSentOversizedRecord"}, true
	}
	return tlsFailure{}, false
}

// recordFailure is tlsFailureOf for an alert of our record layer's.
func recordFailure(ae *tlsrec.AlertError) (tlsFailure, bool) {
	if ae.Remote {
		return tlsFailure{variant: "AlertReceived", arg: alertName(ae.Desc)}, true
	}
	switch ae.Fault {
	case tlsrec.FaultHeader:
		if f, ok := recordHeaderFailure(ae.Header); ok {
			return f, true
		}
		return tlsFailure{variant: "DecryptError"}, true
	case tlsrec.FaultAuthentication:
		return tlsFailure{variant: "DecryptError"}, true
	case tlsrec.FaultOverflow:
		return tlsFailure{variant: "PeerSentOversizedRecord"}, true
	case tlsrec.FaultNoContentType:
		return tlsFailure{variant: "PeerMisbehaved", arg: "IllegalTlsInnerPlaintext"}, true
	case tlsrec.FaultInterleaved:
		return tlsFailure{variant: "PeerMisbehaved", arg: "MessageInterleavedWithHandshakeMessage"}, true
	case tlsrec.FaultContentType:
		if ae.Type < 20 || ae.Type > 23 { // rustls has no use for a heartbeat (24) either
			return tlsFailure{variant: "InvalidMessage", arg: "InvalidContentType"}, true
		}
	}
	return tlsFailure{}, false
}

// alertOf returns the TLS alert that err, a crypto/tls error, reports: crypto/tls writes one
// it received as a *net.OpError "remote error" and one it sent as a "local error", each
// around a value of its unexported alert type (a uint8, read here by reflection) or of the
// exported tls.AlertError.
func alertOf(err error) (code uint8, remote, ok bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" && op.Op != "local error" || op.Err == nil {
		return 0, false, false
	}
	v := reflect.ValueOf(op.Err)
	if v.Kind() != reflect.Uint8 || v.Type().PkgPath() != "crypto/tls" {
		return 0, false, false
	}
	return uint8(v.Uint()), op.Op == "remote error", true
}

// The TLS alerts (RFC 8446, section 6) that name a failure of their own.
const (
	alertBadRecordMAC   = 20
	alertRecordOverflow = 22
)

// alertNames are the names of rustls' AlertDescription, by code (rustls 0.23, as ztunnel
// builds with it).
var alertNames = map[uint8]string{
	0: "CloseNotify", 10: "UnexpectedMessage", 20: "BadRecordMac", 21: "DecryptionFailed",
	22: "RecordOverflow", 30: "DecompressionFailure", 40: "HandshakeFailure", 41: "NoCertificate",
	42: "BadCertificate", 43: "UnsupportedCertificate", 44: "CertificateRevoked",
	45: "CertificateExpired", 46: "CertificateUnknown", 47: "IllegalParameter", 48: "UnknownCA",
	49: "AccessDenied", 50: "DecodeError", 51: "DecryptError", 60: "ExportRestriction",
	70: "ProtocolVersion", 71: "InsufficientSecurity", 80: "InternalError",
	86: "InappropriateFallback", 90: "UserCanceled", 100: "NoRenegotiation",
	109: "MissingExtension", 110: "UnsupportedExtension", 111: "CertificateUnobtainable",
	112: "UnrecognisedName", 113: "BadCertificateStatusResponse", 114: "BadCertificateHashValue",
	115: "UnknownPSKIdentity", 116: "CertificateRequired", 120: "NoApplicationProtocol",
	121: "EncryptedClientHelloRequired",
}

// alertName is the Debug form of rustls' AlertDescription for code.
func alertName(code uint8) string {
	if n, ok := alertNames[code]; ok {
		return n
	}
	return "AlertDescription(0x" + strconv.FormatUint(uint64(code), 16) + ")"
}

// The bounds of a TLS record's length: rustls refuses a header that announces maxPayload or
// more, crypto/tls one that announces more than maxCiphertext (RFC 8446, section 5.2).
const (
	maxPayload    = 16384 + 2048
	maxCiphertext = 16384 + 256
)

// recordHeaderFailure is what rustls finds wrong with the record header hdr, checked in its
// order: a content type it does not know, a version it does not know whose high byte is not
// 3, an empty record of another type than application data, a length of maxPayload or more.
// A header rustls would accept is a record crypto/tls refused for its length alone (rustls
// refuses such a record once decrypted: PeerSentOversizedRecord) or for a version of TLS's
// other than the connection's (rustls ignores it: false, crypto/tls' words stand).
func recordHeaderFailure(hdr [5]byte) (tlsFailure, bool) {
	typ, version, n := hdr[0], uint16(hdr[1])<<8|uint16(hdr[2]), int(hdr[3])<<8|int(hdr[4])
	invalid := func(why string) (tlsFailure, bool) {
		return tlsFailure{variant: "InvalidMessage", arg: why}, true
	}
	switch {
	case typ < 20 || typ > 24: // change_cipher_spec, alert, handshake, application_data, heartbeat
		return invalid("InvalidContentType")
	case version>>8 != 3 && !knownVersions[version]:
		return invalid("UnknownProtocolVersion")
	case typ != 23 && n == 0:
		return invalid("InvalidEmptyPayload")
	case n >= maxPayload:
		return invalid("MessageTooLarge")
	case n > maxCiphertext:
		return tlsFailure{variant: "PeerSentOversizedRecord"}, true
	}
	return tlsFailure{}, false
}

// knownVersions are the record versions rustls names without a high byte of 3 (SSLv2 and
// DTLS's), which its header check lets through.
var knownVersions = map[uint16]bool{0x0002: true, 0xfeff: true, 0xfefd: true, 0xfefc: true}
