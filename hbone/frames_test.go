package hbone

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawPeer speaks raw HTTP/2 frames to a Server over net.Pipe, in the style
// of x/net's serverTester.
type rawPeer struct {
	t    *testing.T
	nc   net.Conn
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer
	srv  *Server
	done chan error // ServeConn's result
}

func newRawPeer(t *testing.T, cfg Config, h Handler) *rawPeer {
	t.Helper()
	return attachRawPeer(t, &Server{Config: cfg, Handler: h})
}

// attachRawPeer connects a new raw peer to srv, which may already serve
// other connections.
func attachRawPeer(t *testing.T, srv *Server) *rawPeer {
	t.Helper()
	a, b := net.Pipe()
	p := &rawPeer{t: t, nc: a, srv: srv, done: make(chan error, 1)}
	p.fr = http2.NewFramer(a, a)
	p.fr.AllowIllegalWrites = true
	p.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	p.henc = hpack.NewEncoder(&p.hbuf)
	go func() { p.done <- p.srv.ServeConn(context.Background(), b) }()
	t.Cleanup(func() {
		a.Close()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Error("ServeConn did not return after the peer closed")
		}
	})
	return p
}

// handshake sends the preface and SETTINGS and reads the server's SETTINGS.
func (p *rawPeer) handshake() {
	p.t.Helper()
	p.nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(p.nc, http2.ClientPreface); err != nil {
		p.t.Fatal(err)
	}
	if err := p.fr.WriteSettings(); err != nil {
		p.t.Fatal(err)
	}
	f := p.read(func(f http2.Frame) bool { _, ok := f.(*http2.SettingsFrame); return ok })
	if f.(*http2.SettingsFrame).IsAck() {
		p.t.Fatal("first SETTINGS from server is an ACK")
	}
}

func (p *rawPeer) headers(id uint32, end bool, kv ...string) {
	p.t.Helper()
	p.hbuf.Reset()
	for i := 0; i < len(kv); i += 2 {
		p.henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.hbuf.Bytes(), EndStream: end, EndHeaders: true}); err != nil {
		p.t.Fatal(err)
	}
}

// read returns the first frame for which match is true, skipping others.
func (p *rawPeer) read(match func(http2.Frame) bool) http2.Frame {
	p.t.Helper()
	for {
		f, err := p.fr.ReadFrame()
		if err != nil {
			p.t.Fatalf("reading frames: %v", err)
		}
		if match(f) {
			return f
		}
	}
}

func isRST(id uint32) func(http2.Frame) bool {
	return func(f http2.Frame) bool {
		r, ok := f.(*http2.RSTStreamFrame)
		return ok && r.StreamID == id
	}
}

func isStatus(id uint32) func(http2.Frame) bool {
	return func(f http2.Frame) bool {
		h, ok := f.(*http2.MetaHeadersFrame)
		return ok && h.StreamID == id
	}
}

func isGoAway(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }

// shutdown starts the server's Shutdown, with 5 s to drain; its result comes on the channel.
func (p *rawPeer) shutdown() <-chan error {
	shut := make(chan error, 1)
	go func() { // ends within the 5 s
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- p.srv.Shutdown(ctx)
	}()
	return shut
}

// waitShutdown fails unless Shutdown returned nil within 5 s (when, for the message).
func waitShutdown(t *testing.T, shut <-chan error, when string) {
	t.Helper()
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Shutdown did not return %s", when)
	}
}

// served returns the connection the server serves for the peer (the server side of its pipe).
func (p *rawPeer) served() net.Conn {
	p.srv.mu.Lock()
	defer p.srv.mu.Unlock()
	for c := range p.srv.conns {
		return c.nc
	}
	return nil
}

