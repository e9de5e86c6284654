package hbone

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Frame-level tests of the defences listed in doc.go: each drives raw
// frames at a running Server (or, for the client side, at a ClientConn)
// and checks the refusal and the cost of the attack.

// flood writes frames from a goroutine until write returns false or an
// error (the connection closed). stop closes the peer's side and waits
// for the goroutine.
func (p *rawPeer) flood(write func(i int) error) (stop func()) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			if err := write(i); err != nil {
				return
			}
		}
	})
	return func() {
		p.nc.Close()
		wg.Wait()
	}
}

// goAwayCode reads frames until GOAWAY and returns its code.
func (p *rawPeer) goAwayCode() http2.ErrCode {
	p.t.Helper()
	p.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	return p.read(isGoAway).(*http2.GoAwayFrame).ErrCode
}

// encode returns the HPACK encoding of kv with a fresh encoder.
func encode(kv ...string) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	for i := 0; i+1 < len(kv); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return b.Bytes()
}

// allocated returns the bytes allocated by the whole process while f ran.
func allocated(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// clientOn returns a ClientConn served by srv over net.Pipe.
func clientOn(t *testing.T, srv *Server) *ClientConn {
	t.Helper()
	a, b := net.Pipe()
	var wg sync.WaitGroup
	wg.Go(func() { srv.ServeConn(context.Background(), b) })
	cc, err := NewClientConn(a, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		wg.Wait()
	})
	return cc
}

// echoOK checks that a stream on cc echoes.
func echoOK(t *testing.T, cc *ClientConn) {
	t.Helper()
	s := connect(t, cc, "10.0.0.1:80")
	defer s.Close()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Write([]byte("still here")); err != nil {
		t.Fatalf("healthy connection: write: %v", err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "still here" {
		t.Fatalf("healthy connection: got %q, %v", buf, err)
	}
}

// TestRapidReset sends HEADERS+RST_STREAM pairs as fast as the server reads
// them (CVE-2023-44487). The connection must end with GOAWAY
// ENHANCE_YOUR_CALM, Handlers must never outnumber MaxConcurrentStreams,
// and another connection of the same Server keeps working.
func TestRapidReset(t *testing.T) {
	tests := []struct {
		name string
		slow bool // Handlers ignore the reset (a dial in progress)
		max  uint32
	}{
		{"handlers return at the reset", false, 0},
		{"handlers outlive the reset", true, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			release := make(chan struct{})
			var live, peak atomic.Int32
			h := HandlerFunc(func(s *Stream, req *Request) {
				if req.Authority != "attack:1" {
					echo(s, req)
					return
				}
				n := live.Add(1)
				defer live.Add(-1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				if tt.slow {
					<-release
				}
				io.Copy(io.Discard, s)
			})
			srv := &Server{Config: Config{MaxConcurrentStreams: tt.max}, Handler: h}
			healthy := clientOn(t, srv)
			p := attachRawPeer(t, srv)
			p.handshake()
			block := encode(":method", "CONNECT", ":authority", "attack:1")
			const pairs = 20000
			var sent atomic.Int32
			stop := p.flood(func(i int) error {
				if i == pairs {
					return io.EOF
				}
				id := uint32(2*i + 1)
				if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true}); err != nil {
					return err
				}
				sent.Add(1)
				return p.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			})
			if got := p.goAwayCode(); got != http2.ErrCodeEnhanceYourCalm {
				t.Errorf("GOAWAY code: got %v, want ENHANCE_YOUR_CALM", got)
			}
			stop()
			limit := int32(DefaultMaxConcurrentStreams)
			if tt.max != 0 {
				limit = int32(tt.max)
			}
			if got := peak.Load(); got > limit {
				t.Errorf("concurrent Handlers: got %d, want <= %d", got, limit)
			}
			if n := sent.Load(); n >= pairs {
				t.Errorf("the server read all %d pairs before GOAWAY", n)
			}
			echoOK(t, healthy)
			close(release)
			healthy.Close()
			select {
			case <-p.done:
				p.done <- nil // for the cleanup
			case <-time.After(5 * time.Second):
				t.Fatal("attacked connection: ServeConn did not return")
			}
			leakcheck.Wait(t, base+2) // the healthy ServeConn may still be winding down
		})
	}
}

