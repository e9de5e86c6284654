package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/tls/certs/certtest"
	"github.com/ztunnel-go/ztunnel/tls/identity"
)

var (
	serverID = identity.ID{TrustDomain: "cluster.local", Namespace: "ns-b", ServiceAccount: "server"}
	clientID = identity.ID{TrustDomain: "cluster.local", Namespace: "ns-a", ServiceAccount: "client"}
)

// serverResult is what the server side of one connection saw.
type serverResult struct {
	handshakeErr error
	peer         identity.ID
	peerErr      error
	got          []byte // application bytes received
	alpn         string
	state        tls.ConnectionState
}

// clientResult is what the client side saw.
type clientResult struct {
	handshakeErr error
	peer         identity.ID
	peerErr      error
	got          []byte // application bytes received
	readErr      error
	state        tls.ConnectionState
}

// serveOne listens on loopback and serves one TLS connection with cfg: after
// the handshake it reads "hello" and answers "world".
func serveOne(t *testing.T, cfg *tls.Config) (string, <-chan serverResult) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan serverResult, 1)
	go func() {
		defer ln.Close()
		var r serverResult
		defer func() { res <- r }()
		raw, err := ln.Accept()
		if err != nil {
			r.handshakeErr = err
			return
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		conn := tls.Server(raw, cfg)
		if err := conn.HandshakeContext(context.Background()); err != nil {
			r.handshakeErr = err
			// Whatever the client sent must not be readable as data.
			n, _ := conn.Read(make([]byte, 16))
			if n > 0 {
				r.got = []byte("after a failed handshake")
			}
			return
		}
		r.state = conn.ConnectionState()
		r.alpn = r.state.NegotiatedProtocol
		r.peer, r.peerErr = PeerID(r.state)
		buf := make([]byte, 5)
		n, _ := io.ReadFull(conn, buf)
		r.got = buf[:n]
		if n == 5 {
			conn.Write([]byte("world"))
		}
	}()
	return ln.Addr().String(), res
}

// dialOne connects to addr with cfg, sends "hello" and reads the answer.
func dialOne(t *testing.T, addr string, cfg *tls.Config) clientResult {
	t.Helper()
	var r clientResult
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	conn := tls.Client(raw, cfg)
	if err := conn.Handshake(); err != nil {
		r.handshakeErr = err
		return r
	}
	r.state = conn.ConnectionState()
	r.peer, r.peerErr = PeerID(r.state)
	if _, err := conn.Write([]byte("hello")); err != nil {
		r.readErr = err
		return r
	}
	buf := make([]byte, 5)
	n, err := io.ReadFull(conn, buf)
	r.got, r.readErr = buf[:n], err
	return r
}

// fakeCAManager returns a Manager backed by a fresh fake CA.
func fakeCAManager(t *testing.T, opts ManagerOptions) *Manager {
	t.Helper()
	ca, err := NewFakeCA("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ca, opts)
	t.Cleanup(func() { m.Close() })
	return m
}

// dirCAManager returns a Manager backed by a LocalCA loaded from a directory
// written for root → intermediate, and the test CA so tests can mint their
// own certificates under the same root.
func dirCAManager(t *testing.T, opts ManagerOptions) (*Manager, *certtest.CA) {
	t.Helper()
	inter := certtest.NewCA(t, "root").NewIntermediate(t, "intermediate")
	dir := t.TempDir()
	inter.WriteCACerts(t, dir, true)
	ca, err := LoadLocalCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ca, opts)
	t.Cleanup(func() { m.Close() })
	return m, inter
}