// TestMalformedRequestHeaders sends requests whose header blocks break
// RFC 9113's rules for fields (8.2, 8.3) on one connection: each malformed
// one is reset with PROTOCOL_ERROR alone, the others are answered, and a
// last request made of fields the malformed blocks put in the HPACK table
// shows the decoder kept its table in step through all of them.
func TestMalformedRequestHeaders(t *testing.T) {
	h := HandlerFunc(func(s *Stream, req *Request) { s.Respond(200) })
	p := newRawPeer(t, Config{}, h)
	p.handshake()
	ok := []string{":method", "CONNECT", ":authority", "1.1.1.1:80"}
	with := func(kv ...string) []string { return append(append([]string(nil), ok...), kv...) }
	tests := []struct {
		name   string
		fields []string
		want   string // "rst PROTOCOL_ERROR" or "status NNN"
	}{
		{"valid", ok, "status 200"},
		{"upper-case name", with("Forwarded", "for=x"), "rst PROTOCOL_ERROR"},
		{"name not a token", with("a b", "x"), "rst PROTOCOL_ERROR"},
		{"empty name", with("", "x"), "rst PROTOCOL_ERROR"},
		{"control character in value", with("baggage", "a\x00b"), "rst PROTOCOL_ERROR"},
		{"pseudo-header after a regular field", []string{":method", "CONNECT", "baggage", "k=v", ":authority", "1.1.1.1:80"}, "rst PROTOCOL_ERROR"},
		{"unknown pseudo-header", with(":foo", "x"), "rst PROTOCOL_ERROR"},
		{"repeated :method", []string{":method", "CONNECT", ":method", "CONNECT", ":authority", "1.1.1.1:80"}, "rst PROTOCOL_ERROR"},
		{"response pseudo-header", with(":status", "200"), "rst PROTOCOL_ERROR"},
		{"no :method", []string{":authority", "1.1.1.1:80"}, "rst PROTOCOL_ERROR"},
		{"connection-specific field", with("connection", "close"), "rst PROTOCOL_ERROR"},
		{"transfer-encoding", with("transfer-encoding", "chunked"), "rst PROTOCOL_ERROR"},
		{"te other than trailers", with("te", "gzip"), "rst PROTOCOL_ERROR"},
		{"te: trailers", with("te", "trailers"), "status 200"},
		{"not CONNECT", []string{":method", "GET", ":authority", "1.1.1.1:80", ":scheme", "https", ":path", "/"}, "status 400"},
		{"no authority", []string{":method", "CONNECT"}, "status 400"},
		{"authority from host", []string{":method", "CONNECT", "host", "1.1.1.1:80"}, "status 200"},
		// Fields the encoder indexed in the blocks above, sent as indices.
		{"valid again, from the table", with("baggage", "k=v", "forwarded", "for=x"), "status 200"},
	}
	id := uint32(1)
	for _, tt := range tests {
		p.headers(id, false, tt.fields...)
		var got string
		switch f := p.read(func(f http2.Frame) bool { return isRST(id)(f) || isStatus(id)(f) }).(type) {
		case *http2.RSTStreamFrame:
			got = "rst " + f.ErrCode.String()
		case *http2.MetaHeadersFrame:
			got = "status " + f.PseudoValue("status")
		}
		if got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
		id += 2
	}
	// A HEADERS frame with padding and priority fields around its block.
	p.hbuf.Reset()
	for i := 0; i < len(ok); i += 2 {
		p.henc.WriteField(hpack.HeaderField{Name: ok[i], Value: ok[i+1]})
	}
	if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.hbuf.Bytes(), EndHeaders: true,
		PadLength: 7, Priority: http2.PriorityParam{StreamDep: 1, Weight: 9}}); err != nil {
		t.Fatal(err)
	}
	if got := p.read(isStatus(id)).(*http2.MetaHeadersFrame).PseudoValue("status"); got != "200" {
		t.Errorf("padded HEADERS with priority: status %q, want 200", got)
	}
}

func TestRefusedStreamBeyondLimit(t *testing.T) {
	var mu sync.Mutex
	var held []*Stream
	h := HandlerFunc(func(s *Stream, req *Request) {
		s.Respond(200)
		mu.Lock()
		held = append(held, s)
		mu.Unlock()
		io.Copy(io.Discard, s)
	})
	p := newRawPeer(t, Config{MaxConcurrentStreams: 2}, h)
	p.handshake()
	for _, id := range []uint32{1, 3} {
		p.headers(id, false, ":method", "CONNECT", ":authority", "1.1.1.1:80")
		if got := p.read(isStatus(id)).(*http2.MetaHeadersFrame).PseudoValue("status"); got != "200" {
			t.Fatalf("stream %d: status %q, want 200", id, got)
		}
	}
	p.headers(5, false, ":method", "CONNECT", ":authority", "1.1.1.1:80")
	rst := p.read(isRST(5)).(*http2.RSTStreamFrame)
	if rst.ErrCode != http2.ErrCodeRefusedStream {
		t.Errorf("RST_STREAM code: got %v, want REFUSED_STREAM", rst.ErrCode)
	}
	// Ending one stream makes room again once its Handler returned. (A
	// Handler still writing to this peer, which does not read meanwhile,
	// would keep its slot: Handlers count against the limit.)
	p.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	time.Sleep(50 * time.Millisecond)
	p.headers(7, false, ":method", "CONNECT", ":authority", "1.1.1.1:80")
	if got := p.read(isStatus(7)).(*http2.MetaHeadersFrame).PseudoValue("status"); got != "200" {
		t.Errorf("stream 7 after a slot freed: status %q, want 200", got)
	}
}