// TestHeaderBlockLimits sends header blocks that are too large or split
// into too many frames: the connection ends with GOAWAY and the server
// allocates a small constant while the peer streams megabytes.
func TestHeaderBlockLimits(t *testing.T) {
	big := bytes.Repeat([]byte{'a'}, 16<<10)
	tests := []struct {
		name  string
		first []byte // HEADERS fragment, without END_HEADERS
		cont  []byte // each CONTINUATION fragment
	}{
		{"empty CONTINUATION flood", encode(":method", "CONNECT")[:1], nil},
		// Each fragment decodes (a repeated :method: the message is
		// malformed, but the block goes on), so only the frame count stops it.
		{"1-byte CONTINUATION flood", encode(":method", "CONNECT"), []byte{0x82}},
		{"16 KiB CONTINUATIONs past 64 KiB", encode(":method", "CONNECT"), big},
		{"one HEADERS frame over 64 KiB", bytes.Repeat([]byte{0x82}, 200<<10), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newRawPeer(t, Config{}, echo)
			p.handshake()
			var stop func()
			alloc := allocated(func() {
				stop = p.flood(func(i int) error {
					switch {
					case i == 0:
						return p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: tt.first})
					case i > 100000 || i*len(tt.cont) > 8<<20:
						return io.EOF
					}
					return p.fr.WriteContinuation(1, false, tt.cont)
				})
				if got := p.goAwayCode(); got != http2.ErrCodeEnhanceYourCalm {
					t.Errorf("GOAWAY code: got %v, want ENHANCE_YOUR_CALM", got)
				}
			})
			stop()
			if alloc > 2<<20 {
				t.Errorf("allocated %d bytes during the flood, want < 2 MiB", alloc)
			}
		})
	}
}

// TestHeaderListTooLarge sends a small header block that decodes to more
// than MaxHeaderListSize (an HPACK-indexed field repeated): the stream is
// answered 431 and the connection stays usable.
func TestHeaderListTooLarge(t *testing.T) {
	p := newRawPeer(t, Config{}, echo)
	p.handshake()
	kv := []string{":method", "CONNECT", ":authority", "1.1.1.1:80"}
	for range 3000 { // 3000 * (1+1+32) bytes decoded, ~3 KB encoded
		kv = append(kv, "a", "b")
	}
	p.headers(1, false, kv...)
	mh := p.read(isStatus(1)).(*http2.MetaHeadersFrame)
	if got := mh.PseudoValue("status"); got != "431" {
		t.Errorf("status: got %q, want 431", got)
	}
	p.headers(3, false, ":method", "CONNECT", ":authority", "1.1.1.1:80")
	if got := p.read(isStatus(3)).(*http2.MetaHeadersFrame).PseudoValue("status"); got != "200" {
		t.Errorf("next stream: status %q, want 200", got)
	}
}

