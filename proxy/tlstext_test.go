package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	tlsrec "github.com/ztunnel-go/ztunnel/tls/record"
)

// tamperConn corrupts one TLS record that crosses it once armed: the last byte of the next
// write (crypto/tls writes a record in one call after its handshake, so that is the record's
// authentication tag), or of the bytes the next read returns.
type tamperConn struct {
	net.Conn
	write, read atomic.Bool
}

func (c *tamperConn) Write(p []byte) (int, error) {
	if len(p) > 0 && c.write.CompareAndSwap(true, false) {
		q := append([]byte(nil), p...)
		q[len(q)-1] ^= 0xff
		return c.Conn.Write(q)
	}
	return c.Conn.Write(p)
}

func (c *tamperConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.read.CompareAndSwap(true, false) {
		p[n-1] ^= 0xff
	}
	return n, err
}

// TestRelayTLSFailureIsZtunnels: a relay whose HBONE connection's TLS fails under it ends as
// ztunnel's does, with its TLS library's words: a record from the peer that fails its
// authentication is "cannot decrypt peer's message" (and the proxy answers it with the alert
// bad_record_mac), the peer's fatal alert is "received fatal alert: <name>".
func TestRelayTLSFailureIsZtunnels(t *testing.T) {
	for _, c := range []struct {
		name string
		// corrupt arms the waypoint's tamperConn and makes a record cross it.
		corrupt func(fr *http2.Framer, id uint32, tc *tamperConn) error
		peer    string // the waypoint's error on reading next, in crypto/tls' words
		orEOF   bool   // or EOF: the proxy's alert is a courtesy that a busy writer skips
		want    string
	}{
		{"the peer's record fails authentication", func(fr *http2.Framer, id uint32, tc *tamperConn) error {
			tc.write.Store(true)
			return fr.WriteData(id, false, []byte("x"))
		}, "remote error: tls: bad record MAC", true, "receive: io error: cannot decrypt peer's message"},
		{"the peer's alert", func(fr *http2.Framer, id uint32, tc *tamperConn) error {
			tc.read.Store(true) // the proxy's answer to the PING
			return fr.WritePing(false, [8]byte{1})
		}, "local error: tls: bad record MAC", false, "receive: io error: received fatal alert: BadRecordMac"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			peer := make(chan error, 1)
			tamperWaypoint(t, e, func(fr *http2.Framer, id uint32, tc *tamperConn, _ <-chan struct{}) {
				if !answerThenRead(t, fr, id) { // then the corruption
					return
				}
				if err := c.corrupt(fr, id, tc); err != nil {
					t.Errorf("corrupting a record: %v", err)
					return
				}
				for {
					if _, err := fr.ReadFrame(); err != nil {
						peer <- err
						return
					}
				}
			})

			local := helloViaWaypoint(t, e, c.name)
			select {
			case err := <-peer:
				if err.Error() != c.peer && !(c.orEOF && err == io.EOF) {
					t.Errorf("the waypoint's read: %v, want %s", err, c.peer)
				}
			case <-time.After(5 * time.Second):
				t.Error("the waypoint's connection did not end")
			}
			waitLog(t, e.access, "level=ERROR", "connection complete", "src.addr="+local, "bytes_sent=5",
				`error="`+c.want+`"`)
		})
	}
}

// TestInboundRelayTLSFailureIsZtunnels: an inbound relay whose client's TLS record fails its
// authentication ends as ztunnel's, "cannot decrypt peer's message", in the direction that
// read it (the client's to the application's), and the client gets the alert.
func TestInboundRelayTLSFailureIsZtunnels(t *testing.T) {
	e := newEnv(t)
	var tamper *tamperConn
	cc, err := e.hboneClientOver(t, serverIP, func(c net.Conn) net.Conn {
		tamper = &tamperConn{Conn: c}
		return tamper
	}, clientID, serverID)
	if err != nil {
		t.Fatal(err)
	}
	s, err := connect(cc, netip.AddrPortFrom(serverIP, e.appPort).String())
	if err != nil {
		t.Fatalf("CONNECT: %v", err)
	}
	if _, err := s.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, make([]byte, 4)); err != nil {
		t.Fatalf("echo: %v", err)
	}
	tamper.write.Store(true)
	s.Write([]byte("more"))
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(s)
	// The proxy's alert, or the end of the connection when its writer was busy at that moment
	// (the alert is a courtesy that never waits).
	if code, remote, ok := alertOf(err); !(ok && remote && code == alertBadRecordMAC) && (err == nil || !errors.Is(err, io.EOF)) {
		t.Errorf("the client's stream ended with %v, want the proxy's alert bad_record_mac", err)
	}
	waitLog(t, e.access, "level=ERROR", "connection complete", "direction=inbound",
		"src.addr="+tamper.LocalAddr().String(), "bytes_recv=4",
		`error="send: io error: cannot decrypt peer's message"`)
}