func clientConfig(t *testing.T, m *Manager, src identity.ID, expected ...identity.ID) *tls.Config {
	t.Helper()
	cfg, err := m.ClientConfig(context.Background(), src, expected)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestHandshake(t *testing.T) {
	m, _ := dirCAManager(t, ManagerOptions{})
	addr, res := serveOne(t, m.ServerConfig(serverID))
	other := identity.ID{TrustDomain: "cluster.local", Namespace: "x", ServiceAccount: "y"}
	c := dialOne(t, addr, clientConfig(t, m, clientID, other, serverID))
	s := <-res
	if c.handshakeErr != nil || c.readErr != nil || s.handshakeErr != nil {
		t.Fatalf("client %v / %v, server %v", c.handshakeErr, c.readErr, s.handshakeErr)
	}
	if string(s.got) != "hello" || string(c.got) != "world" {
		t.Errorf("server got %q, client got %q", s.got, c.got)
	}
	if c.peerErr != nil || c.peer != serverID {
		t.Errorf("client PeerID = %v, %v; want %v", c.peer, c.peerErr, serverID)
	}
	if s.peerErr != nil || s.peer != clientID {
		t.Errorf("server PeerID = %v, %v; want %v", s.peer, s.peerErr, clientID)
	}
	if c.state.Version != tls.VersionTLS13 || s.alpn != "h2" || c.state.NegotiatedProtocol != "h2" {
		t.Errorf("version %x, ALPN %q/%q; want TLS 1.3 and h2", c.state.Version, s.alpn, c.state.NegotiatedProtocol)
	}
	if c.state.ServerName != "" || s.state.ServerName != "" {
		t.Errorf("SNI %q/%q, want none", c.state.ServerName, s.state.ServerName)
	}
	// The intermediate travels in the chain, the root does not.
	if got := len(s.state.PeerCertificates); got != 2 {
		t.Errorf("client presented %d certificates, want leaf and intermediate", got)
	}
}

func TestTwoCAsFromSameDirTrustEachOther(t *testing.T) {
	dir := t.TempDir()
	certtest.NewCA(t, "root").NewIntermediate(t, "intermediate").WriteCACerts(t, dir, true)
	var ms [2]*Manager
	for i := range ms {
		ca, err := LoadLocalCA(dir)
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = NewManager(ca, ManagerOptions{})
		defer ms[i].Close()
	}
	for _, dir := range [][2]*Manager{{ms[0], ms[1]}, {ms[1], ms[0]}} {
		addr, res := serveOne(t, dir[0].ServerConfig(serverID))
		c := dialOne(t, addr, clientConfig(t, dir[1], clientID, serverID))
		s := <-res
		if c.handshakeErr != nil || c.readErr != nil || s.handshakeErr != nil || s.peer != clientID || c.peer != serverID {
			t.Fatalf("cross-process handshake: client %v/%v peer %v, server %v peer %v", c.handshakeErr, c.readErr, c.peer, s.handshakeErr, s.peer)
		}
	}
}

func TestHandshakeRefused(t *testing.T) {
	m, ca := dirCAManager(t, ManagerOptions{})
	stranger := fakeCAManager(t, ManagerOptions{})
	now := time.Now()
	expiredClient := ca.IssueLeaf(t, clientID, now.Add(-2*time.Hour), now.Add(-time.Hour))
	expiredServer := ca.IssueLeaf(t, serverID, now.Add(-2*time.Hour), now.Add(-time.Hour))
	validClient := ca.IssueLeaf(t, clientID, now.Add(-time.Hour), now.Add(time.Hour))
	validServer := ca.IssueLeaf(t, serverID, now.Add(-time.Hour), now.Add(time.Hour))
	otherTD := identity.ID{TrustDomain: "other.td", Namespace: "ns-a", ServiceAccount: "client"}

	// plainClient is a client that verifies nothing itself, so that the
	// server's checks are the ones exercised.
	plainClient := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS13, Certificates: certs}
	}
	tests := []struct {
		name    string
		server  func() *tls.Config
		client  func() *tls.Config
		wantErr string // expected in the client's or the server's error
	}{
		{"client without certificate", func() *tls.Config { return m.ServerConfig(serverID) },
			func() *tls.Config { return plainClient() }, "didn't provide a certificate"},
		{"client from another trust domain", func() *tls.Config { return m.ServerConfig(serverID) },
			func() *tls.Config { return clientConfig(t, m, otherTD, serverID) }, `not in trust domain "cluster.local"`},
		{"server identity not expected", func() *tls.Config { return m.ServerConfig(serverID) },
			func() *tls.Config { return clientConfig(t, m, clientID, clientID) },
			"server identity " + serverID.String() + " is not an expected identity (want " + clientID.String() + ")"},
		{"expired client certificate", func() *tls.Config { return m.ServerConfig(serverID) },
			func() *tls.Config { return plainClient(expiredClient) }, "expired"},
		{"expired server certificate", func() *tls.Config {
			return &tls.Config{Certificates: []tls.Certificate{expiredServer}, NextProtos: []string{"h2"}}
		}, func() *tls.Config { return clientConfig(t, m, clientID, serverID) }, "expired"},
		{"client with an untrusted root", func() *tls.Config { return m.ServerConfig(serverID) },
			func() *tls.Config { return clientConfig(t, stranger, clientID, serverID) }, "unknown authority"},
		{"server with an untrusted root", func() *tls.Config { return stranger.ServerConfig(serverID) },
			func() *tls.Config { return clientConfig(t, m, clientID, serverID) }, "unknown authority"},
		{"client offers only http/1.1", func() *tls.Config { return m.ServerConfig(serverID) },
			func() *tls.Config {
				c := plainClient(validClient)
				c.NextProtos = []string{"http/1.1"}
				return c
			}, `client offered ALPN ["http/1.1"]`},
		{"client offers another ALPN", func() *tls.Config { return m.ServerConfig(serverID) },
			func() *tls.Config {
				c := plainClient(validClient)
				c.NextProtos = []string{"spdy/3"}
				return c
			}, `client offered ALPN ["spdy/3"]`},
		{"ALPN mismatch seen by our client", func() *tls.Config {
			return &tls.Config{Certificates: []tls.Certificate{validServer}, NextProtos: []string{"http/1.1"}}
		}, func() *tls.Config { return clientConfig(t, m, clientID, serverID) }, "no application protocol"},
		{"server selects no ALPN", func() *tls.Config {
			c := m.ServerConfig(serverID)
			c.NextProtos = nil
			return c
		}, func() *tls.Config { return clientConfig(t, m, clientID, serverID) }, `negotiated ALPN ""`},
		{"TLS 1.2 client when TLS 1.2 is off", func() *tls.Config { return m.ServerConfig(serverID) },
			func() *tls.Config {
				c := clientConfig(t, m, clientID, serverID)
				c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
				return c
			}, "protocol version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, res := serveOne(t, tt.server())
			c := dialOne(t, addr, tt.client())
			s := <-res
			if c.handshakeErr == nil && c.readErr == nil {
				t.Fatalf("client completed an exchange (got %q)", c.got)
			}
			if s.handshakeErr == nil {
				t.Errorf("server handshake succeeded")
			}
			if len(s.got) != 0 {
				t.Errorf("server received application data %q", s.got)
			}
			if len(c.got) != 0 {
				t.Errorf("client received application data %q", c.got)
			}
			errs := errors.Join(c.handshakeErr, c.readErr, s.handshakeErr)
			if !strings.Contains(errs.Error(), tt.wantErr) {
				t.Errorf("errors %q, want one containing %q", errs, tt.wantErr)
			}
		})
	}
}