// TestIdleFrameFloods sends frames that make no progress; past the budget
// the server answers GOAWAY ENHANCE_YOUR_CALM, below it nothing happens.
func TestIdleFrameFloods(t *testing.T) {
	tests := []struct {
		name  string
		write func(fr *http2.Framer, i int) error
	}{
		{"empty DATA", func(fr *http2.Framer, i int) error { return fr.WriteData(1, false, nil) }},
		{"padding-only DATA", func(fr *http2.Framer, i int) error { return fr.WriteDataPadded(1, false, nil, []byte{0, 0}) }},
		{"PRIORITY", func(fr *http2.Framer, i int) error {
			return fr.WritePriority(3, http2.PriorityParam{StreamDep: 1, Weight: 9})
		}},
		{"unknown frame type", func(fr *http2.Framer, i int) error { return fr.WriteRawFrame(0x20, 0, 0, []byte("xyz")) }},
		{"PRIORITY_UPDATE", func(fr *http2.Framer, i int) error {
			return fr.WriteRawFrame(0x10, 0, 0, []byte{0, 0, 0, 1, 'u', '=', '1'})
		}},
		{"PING", func(fr *http2.Framer, i int) error { return fr.WritePing(false, [8]byte{byte(i)}) }},
		{"SETTINGS", func(fr *http2.Framer, i int) error { return fr.WriteSettings() }},
		{"SETTINGS repeating INITIAL_WINDOW_SIZE", func(fr *http2.Framer, i int) error {
			s := make([]http2.Setting, 1000)
			for j := range s {
				s[j] = http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(j)}
			}
			return fr.WriteSettings(s...)
		}},
		{"zero stream WINDOW_UPDATE", func(fr *http2.Framer, i int) error {
			return fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 1, []byte{0, 0, 0, 0})
		}},
		{"RST_STREAM on a closed stream", func(fr *http2.Framer, i int) error { return fr.WriteRSTStream(3, http2.ErrCodeCancel) }},
		{"refused streams", func(fr *http2.Framer, i int) error {
			return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(5 + 2*i), BlockFragment: encode(":method", "CONNECT"), EndHeaders: true})
		}},
	}
	marker := [8]byte{0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa}
	for _, tt := range tests {
		for _, n := range []int{maxIdleFrames / 2, maxIdleFrames * 3} {
			over := n > maxIdleFrames
			t.Run(fmt.Sprintf("%s/%d", tt.name, n), func(t *testing.T) {
				block := make(chan struct{})
				defer close(block)
				h := HandlerFunc(func(s *Stream, req *Request) {
					s.Respond(200)
					<-block
				})
				p := newRawPeer(t, Config{MaxConcurrentStreams: 1}, h)
				p.handshake()
				p.headers(1, false, ":method", "CONNECT", ":authority", "1.1.1.1:80")
				p.read(isStatus(1))
				p.headers(3, false, ":method", "CONNECT", ":authority", "1.1.1.1:80")
				p.read(isRST(3)) // refused: stream 3 is now closed
				stop := p.flood(func(i int) error {
					switch {
					case i < n:
						return tt.write(p.fr, i)
					case i == n:
						return p.fr.WritePing(false, marker)
					}
					return io.EOF
				})
				defer stop()
				p.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					f, err := p.fr.ReadFrame()
					if err != nil {
						t.Fatalf("reading: %v", err)
					}
					if ga, ok := f.(*http2.GoAwayFrame); ok {
						if !over || ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
							t.Fatalf("%d frames: GOAWAY %v", n, ga.ErrCode)
						}
						return
					}
					if pf, ok := f.(*http2.PingFrame); ok && pf.IsAck() && pf.Data == marker {
						if over {
							t.Fatalf("%d frames: connection still serving, want GOAWAY ENHANCE_YOUR_CALM", n)
						}
						return
					}
				}
			})
		}
	}
}

// TestStalledStream: the peer never opens the window of stream 1. Its
// writer blocks without buffering (and gives up at its write deadline)
// while stream 3 of the same connection flows.
func TestStalledStream(t *testing.T) {
	payload := make([]byte, 16<<20)
	writeErr := make(chan error, 1)
	h := HandlerFunc(func(s *Stream, req *Request) {
		s.Respond(200)
		if req.Authority == "stalled:1" {
			s.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
			n, err := s.Write(payload)
			if n != 0 {
				err = fmt.Errorf("wrote %d bytes into a zero window", n)
			}
			writeErr <- err
			return
		}
		s.Write([]byte("flowing"))
		io.Copy(io.Discard, s)
	})
	p := newRawPeer(t, Config{}, h)
	p.handshake()
	p.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	var err error
	alloc := allocated(func() {
		p.headers(1, false, ":method", "CONNECT", ":authority", "stalled:1")
		p.read(isStatus(1))
		p.headers(3, false, ":method", "CONNECT", ":authority", "flowing:1")
		p.read(isStatus(3))
		p.fr.WriteWindowUpdate(3, 100)
		d := p.read(func(f http2.Frame) bool { d, ok := f.(*http2.DataFrame); return ok && len(d.Data()) > 0 }).(*http2.DataFrame)
		if d.StreamID != 3 || string(d.Data()) != "flowing" {
			t.Errorf("DATA: got stream %d %q, want stream 3 \"flowing\"", d.StreamID, d.Data())
		}
		go io.Copy(io.Discard, p.nc) // the RST_STREAM of stream 1 at the deadline
		select {
		case err = <-writeErr:
		case <-time.After(5 * time.Second):
			t.Fatal("stalled Write did not return at its deadline")
		}
	})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("stalled Write: got %v, want os.ErrDeadlineExceeded", err)
	}
	if alloc > 1<<20 {
		t.Errorf("allocated %d bytes while a 16 MiB Write was stalled, want < 1 MiB", alloc)
	}
}

