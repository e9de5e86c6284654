package fuzz

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/hbone"
)

// mangle copies src to dst, applying the mutations of one direction: at
// byte offset off of the stream, XOR with x, or end the stream when x is 0.
// It closes dst when src ends.
func mangle(dst, src net.Conn, muts map[int]byte) {
	defer dst.Close()
	buf := make([]byte, 4096)
	off := 0
	for {
		n, err := src.Read(buf)
		for i := range n {
			x, ok := muts[off+i]
			if !ok {
				continue
			}
			if x == 0 {
				dst.Write(buf[:i])
				return
			}
			buf[i] ^= x
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			off += n
		}
		if err != nil {
			return
		}
	}
}

// tunnelEcho runs one HBONE session between a real ClientConn and a real
// Server (which echoes), with both byte streams altered by muts (index 0:
// client to server, 1: server to client). It returns what the client read
// back after sending msg and half-closing, and the first error. Every wait
// (keepalive, Connect, deadlines) is bounded by about timeout.
func tunnelEcho(t *testing.T, muts [2]map[int]byte, msg []byte, timeout time.Duration) ([]byte, error) {
	cfg := hbone.Config{PingInterval: timeout / 2, PingTimeout: timeout,
		StreamWindow: 1 << 16, ConnWindow: 1 << 16, MaxFrameSize: 1 << 14}
	srv := &hbone.Server{Config: cfg, Handler: hbone.HandlerFunc(func(s *hbone.Stream, req *hbone.Request) {
		if s.Respond(200) != nil {
			return
		}
		s.SetDeadline(time.Now().Add(timeout))
		io.Copy(s, s)
		s.CloseWrite()
	})}
	cli, c2s := net.Pipe() // client <-> mangler
	s2c, srvSide := net.Pipe()
	var wg sync.WaitGroup
	wg.Go(func() { srv.ServeConn(context.Background(), srvSide) })
	wg.Go(func() { mangle(s2c, c2s, muts[0]) })
	wg.Go(func() { mangle(c2s, s2c, muts[1]) })
	defer func() {
		cli.Close()
		srvSide.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5*time.Second + 2*timeout):
			t.Fatal("a connection goroutine did not return")
		}
	}()

	cc, err := hbone.NewClientConn(cli, cfg)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := cc.Connect(ctx, &hbone.Request{Authority: "10.0.0.1:80"})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(timeout))
	if _, err := s.Write(msg); err != nil {
		return nil, err
	}
	if err := s.CloseWrite(); err != nil {
		return nil, err
	}
	return io.ReadAll(s)
}

// FuzzTunnel runs a real HBONE client and server against each other with
// their byte streams corrupted or cut as the input says (3 bytes per
// mutation: direction, offset, XOR value; 0 cuts the stream). Neither side
// may panic or hang, and an unaltered session must echo exactly.
func FuzzTunnel(f *testing.F) {
	f.Add([]byte{})            // the real session, unaltered
	f.Add([]byte{0, 3, 0x01})  // corrupt the client preface
	f.Add([]byte{0, 30, 0x40}) // client SETTINGS
	f.Add([]byte{1, 12, 0x80}) // server SETTINGS
	f.Add([]byte{0, 80, 0xff}) // inside the HEADERS block
	f.Add([]byte{1, 60, 0})    // cut the server's answer
	f.Add([]byte{0, 100, 0x08, 1, 40, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 60 {
			return
		}
		muts := [2]map[int]byte{{}, {}}
		for i := 0; i+2 < len(data); i += 3 {
			muts[data[i]&1][int(data[i+1])] = data[i+2]
		}
		msg := []byte("hello through the tunnel")
		if len(data) < 3 {
			// Unaltered: generous timeouts, so a loaded machine cannot fail it.
			got, err := tunnelEcho(t, muts, msg, 5*time.Second)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("unaltered session: got %q, %v; want %q", got, err, msg)
			}
			return
		}
		// Altered sessions mostly end in a timeout: keep them short.
		tunnelEcho(t, muts, msg, 250*time.Millisecond)
	})
}
