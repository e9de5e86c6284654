package hbone

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/testwait"
	"github.com/ztunnel-go/ztunnel/tls/record"
)

// testTLS returns server and client TLS configs sharing a self-signed
// certificate, with ALPN h2 (as HBONE uses).
func testTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "hbone-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	server = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
		NextProtos:   []string{"h2"},
		MinVersion:   tls.VersionTLS13,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      roots,
		ServerName:   "127.0.0.1",
		NextProtos:   []string{"h2"},
		MinVersion:   tls.VersionTLS13,
	}
	return server, client
}

// testServer is a Server behind a loopback listener, optionally with TLS.
type testServer struct {
	srv  *Server
	ln   net.Listener
	tls  *tls.Config // client side config, nil without TLS
	wbuf bool        // TLS over a WriteBuffer on both sides (as the proxy builds it)
	wg   sync.WaitGroup
	errs chan error
}

func startServer(t testing.TB, useTLS bool, cfg Config, h Handler) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: &Server{Config: cfg, Handler: h}, ln: ln, errs: make(chan error, 100), wbuf: !noWriteBuffer}
	var stls *tls.Config
	if useTLS {
		stls, ts.tls = testTLS(t)
	}
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ts.wg.Add(1)
			go func() {
				defer ts.wg.Done()
				if stls != nil {
					tc, cs, err := ts.handshake(context.Background(), c, stls, true)
					if err != nil {
						c.Close()
						return
					}
					if p := cs.NegotiatedProtocol; p != "h2" {
						ts.errs <- io.ErrUnexpectedEOF
					}
					c = tc
				}
				// Serve, as the proxy does: the connection holds no
				// goroutine of this test while the peer is silent.
				ts.wg.Add(1)
				ts.srv.Serve(context.Background(), c, func(err error) {
					defer ts.wg.Done()
					if err != nil {
						select {
						case ts.errs <- err:
						default:
						}
					}
				})
			}()
		}
	}()
	t.Cleanup(ts.close)
	return ts
}

func (ts *testServer) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", ts.ln.Addr().String())
	if err != nil || ts.tls == nil {
		return c, err
	}
	tc, _, err := ts.handshake(ctx, c, ts.tls, false)
	if err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// handshake runs TLS on c as the proxy does (tls/record after crypto/tls's
// handshake), or with crypto/tls alone when plainTLS is set.
func (ts *testServer) handshake(ctx context.Context, c net.Conn, cfg *tls.Config, server bool) (net.Conn, tls.ConnectionState, error) {
	if !plainTLS {
		return record.Handshake(ctx, ts.wrap(c), cfg, server)
	}
	var tc *tls.Conn
	if server {
		tc = tls.Server(ts.wrap(c), cfg)
	} else {
		tc = tls.Client(ts.wrap(c), cfg)
	}
	err := tc.HandshakeContext(ctx)
	return tc, tc.ConnectionState(), err
}

// plainTLS makes the test servers and clients run crypto/tls alone instead
// of tls/record after its handshake; the tests that are about crypto/tls
// under the engine set it.
var plainTLS bool

// noWriteBuffer makes startServer build TLS straight on the TCP conn, for
// before/after benchmarks. Tests leave it false.
var noWriteBuffer bool

func (ts *testServer) wrap(c net.Conn) net.Conn {
	if !ts.wbuf {
		return c
	}
	return NewWriteBuffer(c)
}

func (ts *testServer) client(t testing.TB, cfg Config) *ClientConn {
	t.Helper()
	nc, err := ts.dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cc, err := NewClientConn(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// waitConnsEnded waits until the server has forgotten every connection: a
// parked one holds no goroutine, so goroutine counts can settle before the
// epoll loop has passed each peer's close on to its connection.
func (ts *testServer) waitConnsEnded(t testing.TB) {
	t.Helper()
	testwait.Until(t, "the server's connections to end", 10*time.Second, func() bool {
		ts.srv.mu.Lock()
		defer ts.srv.mu.Unlock()
		return len(ts.srv.conns) == 0
	})
}

func (ts *testServer) close() {
	ts.ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ts.srv.Shutdown(ctx)
	ts.wg.Wait()
}

// pipePair connects a ClientConn and a Server over net.Pipe.
func pipePair(t testing.TB, cliCfg, srvCfg Config, h Handler) (*ClientConn, *Server) {
	t.Helper()
	c1, c2 := net.Pipe()
	srv := &Server{Config: srvCfg, Handler: h}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.ServeConn(context.Background(), c2)
	}()
	cc, err := NewClientConn(c1, cliCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		wg.Wait()
	})
	return cc, srv
}

// echo is a Handler that opens the tunnel and echoes until EOF, then
// half-closes.
var echo = HandlerFunc(func(s *Stream, req *Request) {
	if err := s.Respond(200); err != nil {
		return
	}
	echoBack(s)
})

// echoBack echoes an answered stream until EOF, then half-closes.
func echoBack(s *Stream) {
	if _, err := io.Copy(s, s); err != nil {
		return
	}
	s.CloseWrite()
}

// pattern fills b with a position-dependent pattern starting at offset off.
func pattern(b []byte, off int) {
	for i := range b {
		x := off + i
		b[i] = byte(x ^ x>>8 ^ x>>16)
	}
}

// waiter makes a ReadWaiter of two functions (offer may be nil: it then
// takes nothing).
type waiter struct {
	readable func()
	offer    func([]byte) int
}

func (w waiter) Readable() { w.readable() }

func (w waiter) Offer(b []byte) int {
	if w.offer == nil {
		return 0
	}
	return w.offer(b)
}

// onReadable is a ReadWaiter that calls fn when the stream is readable.
func onReadable(fn func()) ReadWaiter { return waiter{readable: fn} }