// TestShutdownSendsGoAway: Shutdown drains a connection in two steps, as ztunnel's HTTP/2
// server does (RFC 9113, section 6.8): GOAWAY(2^31-1, NO_ERROR) and a PING; a stream the peer
// opened before it read them is still served; the PING's answer brings the final GOAWAY with the
// last stream accepted, after which a new stream is refused; the open ones keep working, and the
// connection closes when the last one ends.
func TestShutdownSendsGoAway(t *testing.T) {
	p := newRawPeer(t, Config{}, echo)
	p.handshake()
	p.headers(1, false, ":method", "CONNECT", ":authority", "1.1.1.1:80")
	p.read(isStatus(1))

	shut := p.shutdown()
	ga := p.read(isGoAway).(*http2.GoAwayFrame)
	if ga.LastStreamID != 1<<31-1 || ga.ErrCode != http2.ErrCodeNo {
		t.Errorf("first GOAWAY: got last=%d code=%v, want last=2147483647 NO_ERROR", ga.LastStreamID, ga.ErrCode)
	}
	ping := p.read(func(f http2.Frame) bool { f2, ok := f.(*http2.PingFrame); return ok && !f2.IsAck() }).(*http2.PingFrame)
	// A stream opened before the peer read the GOAWAY (in flight): still served.
	p.headers(3, false, ":method", "CONNECT", ":authority", "1.1.1.1:80")
	if got := p.read(isStatus(3)).(*http2.MetaHeadersFrame).PseudoValue("status"); got != "200" {
		t.Errorf("stream opened before the peer read the first GOAWAY: status %q, want 200", got)
	}
	if err := p.fr.WritePing(true, ping.Data); err != nil {
		t.Fatal(err)
	}
	ga = p.read(isGoAway).(*http2.GoAwayFrame)
	if ga.LastStreamID != 3 || ga.ErrCode != http2.ErrCodeNo {
		t.Errorf("final GOAWAY: got last=%d code=%v, want last=3 NO_ERROR", ga.LastStreamID, ga.ErrCode)
	}
	// A new stream after the final GOAWAY is refused; the existing ones still work.
	p.headers(5, false, ":method", "CONNECT", ":authority", "1.1.1.1:80")
	if rst := p.read(isRST(5)).(*http2.RSTStreamFrame); rst.ErrCode != http2.ErrCodeRefusedStream {
		t.Errorf("stream after GOAWAY: got %v, want REFUSED_STREAM", rst.ErrCode)
	}
	for _, id := range []uint32{1, 3} {
		p.fr.WriteData(id, false, []byte("ping"))
		d := p.read(func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok }).(*http2.DataFrame)
		if d.StreamID != id || string(d.Data()) != "ping" {
			t.Errorf("echo on stream %d during drain: got %q on stream %d", id, d.Data(), d.StreamID)
		}
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while streams were open", err)
	case <-time.After(50 * time.Millisecond):
	}
	// Ending the streams both ways lets the connection close and Shutdown return.
	p.fr.WriteData(1, true, nil)
	p.fr.WriteData(3, true, nil)
	go io.Copy(io.Discard, p.nc)
	waitShutdown(t, shut, "after the last stream ended")
}

