package record

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"net"
)

// Handshake runs crypto/tls's handshake over conn, as a server when server
// is true, and returns the connection to use from then on with the
// negotiated state:
//   - a *Conn, this package's record layer, for TLS 1.3 with an AES-GCM
//     suite (the suites ztunnel offers);
//   - otherwise the *tls.Conn itself (TLS 1.2, ChaCha20-Poly1305).
//
// A *Conn keeps no copy of the state: the caller takes what it needs (the
// peer's identity) from the one returned, and the parsed certificate chain
// and the handshake's secrets it refers to do not stay alive with every
// connection (3.7 KiB in 34 objects per server-side HBONE connection).
//
// cfg (and on a server the Config its GetConfigForClient picks) is cloned
// and the clone's KeyLogWriter captures the traffic secrets (a
// KeyLogWriter already set still receives every line). Session tickets are
// off: a server's would be sealed under the traffic key before this
// package takes over, and a client does not resume.
//
// On error the caller closes conn.
func Handshake(ctx context.Context, conn net.Conn, cfg *tls.Config, server bool) (net.Conn, tls.ConnectionState, error) {
	sec := &secrets{}
	c := forHandshake(cfg, sec)
	if get := cfg.GetConfigForClient; server && get != nil {
		// The Config a server picks per client (per local workload in
		// ztunnel) gets the same treatment.
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			picked, err := get(hello)
			if picked == nil || err != nil {
				return picked, err
			}
			return forHandshake(picked, sec), nil
		}
	}
	br := &boundaryReader{Conn: conn}
	var tc *tls.Conn
	if server {
		tc = tls.Server(br, c)
	} else {
		tc = tls.Client(br, c)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, tls.ConnectionState{}, err
	}
	cs := tc.ConnectionState()
	s, ok := suites[cs.CipherSuite]
	client, srv := sec.get()
	if cs.Version != tls.VersionTLS13 || !ok || client == nil || srv == nil || !br.atBoundary() {
		br.passThrough()
		return tc, cs, nil
	}
	read, write := srv, client
	if server {
		read, write = client, srv
	}
	rc, err := newConn(conn, s, read, write, server)
	if err != nil {
		return nil, tls.ConnectionState{}, err
	}
	return rc, cs, nil
}

// forHandshake returns a copy of cfg whose key log fills sec and, for a
// server, that sends no session tickets: crypto/tls would seal them under
// the traffic key, behind this package's back.
func forHandshake(cfg *tls.Config, sec *secrets) *tls.Config {
	c := cfg.Clone()
	c.KeyLogWriter = &keyLog{next: cfg.KeyLogWriter, s: sec}
	c.SessionTicketsDisabled = true
	return c
}

// boundaryReader sits under crypto/tls during the handshake and never
// returns bytes past the end of the record crypto/tls is reading, so that
// when the handshake completes nothing of what follows is left in
// crypto/tls's buffers: the record layer reads it from the socket. It costs
// two reads per handshake record. After the handshake it passes reads
// through (when crypto/tls keeps the connection).
//
// It needs no lock: the handshake's reads, atBoundary and passThrough all
// run on Handshake's goroutine, which then hands the connection over.
type boundaryReader struct {
	net.Conn

	pass bool
	hdr  [recordHeaderLen]byte
	hn   int // header bytes of the current record read so far
	left int // body bytes of the current record still to read
}

func (b *boundaryReader) Read(p []byte) (int, error) {
	if b.pass || len(p) == 0 {
		return b.Conn.Read(p)
	}
	if b.left > 0 {
		n, err := b.Conn.Read(p[:min(len(p), b.left)])
		b.left -= n
		return n, err
	}
	n, err := b.Conn.Read(p[:min(len(p), recordHeaderLen-b.hn)])
	b.hn += copy(b.hdr[b.hn:], p[:n])
	if b.hn == recordHeaderLen {
		b.hn = 0
		b.left = int(binary.BigEndian.Uint16(b.hdr[3:]))
	}
	return n, err
}

// atBoundary reports whether crypto/tls stopped at the end of a record.
func (b *boundaryReader) atBoundary() bool {
	return b.hn == 0 && b.left == 0
}

func (b *boundaryReader) passThrough() { b.pass = true }

// NetConn returns the wrapped conn, so socket options can be reached.
func (b *boundaryReader) NetConn() net.Conn { return b.Conn }