// TestHandshakeValidityError: a peer certificate outside its validity period fails the
// handshake with a ValidityError that says when it was checked and which bound it crossed.
func TestHandshakeValidityError(t *testing.T) {
	m, ca := dirCAManager(t, ManagerOptions{})
	now := time.Now().Truncate(time.Second)
	for _, c := range []struct {
		name                string
		notBefore, notAfter time.Time
		expired             bool
	}{
		{"expired", now.Add(-2 * time.Hour), now.Add(-time.Hour), true},
		{"not yet valid", now.Add(time.Hour), now.Add(2 * time.Hour), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			leaf := ca.IssueLeaf(t, clientID, c.notBefore, c.notAfter)
			addr, res := serveOne(t, m.ServerConfig(serverID))
			dialOne(t, addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"},
				Certificates: []tls.Certificate{leaf}})
			s := <-res
			var ve *ValidityError
			if !errors.As(s.handshakeErr, &ve) {
				t.Fatalf("server handshake error %v, want a ValidityError", s.handshakeErr)
			}
			if ve.Expired() != c.expired || !ve.NotBefore.Equal(c.notBefore) || !ve.NotAfter.Equal(c.notAfter) ||
				ve.At.Before(now) || ve.At.After(time.Now()) {
				t.Errorf("ValidityError{At %v, %v..%v}, Expired %v: want %v..%v checked since %v, Expired %v",
					ve.At, ve.NotBefore, ve.NotAfter, ve.Expired(), c.notBefore, c.notAfter, now, c.expired)
			}
		})
	}
}