// TestShutdownWithoutPingAnswer: a peer that does not answer the drain's PING gets the final
// GOAWAY anyway (after drainAckWait), and an idle connection then closes; a PING answer with
// the drain's payload that comes without a drain changes nothing.
func TestShutdownWithoutPingAnswer(t *testing.T) {
	p := newRawPeer(t, Config{}, echo)
	p.handshake()
	// An unsolicited answer with the drain's payload: no GOAWAY follows, streams are served.
	p.fr.WritePing(true, drainPing)
	p.headers(1, true, ":method", "CONNECT", ":authority", "1.1.1.1:80")
	p.read(isStatus(1))

	shut := p.shutdown()
	var goAways []uint32
	for {
		f, err := p.fr.ReadFrame()
		if err != nil {
			break // the close
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			goAways = append(goAways, ga.LastStreamID)
		}
	}
	if len(goAways) != 2 || goAways[0] != 1<<31-1 || goAways[1] != 1 {
		t.Errorf("GOAWAYs' last streams: %v, want [2147483647 1]", goAways)
	}
	waitShutdown(t, shut, "after the final GOAWAY")
}

// TestAbortSendsGoAway: a server connection that gives up on its peer ends as ztunnel's does
// (h2's abrupt_shutdown): GOAWAY(NO_ERROR) naming the last stream it accepted, nothing after
// it, then the close, with the open stream failed by the cause. Two causes: the keepalive, when
// the peer stays silent (it reads the server's PINGs but sends nothing), and Server.Abort (a
// revoked peer certificate).
func TestAbortSendsGoAway(t *testing.T) {
	errAborted := errors.New("aborted by the test")
	for _, tc := range []struct {
		name  string
		cfg   Config
		abort bool // Server.Abort after the stream is answered; else wait for the keepalive
		want  error
	}{
		{"keepalive", Config{PingInterval: 100 * time.Millisecond, PingTimeout: 400 * time.Millisecond}, false, ErrPingTimeout},
		{"Abort", Config{}, true, errAborted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			streamErr := make(chan error, 1)
			h := HandlerFunc(func(s *Stream, req *Request) {
				s.Respond(200)
				_, err := io.Copy(io.Discard, s)
				streamErr <- err
			})
			p := newRawPeer(t, tc.cfg, h)
			p.handshake()
			p.headers(1, false, ":method", "CONNECT", ":authority", "1.1.1.1:80")
			p.read(isStatus(1))
			if tc.abort {
				if !p.srv.Abort(p.served(), errAborted) {
					t.Fatal("Abort did not find the connection")
				}
				if p.srv.Abort(&net.TCPConn{}, errAborted) {
					t.Error("Abort found a connection it does not serve")
				}
			}
			var ga *http2.GoAwayFrame
			pings := 0
			var err error
			for {
				var f http2.Frame
				if f, err = p.fr.ReadFrame(); err != nil {
					break
				}
				if ga != nil {
					t.Errorf("%T after GOAWAY", f)
				}
				switch f := f.(type) {
				case *http2.PingFrame:
					if !f.IsAck() {
						pings++
					}
				case *http2.GoAwayFrame:
					ga = f
				}
			}
			if !errors.Is(err, io.EOF) {
				t.Errorf("end of the connection: %v, want EOF", err)
			}
			switch {
			case ga == nil:
				t.Error("no GOAWAY before the close")
			case ga.LastStreamID != 1 || ga.ErrCode != http2.ErrCodeNo:
				t.Errorf("GOAWAY: last=%d code=%v, want last=1 NO_ERROR", ga.LastStreamID, ga.ErrCode)
			}
			if !tc.abort && pings == 0 {
				t.Error("the keepalive sent no PING before giving up")
			}
			select {
			case err := <-streamErr:
				if !errors.Is(err, tc.want) {
					t.Errorf("the open stream's read: %v, want %v", err, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the open stream did not end")
			}
			select {
			case err := <-p.done:
				p.done <- err // for the cleanup
				if !errors.Is(err, tc.want) {
					t.Errorf("ServeConn: %v, want %v", err, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("ServeConn did not return")
			}
		})
	}
}

// TestAbortWhileWriting: streams writing when Server.Abort ends their connection all fail with
// the abort's cause, not with an error of their own, whichever of them writes the GOAWAY. (That
// writer closes the connection before it lets the write lock go, so the next one cannot find the
// connection closing and fail it first; that window is too narrow for this test to hit often.)
func TestAbortWhileWriting(t *testing.T) {
	errAborted := errors.New("aborted by the test")
	const streams = 8
	for range 20 {
		writeErr := make(chan error, streams)
		var started sync.WaitGroup
		started.Add(streams)
		h := HandlerFunc(func(s *Stream, req *Request) {
			s.Respond(200)
			started.Done()
			b := []byte("x")
			for {
				if _, err := s.Write(b); err != nil {
					writeErr <- err
					return
				}
			}
		})
		p := newRawPeer(t, Config{}, h)
		p.handshake()
		// Windows that never run out: the writers meet only at the write lock.
		p.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
		p.fr.WriteWindowUpdate(0, 1<<31-1-65535)
		go io.Copy(io.Discard, p.nc) // a peer that reads everything
		for i := range uint32(streams) {
			p.headers(2*i+1, false, ":method", "CONNECT", ":authority", "1.1.1.1:80")
		}
		started.Wait()
		p.srv.Abort(p.served(), errAborted)
		for range streams {
			select {
			case err := <-writeErr:
				if !errors.Is(err, errAborted) {
					t.Fatalf("a writing stream ended with %v, want the abort's cause", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a writing stream did not end")
			}
		}
		p.nc.Close()
	}
}

func TestConnectionErrorsSendGoAway(t *testing.T) {
	tests := []struct {
		name  string
		write func(fr *http2.Framer)
		want  http2.ErrCode
	}{
		{"DATA on stream 0", func(fr *http2.Framer) { fr.WriteData(0, false, []byte("x")) }, http2.ErrCodeProtocol},
		{"DATA on idle stream", func(fr *http2.Framer) { fr.WriteData(9, false, []byte("x")) }, http2.ErrCodeProtocol},
		{"zero connection WINDOW_UPDATE", func(fr *http2.Framer) { fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 0, []byte{0, 0, 0, 0}) }, http2.ErrCodeProtocol},
		{"even stream id", func(fr *http2.Framer) {
			var b bytes.Buffer
			hpack.NewEncoder(&b).WriteField(hpack.HeaderField{Name: ":method", Value: "CONNECT"})
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2, BlockFragment: b.Bytes(), EndHeaders: true})
		}, http2.ErrCodeProtocol},
		// x/net makes this a stream error; the block is not decoded, so
		// the HPACK state is lost and the connection must go (RFC 9113 6.2).
		{"HEADERS padding exceeds payload", func(fr *http2.Framer) {
			fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersPadded|http2.FlagHeadersEndHeaders, 3, []byte{5, 0x82})
		}, http2.ErrCodeProtocol},
		{"HEADERS too short for its priority", func(fr *http2.Framer) {
			fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersPriority|http2.FlagHeadersEndHeaders, 3, []byte{0, 0, 0})
		}, http2.ErrCodeFrameSize},
		{"frame too large", func(fr *http2.Framer) {
			fr.WriteRawFrame(http2.FrameData, 0, 1, make([]byte, 17<<10))
		}, http2.ErrCodeFrameSize},
		{"connection window exceeded", func(fr *http2.Framer) {
			fr.WriteRawFrame(http2.FramePing, 0, 0, make([]byte, 8)) // warm-up
			for range 5 {
				fr.WriteRawFrame(http2.FrameData, 0, 1, make([]byte, 16<<10))
			}
		}, http2.ErrCodeFlowControl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{MaxFrameSize: 16 << 10, ConnWindow: 65535, StreamWindow: 1 << 20}
			block := make(chan struct{})
			defer close(block)
			h := HandlerFunc(func(s *Stream, req *Request) { s.Respond(200); <-block })
			p := newRawPeer(t, cfg, h)
			p.handshake()
			p.headers(1, false, ":method", "CONNECT", ":authority", "1.1.1.1:80")
			p.read(isStatus(1))
			go tt.write(p.fr)
			ga := p.read(isGoAway).(*http2.GoAwayFrame)
			if ga.ErrCode != tt.want {
				t.Errorf("GOAWAY code: got %v, want %v", ga.ErrCode, tt.want)
			}
			// Then the server closes the connection.
			for {
				if _, err := p.fr.ReadFrame(); err != nil {
					if !errors.Is(err, io.EOF) {
						t.Errorf("after GOAWAY: got %v, want EOF", err)
					}
					break
				}
			}
		})
	}
}

func TestPingIsAnswered(t *testing.T) {
	p := newRawPeer(t, Config{}, echo)
	p.handshake()
	data := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	p.fr.WritePing(false, data)
	f := p.read(func(f http2.Frame) bool { pf, ok := f.(*http2.PingFrame); return ok && pf.IsAck() }).(*http2.PingFrame)
	if f.Data != data {
		t.Errorf("PING ack data: got %v, want %v", f.Data, data)
	}
}