// TestWindowUpdatesOnStalledConnection: with the connection window used up,
// a flood of stream WINDOW_UPDATEs wakes the writer over and over; the list
// of streams waiting for the connection window must not grow.
func TestWindowUpdatesOnStalledConnection(t *testing.T) {
	got := make(chan *Stream, 1)
	h := HandlerFunc(func(s *Stream, req *Request) {
		s.Respond(200)
		got <- s
		s.Write(make([]byte, 1<<20)) // blocks after 65535 bytes
	})
	p := newRawPeer(t, Config{}, h)
	p.handshake()
	p.headers(1, false, ":method", "CONNECT", ":authority", "1.1.1.1:80")
	p.read(isStatus(1))
	s := <-got
	n := 0
	for n < initialWindow {
		if d, ok := p.read(func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok }).(*http2.DataFrame); ok {
			n += len(d.Data())
		}
	}
	for range 5000 {
		if err := p.fr.WriteWindowUpdate(1, 1); err != nil {
			t.Fatal(err)
		}
	}
	p.fr.WritePing(false, [8]byte{7})
	p.read(func(f http2.Frame) bool { pf, ok := f.(*http2.PingFrame); return ok && pf.IsAck() })
	s.c.mu.Lock()
	waiters := len(s.c.connWaiters)
	s.c.mu.Unlock()
	if waiters > 1 {
		t.Errorf("connection window waiters: got %d, want <= 1", waiters)
	}
}

// TestHugePeerSettings: a peer allowing 16 MiB frames and a 2 GiB window
// still gets DATA frames of at most maxDataFrame, and the server allocates
// nothing per frame while sending 8 MiB.
func TestHugePeerSettings(t *testing.T) {
	payload := make([]byte, 8<<20)
	h := HandlerFunc(func(s *Stream, req *Request) {
		s.Respond(200)
		s.Write(payload)
		s.CloseWrite()
		io.Copy(io.Discard, s)
	})
	p := newRawPeer(t, Config{}, h)
	p.handshake()
	p.fr.SetMaxReadFrameSize(maxFrameSizeCap)
	p.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: maxFrameSizeCap},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: maxWindow},
	)
	p.fr.WriteWindowUpdate(0, maxWindow-initialWindow)
	p.nc.SetDeadline(time.Now().Add(10 * time.Second))
	var largest, total int
	alloc := allocated(func() {
		p.headers(1, false, ":method", "CONNECT", ":authority", "1.1.1.1:80")
		for {
			f, err := p.fr.ReadFrame()
			if err != nil {
				t.Fatalf("after %d bytes: %v", total, err)
			}
			if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 {
				largest = max(largest, len(d.Data()))
				total += len(d.Data())
				if d.StreamEnded() {
					break
				}
			}
		}
	})
	if total != len(payload) {
		t.Errorf("received %d bytes, want %d", total, len(payload))
	}
	if largest > maxDataFrame {
		t.Errorf("largest DATA frame: got %d bytes, want <= %d", largest, maxDataFrame)
	}
	if alloc > 1<<20 {
		t.Errorf("allocated %d bytes sending 8 MiB, want < 1 MiB", alloc)
	}
}

// TestPeerThatNeverReads: a peer that keeps sending but never reads. Over a
// pipe the server's first write blocks for good: the stalled writer closes
// the connection after PingTimeout even though frames keep arriving. Over
// TCP a PING flood fills the socket buffers: the connection is closed and
// the server's memory stays bounded.
func TestPeerThatNeverReads(t *testing.T) {
	t.Run("stalled writer", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		srv := &Server{Config: Config{PingInterval: 100 * time.Millisecond, PingTimeout: 400 * time.Millisecond}, Handler: echo}
		done := make(chan error, 1)
		go func() { done <- srv.ServeConn(context.Background(), b) }()
		fr := http2.NewFramer(a, nil)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			io.WriteString(a, http2.ClientPreface)
			fr.WriteSettings()
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if fr.WriteRawFrame(0x20, 0, 0, nil) != nil { // keeps the peer "alive"
					return
				}
			}
		})
		select {
		case err := <-done:
			if !errors.Is(err, ErrWriteStalled) {
				t.Errorf("ServeConn: got %v, want ErrWriteStalled", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("ServeConn still running with a peer that never reads")
		}
		close(stop)
		a.Close()
		wg.Wait()
	})
	t.Run("PING flood over TCP", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		srv := &Server{Handler: echo}
		done := make(chan error, 1)
		var serveErr error
		alloc := allocated(func() {
			go func() { done <- srv.ServeConn(context.Background(), sc) }()
			nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(nc, http2.ClientPreface)
			fr := http2.NewFramer(nc, nil)
			fr.WriteSettings()
			var i uint64
			for ; i < 1<<20; i++ {
				if fr.WritePing(false, [8]byte{byte(i), byte(i >> 8), byte(i >> 16)}) != nil {
					break
				}
			}
			select {
			case serveErr = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("ServeConn still running after %d PINGs", i)
			}
		})
		var ce ProtocolError
		if !errors.As(serveErr, &ce) || ce.Code != http2.ErrCodeEnhanceYourCalm {
			t.Errorf("ServeConn: got %v, want an ENHANCE_YOUR_CALM connection error", serveErr)
		}
		if alloc > 1<<20 {
			t.Errorf("allocated %d bytes during the flood, want < 1 MiB", alloc)
		}
	})
}