func TestTLS12Allowed(t *testing.T) {
	m := fakeCAManager(t, ManagerOptions{TLS12: true})
	addr, res := serveOne(t, m.ServerConfig(serverID))
	cfg := clientConfig(t, m, clientID, serverID)
	cfg.MaxVersion = tls.VersionTLS12
	c := dialOne(t, addr, cfg)
	s := <-res
	if c.handshakeErr != nil || c.readErr != nil || s.handshakeErr != nil {
		t.Fatalf("client %v/%v, server %v", c.handshakeErr, c.readErr, s.handshakeErr)
	}
	if c.state.Version != tls.VersionTLS12 || s.peer != clientID || c.peer != serverID {
		t.Errorf("version %x, peers %v/%v", c.state.Version, s.peer, c.peer)
	}
}

func TestCompliancePolicy(t *testing.T) {
	tests := []struct {
		policy     string
		clientOnly []tls.CurveID // curves a plain client offers; nil = default
		wantOK     bool
		wantCurves []tls.CurveID // allowed negotiated curves on success
	}{
		{policy: "", wantOK: true, wantCurves: []tls.CurveID{tls.X25519MLKEM768}},
		{policy: PolicyFIPS, wantOK: true, wantCurves: []tls.CurveID{tls.CurveP256, tls.CurveP384}},
		{policy: PolicyFIPS, clientOnly: []tls.CurveID{tls.X25519}, wantOK: false},
		{policy: PolicyPQC, wantOK: true, wantCurves: []tls.CurveID{tls.X25519MLKEM768}},
		{policy: PolicyPQC, clientOnly: []tls.CurveID{tls.CurveP256}, wantOK: false},
		{policy: "bogus", clientOnly: []tls.CurveID{tls.X25519}, wantOK: false}, // unknown fails closed to FIPS
	}
	for _, tt := range tests {
		m := fakeCAManager(t, ManagerOptions{CompliancePolicy: tt.policy})
		addr, res := serveOne(t, m.ServerConfig(serverID))
		cfg := clientConfig(t, m, clientID, serverID)
		if tt.clientOnly != nil {
			cfg.CurvePreferences = tt.clientOnly
		}
		c := dialOne(t, addr, cfg)
		s := <-res
		ok := c.handshakeErr == nil && c.readErr == nil && s.handshakeErr == nil
		if ok != tt.wantOK {
			t.Errorf("policy %q, client curves %v: success = %v (client %v/%v, server %v), want %v",
				tt.policy, tt.clientOnly, ok, c.handshakeErr, c.readErr, s.handshakeErr, tt.wantOK)
			continue
		}
		if ok && !containsCurve(tt.wantCurves, c.state.CurveID) {
			t.Errorf("policy %q: negotiated %v, want one of %v", tt.policy, c.state.CurveID, tt.wantCurves)
		}
	}
	if err := CheckCompliancePolicy("bogus"); err == nil {
		t.Error("CheckCompliancePolicy(bogus) succeeded")
	}
	for _, p := range []string{"", PolicyFIPS, PolicyPQC} {
		if err := CheckCompliancePolicy(p); err != nil {
			t.Errorf("CheckCompliancePolicy(%q) = %v", p, err)
		}
	}
}

