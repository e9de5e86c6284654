package hbone

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// seedFrames builds a frame sequence with a Framer that may write illegal
// frames.
func seedFrames(write func(fr *http2.Framer, enc func(kv ...string) []byte)) []byte {
	var out, hb bytes.Buffer
	fr := http2.NewFramer(&out, nil)
	fr.AllowIllegalWrites = true
	henc := hpack.NewEncoder(&hb)
	enc := func(kv ...string) []byte {
		hb.Reset()
		for i := 0; i+1 < len(kv); i += 2 {
			henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return bytes.Clone(hb.Bytes())
	}
	write(fr, enc)
	return out.Bytes()
}

// FuzzServerConn feeds arbitrary bytes (after the client preface) to
// ServeConn and checks it neither panics nor hangs.
func FuzzServerConn(f *testing.F) {
	f.Add([]byte{})
	f.Add(seedFrames(func(fr *http2.Framer, enc func(...string) []byte) {
		fr.WriteSettings()
	}))
	f.Add(seedFrames(func(fr *http2.Framer, enc func(...string) []byte) {
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
		fr.WriteSettingsAck()
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":method", "CONNECT", ":authority", "10.0.0.1:80", "forwarded", `for="1.2.3.4"`), EndHeaders: true})
		fr.WriteData(1, false, []byte("hello"))
		fr.WriteWindowUpdate(0, 1000)
		fr.WriteWindowUpdate(1, 1000)
		fr.WriteData(1, true, []byte("bye"))
	}))
	f.Add(seedFrames(func(fr *http2.Framer, enc func(...string) []byte) {
		fr.WriteSettings()
		block := enc(":method", "CONNECT", ":authority", "10.0.0.1:80", "baggage", "a=b")
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:3]})
		fr.WriteContinuation(1, true, block[3:])
		fr.WriteDataPadded(1, false, []byte("padded"), make([]byte, 7))
		fr.WritePing(false, [8]byte{1})
		fr.WriteRSTStream(1, http2.ErrCodeCancel)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: enc(":method", "GET", ":path", "/", ":scheme", "https", ":authority", "x"), EndHeaders: true, EndStream: true})
		fr.WriteGoAway(0, http2.ErrCodeNo, []byte("bye"))
	}))
	f.Add(seedFrames(func(fr *http2.Framer, enc func(...string) []byte) {
		fr.WriteSettings()
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":method", "CONNECT", ":authority", "a:1"), EndHeaders: true})
		fr.WriteData(1, false, make([]byte, 70000))
		fr.WriteWindowUpdate(1, 0)
		fr.WriteData(0, false, nil)
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		srv := &Server{
			Config:  Config{PingInterval: time.Second, PingTimeout: 2 * time.Second, StreamWindow: 1 << 16, ConnWindow: 1 << 16, MaxFrameSize: 1 << 14},
			Handler: echo,
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeConn(context.Background(), b)
		}()
		var wg sync.WaitGroup
		wg.Go(func() { io.Copy(io.Discard, a) })
		a.SetWriteDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(a, http2.ClientPreface)
		a.Write(data)
		a.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("ServeConn did not return after the peer closed")
		}
		wg.Wait()
	})
}

// FuzzClientConn feeds arbitrary bytes, as the server's side of the
// connection, to a ClientConn that has a CONNECT in flight, and checks it
// neither panics nor hangs. The bytes follow a valid server SETTINGS frame,
// so they reach the frame parser rather than the first-frame check.
func FuzzClientConn(f *testing.F) {
	f.Add([]byte{})
	f.Add(seedFrames(func(fr *http2.Framer, enc func(...string) []byte) {
		fr.WriteSettingsAck()
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":status", "200"), EndHeaders: true})
		fr.WriteData(1, false, []byte("hello"))
		fr.WriteWindowUpdate(0, 1000)
		fr.WriteWindowUpdate(1, 1000)
		fr.WriteData(1, true, []byte("bye"))
	}))
	f.Add(seedFrames(func(fr *http2.Framer, enc func(...string) []byte) {
		fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20}, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
		block := enc(":status", "200", "server", "ztunnel")
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:2]})
		fr.WriteContinuation(1, true, block[2:])
		fr.WriteDataPadded(1, false, []byte("padded"), make([]byte, 3))
		fr.WritePing(false, [8]byte{9})
		fr.WriteGoAway(1, http2.ErrCodeNo, nil)
	}))
	f.Add(seedFrames(func(fr *http2.Framer, enc func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":status", "100"), EndHeaders: true})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":status", "503"), EndHeaders: true, EndStream: true})
		fr.WriteRSTStream(1, http2.ErrCodeRefusedStream)
		fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: enc(":method", "GET"), EndHeaders: true})
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		cc, err := NewClientConn(a, Config{PingInterval: 100 * time.Millisecond, PingTimeout: 300 * time.Millisecond,
			StreamWindow: 1 << 16, ConnWindow: 1 << 16, MaxFrameSize: 1 << 14})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { io.Copy(io.Discard, b) })
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			if s, err := cc.Connect(ctx, &Request{Authority: "10.0.0.1:80"}); err == nil {
				s.SetDeadline(time.Now().Add(300 * time.Millisecond))
				s.Write([]byte("ping"))
				io.Copy(io.Discard, s)
				s.Close()
			}
		})
		b.SetWriteDeadline(time.Now().Add(time.Second))
		var settings bytes.Buffer
		http2.NewFramer(&settings, nil).WriteSettings()
		b.Write(settings.Bytes())
		b.Write(data)
		b.Close()
		done := make(chan struct{})
		go func() { cc.Close(); wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("ClientConn did not end after the server closed")
		}
	})
}