// TestControlQueueBound: a connection whose control writer cannot write
// closes once maxCtrlQueue frames are queued, instead of queueing more.
func TestControlQueueBound(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	c := newConn(b, Config{}, true, nil) // not started: nothing drains the queue
	for i := 0; i < 2*maxCtrlQueue; i++ {
		if !c.enqueue(ctrlFrame{kind: ctrlPingAck}) {
			break
		}
	}
	c.cmu.Lock()
	n := len(c.ctrlQ)
	c.cmu.Unlock()
	if n > maxCtrlQueue {
		t.Errorf("queued %d control frames, want <= %d", n, maxCtrlQueue)
	}
	var ce ProtocolError
	if err := c.err; !errors.As(err, &ce) || ce.Code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("connection error: got %v, want ENHANCE_YOUR_CALM", err)
	}
}

// rawServer is the server end of a ClientConn, speaking raw frames.
type rawServer struct {
	t  *testing.T
	nc net.Conn
	fr *http2.Framer
	cc *ClientConn
}

func newRawServer(t *testing.T) *rawServer {
	t.Helper()
	a, b := net.Pipe()
	p := &rawServer{t: t, nc: b, fr: http2.NewFramer(b, b)}
	p.fr.AllowIllegalWrites = true
	p.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	b.SetDeadline(time.Now().Add(10 * time.Second))
	cc, err := NewClientConn(a, Config{})
	if err != nil {
		t.Fatal(err)
	}
	p.cc = cc
	t.Cleanup(func() {
		b.Close()
		cc.Close()
	})
	pre := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(b, pre); err != nil || string(pre) != http2.ClientPreface {
		t.Fatalf("client preface: %q, %v", pre, err)
	}
	if err := p.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return p
}

// connect opens a stream from the ClientConn (and closes it once open) in a
// goroutine; the channel gets Connect's error.
func (p *rawServer) connect() <-chan error {
	connected := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := p.cc.Connect(ctx, &Request{Authority: "10.0.0.1:80"})
		if err == nil {
			s.Close()
		}
		connected <- err
	}()
	return connected
}

// TestClientIdleFrameFloods: a server flooding a ClientConn with frames that
// make no progress gets GOAWAY ENHANCE_YOUR_CALM and the ClientConn ends.
func TestClientIdleFrameFloods(t *testing.T) {
	tests := []struct {
		name  string
		write func(fr *http2.Framer) error
	}{
		{"empty DATA", func(fr *http2.Framer) error { return fr.WriteData(1, false, nil) }},
		{"PING", func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{1}) }},
		{"unknown frame type", func(fr *http2.Framer) error { return fr.WriteRawFrame(0x20, 0, 0, nil) }},
		{"CONTINUATION flood", func(fr *http2.Framer) error { return fr.WriteContinuation(1, false, nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newRawServer(t)
			connected := p.connect()
			for {
				f, err := p.fr.ReadFrame()
				if err != nil {
					t.Fatalf("reading the request: %v", err)
				}
				if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == 1 {
					break
				}
			}
			if tt.name == "CONTINUATION flood" {
				p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: encode(":status", "200")[:0]})
			} else {
				p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: encode(":status", "200"), EndHeaders: true})
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; i < 5*maxIdleFrames; i++ {
					if tt.write(p.fr) != nil {
						return
					}
				}
			})
			var code http2.ErrCode = 0xff
			for {
				f, err := p.fr.ReadFrame()
				if err != nil {
					break
				}
				if ga, ok := f.(*http2.GoAwayFrame); ok {
					code = ga.ErrCode
				}
			}
			p.nc.Close()
			wg.Wait()
			if code != http2.ErrCodeEnhanceYourCalm {
				t.Errorf("GOAWAY from the client: got %v, want ENHANCE_YOUR_CALM", code)
			}
			select {
			case <-p.cc.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("ClientConn still open")
			}
			if err := p.cc.Err(); err == nil || !strings.Contains(err.Error(), "ENHANCE_YOUR_CALM") {
				t.Errorf("ClientConn.Err: got %v, want ENHANCE_YOUR_CALM", err)
			}
			<-connected
		})
	}
}