// TestTLSFailureOf checks the failures that no connection here produces: the alerts by name,
// and each of rustls' refusals of a record header.
func TestTLSFailureOf(t *testing.T) {
	remote := func(a tls.AlertError) error {
		return fmt.Errorf("read: %w", &net.OpError{Op: "remote error", Err: a})
	}
	local := func(a tls.AlertError) error { return &net.OpError{Op: "local error", Err: a} }
	header := func(h ...byte) error { return tls.RecordHeaderError{Msg: "refused", RecordHeader: [5]byte(h)} }
	for _, c := range []struct {
		err          error
		display, dbg string // "" when rustls has no error of its own for it
	}{
		{remote(42), "received fatal alert: BadCertificate", "AlertReceived(BadCertificate)"},
		{remote(48), "received fatal alert: UnknownCA", "AlertReceived(UnknownCA)"},
		{remote(116), "received fatal alert: CertificateRequired", "AlertReceived(CertificateRequired)"},
		{remote(0xee), "received fatal alert: AlertDescription(0xee)", "AlertReceived(AlertDescription(0xee))"},
		{local(20), "cannot decrypt peer's message", "DecryptError"},
		{local(22), "peer sent excess record size", "PeerSentOversizedRecord"},
		{local(10), "", ""}, // unexpected message: rustls has several errors for it
		{&net.OpError{Op: "read", Err: tls.AlertError(20)}, "", ""},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: bad record MAC")}, "", ""},
		{header('G', 'E', 'T', ' ', '/'), "received corrupt message of type InvalidContentType",
			"InvalidMessage(InvalidContentType)"},
		{header(23, 5, 1, 0, 20), "received corrupt message of type UnknownProtocolVersion",
			"InvalidMessage(UnknownProtocolVersion)"},
		{header(23, 0xfe, 0xfd, 0x48, 0), "received corrupt message of type MessageTooLarge",
			"InvalidMessage(MessageTooLarge)"}, // a DTLS version rustls knows
		{header(21, 3, 3, 0, 0), "received corrupt message of type InvalidEmptyPayload",
			"InvalidMessage(InvalidEmptyPayload)"},
		{header(23, 3, 3, 0x48, 0), "received corrupt message of type MessageTooLarge",
			"InvalidMessage(MessageTooLarge)"},
		{header(23, 3, 3, 0x41, 1), "peer sent excess record size", "PeerSentOversizedRecord"},
		{header(23, 3, 1, 0, 20), "", ""}, // a version rustls lets through
		// Our record layer's, after the handshake.
		{&tlsrec.AlertError{Desc: 42, Remote: true}, "received fatal alert: BadCertificate", "AlertReceived(BadCertificate)"},
		{fmt.Errorf("hbone: connection closed: %w", &tlsrec.AlertError{Desc: 20, Fault: tlsrec.FaultAuthentication}),
			"cannot decrypt peer's message", "DecryptError"},
		{&tlsrec.AlertError{Desc: 22, Fault: tlsrec.FaultOverflow}, "peer sent excess record size", "PeerSentOversizedRecord"},
		{&tlsrec.AlertError{Desc: 10, Fault: tlsrec.FaultNoContentType},
			"peer misbehaved: IllegalTlsInnerPlaintext", "PeerMisbehaved(IllegalTlsInnerPlaintext)"},
		{&tlsrec.AlertError{Desc: 10, Fault: tlsrec.FaultInterleaved},
			"peer misbehaved: MessageInterleavedWithHandshakeMessage", "PeerMisbehaved(MessageInterleavedWithHandshakeMessage)"},
		{&tlsrec.AlertError{Desc: 10, Fault: tlsrec.FaultContentType, Type: 24},
			"received corrupt message of type InvalidContentType", "InvalidMessage(InvalidContentType)"},
		{&tlsrec.AlertError{Desc: 10, Fault: tlsrec.FaultContentType, Type: 0x47},
			"received corrupt message of type InvalidContentType", "InvalidMessage(InvalidContentType)"},
		{&tlsrec.AlertError{Desc: 10, Fault: tlsrec.FaultContentType, Type: 20}, "", ""}, // rustls: a misplaced message
		{&tlsrec.AlertError{Desc: 20}, "", ""},                                           // no fault named
		{&tlsrec.AlertError{Desc: 10, Fault: tlsrec.FaultHeader, Header: [5]byte{0x47, 0x45, 0x54, 0x20, 0x2f}},
			"received corrupt message of type InvalidContentType", "InvalidMessage(InvalidContentType)"},
		{&tlsrec.AlertError{Desc: 22, Fault: tlsrec.FaultHeader, Header: [5]byte{23, 3, 3, 0x50, 0}},
			"received corrupt message of type MessageTooLarge", "InvalidMessage(MessageTooLarge)"},
		{&tlsrec.AlertError{Desc: 10, Fault: tlsrec.FaultHeader, Header: [5]byte{22, 3, 3, 0, 20}}, // rustls decrypts it
			"cannot decrypt peer's message", "DecryptError"},
		{&tlsrec.AlertError{Desc: 50, Fault: tlsrec.FaultHeader, Header: [5]byte{23, 3, 3, 0, 16}},
			"cannot decrypt peer's message", "DecryptError"},
		{&tlsrec.AlertError{Desc: 10}, "", ""},
	} {
		f, ok := tlsFailureOf(c.err)
		switch {
		case c.display == "" && ok:
			t.Errorf("tlsFailureOf(%v) = %s, want none", c.err, f.debug())
		case c.display != "" && (!ok || f.display() != c.display || f.debug() != c.dbg):
			t.Errorf("tlsFailureOf(%v) = %q, %q, %v; want %q, %q", c.err, f.display(), f.debug(), ok, c.display, c.dbg)
		}
	}
}
