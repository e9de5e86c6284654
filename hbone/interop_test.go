package hbone

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/nettest"
)

// TestInteropClientWithXNetServer runs our ClientConn against the x/net
// HTTP/2 server over TLS with ALPN h2.
func TestInteropClientWithXNetServer(t *testing.T) {
	stls, ctls := testTLS(t)
	gotAuthority := make(chan string, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		gotAuthority <- r.Host
		w.WriteHeader(http.StatusOK)
		f := w.(http.Flusher)
		f.Flush()
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				f.Flush()
			}
			if err != nil {
				return
			}
		}
	})
	addr := serveXNet(t, stls, h)

	tc, err := tls.Dial("tcp", addr, ctls)
	if err != nil {
		t.Fatal(err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN: got %q, want h2", p)
	}
	cc, err := NewClientConn(tc, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	s := connect(t, cc, "10.9.8.7:443")
	if a := <-gotAuthority; a != "10.9.8.7:443" {
		t.Errorf("x/net server saw authority %q", a)
	}
	sent, got, n := sendAndReceive(t, s, 3<<20)
	if n != 3<<20 || sent != got {
		t.Fatalf("echo through x/net server: got %d bytes, want %d, equal=%v", n, 3<<20, sent == got)
	}
	s.Close()
	cc.Close()
}

// serveXNet listens on loopback and serves the first TLS connection with the x/net HTTP/2
// server and h. It returns the address; the test's cleanup closes the listener and waits for
// the server, which ends when the client closes.
func serveXNet(t *testing.T, cfg *tls.Config, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { ln.Close() })
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		tc := tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return
		}
		(&http2.Server{}).ServeConn(tc, &http2.ServeConnOpts{Handler: h})
	})
	return ln.Addr().String()
}

// TestInteropXNetTransportWithServer drives our Server with the x/net
// HTTP/2 client.
func TestInteropXNetTransportWithServer(t *testing.T) {
	ts := startServer(t, true, Config{}, echo)
	nc, err := ts.dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tr := &http2.Transport{}
	h2cc, err := tr.NewClientConn(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer h2cc.Close()

	t.Run("CONNECT echo", func(t *testing.T) {
		pr, pw := io.Pipe()
		req := &http.Request{
			Method: http.MethodConnect,
			URL:    &url.URL{Host: "10.0.0.5:9090"},
			Host:   "10.0.0.5:9090",
			Header: http.Header{},
			Body:   pr,
		}
		resp, err := h2cc.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status: got %d, want 200", resp.StatusCode)
		}
		want := bytes.Repeat([]byte("0123456789abcdef"), 200_000) // 3.2 MB
		go func() {
			pw.Write(want)
			pw.Close()
		}()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("echo: got %d bytes, want %d", len(got), len(want))
		}
	})
	t.Run("GET is 400", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "https://10.0.0.5:9090/", nil)
		resp, err := h2cc.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status: got %d, want 400", resp.StatusCode)
		}
	})
}

// TestNetConn runs the x/net/nettest conformance suite on Stream.
func TestNetConn(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "pipe"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				streams := make(chan *Stream, 1)
				release := make(chan struct{})
				h := HandlerFunc(func(s *Stream, req *Request) {
					s.Respond(200)
					streams <- s
					<-release // the Handler returning would close the stream
				})
				var (
					cc      *ClientConn
					cleanup func()
				)
				if useTLS {
					ts := startServer(t, true, Config{}, h)
					nc, err := ts.dial(context.Background())
					if err != nil {
						return nil, nil, nil, err
					}
					cc, _ = NewClientConn(nc, Config{})
					cleanup = ts.close
				} else {
					a, b := net.Pipe()
					srv := &Server{Handler: h}
					done := make(chan struct{})
					go func() {
						defer close(done)
						srv.ServeConn(context.Background(), b)
					}()
					cc, _ = NewClientConn(a, Config{})
					cleanup = func() { <-done }
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				cs, err := cc.Connect(ctx, &Request{Authority: "127.0.0.1:1"})
				if err != nil {
					return nil, nil, nil, err
				}
				ss := <-streams
				stop = func() {
					close(release)
					cs.Close()
					ss.Close()
					cc.Close()
					cleanup()
				}
				return cs, ss, stop, nil
			})
		})
	}
}