// TestForwardedNotIndexed: the Forwarded and traceparent headers, different on every stream
// (the client's address and port, a new trace), go out as never-indexed literals after the
// first of each on a connection (indexed, so that the later ones name it by index), so they
// take one place in each end's HPACK dynamic table, not one per stream; the other request
// fields stay indexable.
func TestForwardedNotIndexed(t *testing.T) {
	p := newRawServer(t)
	const streams = 3
	for i := range streams {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := p.cc.Connect(ctx, &Request{Authority: "10.0.0.1:80", Header: Header{
				{Name: "forwarded", Value: fmt.Sprintf(`for="10.0.0.2:%d"`, 40000+i)},
				{Name: "traceparent", Value: fmt.Sprintf("00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333%d-00", i)},
				{Name: "baggage", Value: "k8s.namespace.name=default"},
			}})
			if err == nil {
				s.Close()
			}
		}()
	}
	sensitive := map[string]int{}
	for seen := 0; seen < streams; {
		f, err := p.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the requests: %v", err)
		}
		h, ok := f.(*http2.MetaHeadersFrame)
		if !ok {
			continue
		}
		seen++
		for _, hf := range h.Fields {
			switch {
			case hf.Name == "forwarded" || hf.Name == "traceparent":
				if hf.Sensitive {
					sensitive[hf.Name]++
				}
			case hf.Sensitive:
				t.Errorf("%s went out never-indexed", hf.Name)
			}
		}
	}
	for _, name := range []string{"forwarded", "traceparent"} {
		if sensitive[name] != streams-1 {
			t.Errorf("%s went out never-indexed on %d of %d streams, want all but the first", name, sensitive[name], streams)
		}
	}
}

// TestMalformedResponseHeaders answers requests with header blocks that
// break RFC 9113's rules for responses: each such stream fails alone with
// PROTOCOL_ERROR, the connection goes on, and a last answer made of fields
// the malformed blocks put in the HPACK table shows the client's decoder
// kept its table in step.
func TestMalformedResponseHeaders(t *testing.T) {
	p := newRawServer(t)
	var hbuf bytes.Buffer
	henc := hpack.NewEncoder(&hbuf) // one table for the whole connection
	tests := []struct {
		name   string
		fields []string
		ok     bool
	}{
		{"valid", []string{":status", "200"}, true},
		{"request pseudo-header", []string{":status", "200", ":method", "CONNECT"}, false},
		{"upper-case name", []string{":status", "200", "Server", "x"}, false},
		{"pseudo-header after a regular field", []string{"server", "x", ":status", "200"}, false},
		{"repeated :status", []string{":status", "200", ":status", "200"}, false},
		{"status not a number", []string{":status", "2x0"}, false},
		{"no status", []string{"server", "x"}, false},
		{"control character in value", []string{":status", "200", "server", "a\x01b"}, false},
		{"valid again, from the table", []string{":status", "200", "server", "x"}, true},
	}
	// The frames from the client are read all along (net.Pipe has no
	// buffer: a client stuck writing would end the connection).
	requests := make(chan uint32, len(tests))
	go func() {
		for {
			f, err := p.fr.ReadFrame()
			if err != nil {
				close(requests)
				return
			}
			if h, ok := f.(*http2.MetaHeadersFrame); ok {
				requests <- h.StreamID
			}
		}
	}()
	for i, tt := range tests {
		connected := p.connect()
		id, ok := <-requests
		if want := uint32(2*i + 1); !ok || id != want {
			t.Fatalf("%s: request on stream %d (%v), want %d", tt.name, id, ok, want)
		}
		hbuf.Reset()
		for j := 0; j+1 < len(tt.fields); j += 2 {
			henc.WriteField(hpack.HeaderField{Name: tt.fields[j], Value: tt.fields[j+1]})
		}
		if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		err := <-connected
		if got := err == nil; got != tt.ok {
			t.Errorf("%s: Connect error %v, want success %v", tt.name, err, tt.ok)
		}
		if !tt.ok && !strings.Contains(fmt.Sprint(err), "PROTOCOL_ERROR") {
			t.Errorf("%s: Connect error %v, want a PROTOCOL_ERROR reset", tt.name, err)
		}
	}
	if err := p.cc.Err(); err != nil {
		t.Errorf("ClientConn failed: %v", err)
	}
}