func containsCurve(list []tls.CurveID, c tls.CurveID) bool {
	for _, x := range list {
		if x == c {
			return true
		}
	}
	return false
}

func TestFIPSRefusesChaCha(t *testing.T) {
	tests := []struct {
		policy string
		cs     tls.ConnectionState
		wantOK bool
	}{
		{PolicyFIPS, tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}, true},
		{PolicyFIPS, tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_256_GCM_SHA384}, true},
		{PolicyFIPS, tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_CHACHA20_POLY1305_SHA256}, false},
		{"", tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_CHACHA20_POLY1305_SHA256}, true},
	}
	for _, tt := range tests {
		m := NewManager(nil, ManagerOptions{CompliancePolicy: tt.policy})
		err := m.checkSuite(tt.cs)
		if (err == nil) != tt.wantOK {
			t.Errorf("policy %q suite %s: err = %v, want ok=%v", tt.policy, tls.CipherSuiteName(tt.cs.CipherSuite), err, tt.wantOK)
		}
		m.Close()
	}
}

func TestServerPicksUpRotation(t *testing.T) {
	m := fakeCAManager(t, ManagerOptions{TTL: 2 * time.Second})
	srv := m.ServerConfig(serverID) // built once
	serial := func() string {
		addr, res := serveOne(t, srv)
		c := dialOne(t, addr, clientConfig(t, m, clientID, serverID))
		<-res
		if c.handshakeErr != nil || c.readErr != nil {
			t.Fatalf("handshake: %v / %v", c.handshakeErr, c.readErr)
		}
		return c.state.PeerCertificates[0].SerialNumber.String()
	}
	first := serial()
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if serial() != first {
			return
		}
	}
	t.Fatal("the server kept presenting the first certificate after its renewal")
}

func TestClientConfigErrors(t *testing.T) {
	m := fakeCAManager(t, ManagerOptions{})
	if _, err := m.ClientConfig(context.Background(), clientID, nil); err == nil {
		t.Error("ClientConfig with no expected identity succeeded")
	}
	if _, err := m.ClientConfig(context.Background(), identity.ID{}, []identity.ID{serverID}); err == nil {
		t.Error("ClientConfig for the zero identity succeeded")
	}
	if _, err := PeerID(tls.ConnectionState{}); err == nil {
		t.Error("PeerID of an incomplete handshake succeeded")
	}
}

func BenchmarkHandshake(b *testing.B) {
	ca, err := NewFakeCA("cluster.local")
	if err != nil {
		b.Fatal(err)
	}
	m := NewManager(ca, ManagerOptions{})
	defer m.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srvCfg := m.ServerConfig(serverID)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			conn := tls.Server(raw, srvCfg)
			conn.Handshake()
			conn.Close()
		}
	}()
	defer func() { ln.Close(); <-done }()
	cfg, err := m.ClientConfig(context.Background(), clientID, []identity.ID{serverID})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		conn := tls.Client(raw, cfg)
		if err := conn.Handshake(); err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}

func TestServerAcceptsClientWithoutALPN(t *testing.T) {
	m, ca := dirCAManager(t, ManagerOptions{})
	leaf := ca.IssueLeaf(t, clientID, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	addr, res := serveOne(t, m.ServerConfig(serverID))
	c := dialOne(t, addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{leaf}})
	s := <-res
	if c.handshakeErr != nil || c.readErr != nil || s.handshakeErr != nil || s.peer != clientID {
		t.Fatalf("client %v/%v, server %v, peer %v", c.handshakeErr, c.readErr, s.handshakeErr, s.peer)
	}
}
