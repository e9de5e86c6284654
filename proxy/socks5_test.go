package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// socksPeer is the client's side of a handshake: what the client sent (read by the handshake)
// and what the handshake answered.
type socksPeer struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (s *socksPeer) Read(p []byte) (int, error)  { return s.in.Read(p) }
func (s *socksPeer) Write(p []byte) (int, error) { return s.out.Write(p) }

// meshName is the one name socksTestResolve knows.
const meshName = "echo.default.svc.cluster.local"

var meshNameAddr = netip.MustParseAddr("10.96.0.10")

func socksTestResolve(_ context.Context, name string) netip.Addr {
	if name == meshName {
		return meshNameAddr
	}
	return netip.Addr{}
}

var (
	socksChoseNone = []byte{5, 0}
	socksNoMethod  = []byte{5, 0xff}
)

// socksReplyBytes is the 10-byte reply with code rep and the bound address 0.0.0.0:0.
func socksReplyBytes(rep byte) []byte { return []byte{5, rep, 0, 1, 0, 0, 0, 0, 0, 0} }

func TestSOCKSHandshake(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	port := func(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }
	v6 := netip.MustParseAddr("fd00::7")
	mapped := netip.AddrFrom16(netip.MustParseAddr("10.244.0.9").As16())
	name := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	const early = "early bytes"

	tests := []struct {
		name    string
		in      []byte
		want    netip.AddrPort // zero: an error is expected
		replies []byte
	}{
		{
			name:    "IPv4 with pipelined data",
			in:      cat([]byte{5, 1, 0}, []byte{5, 1, 0, 1, 10, 244, 0, 3}, port(8080), []byte(early)),
			want:    netip.MustParseAddrPort("10.244.0.3:8080"),
			replies: cat(socksChoseNone, socksReplyBytes(0)),
		},
		{
			name:    "no authentication among others",
			in:      cat([]byte{5, 3, 2, 1, 0}, []byte{5, 1, 0, 1, 10, 244, 0, 3}, port(80), []byte(early)),
			want:    netip.MustParseAddrPort("10.244.0.3:80"),
			replies: cat(socksChoseNone, socksReplyBytes(0)),
		},
		{
			name:    "IPv6",
			in:      cat([]byte{5, 1, 0}, []byte{5, 1, 0, 4}, v6.AsSlice(), port(443), []byte(early)),
			want:    netip.AddrPortFrom(v6, 443),
			replies: cat(socksChoseNone, socksReplyBytes(0)),
		},
		{
			name:    "IPv4-mapped IPv6 is unmapped",
			in:      cat([]byte{5, 1, 0}, []byte{5, 1, 0, 4}, mapped.AsSlice(), port(9), []byte(early)),
			want:    netip.MustParseAddrPort("10.244.0.9:9"),
			replies: cat(socksChoseNone, socksReplyBytes(0)),
		},
		{
			name:    "a name that resolves",
			in:      cat([]byte{5, 1, 0}, []byte{5, 1, 0, 3}, name(meshName), port(80), []byte(early)),
			want:    netip.AddrPortFrom(meshNameAddr, 80),
			replies: cat(socksChoseNone, socksReplyBytes(0)),
		},
		{
			name:    "a name that does not resolve: host unreachable",
			in:      cat([]byte{5, 1, 0}, []byte{5, 1, 0, 3}, name("nowhere.invalid"), port(80), []byte(early)),
			replies: cat(socksChoseNone, socksReplyBytes(4)),
		},
		{
			name:    "only username/password offered",
			in:      cat([]byte{5, 1, 2}, []byte{5, 1, 0, 1, 10, 244, 0, 3}, port(80)),
			replies: socksNoMethod,
		},
		{
			name:    "no methods at all",
			in:      cat([]byte{5, 0}, []byte{5, 1, 0, 1, 10, 244, 0, 3}, port(80)),
			replies: socksNoMethod,
		},
		{
			name: "SOCKS4 greeting",
			in:   cat([]byte{4, 1, 0, 80, 10, 244, 0, 3, 0}),
		},
		{
			name:    "BIND",
			in:      cat([]byte{5, 1, 0}, []byte{5, 2, 0, 1, 10, 244, 0, 3}, port(80)),
			replies: cat(socksChoseNone, socksReplyBytes(7)),
		},
		{
			name:    "wrong version in the request",
			in:      cat([]byte{5, 1, 0}, []byte{4, 1, 0, 1, 10, 244, 0, 3}, port(80)),
			replies: cat(socksChoseNone, socksReplyBytes(7)),
		},
		{
			name:    "unknown address type",
			in:      cat([]byte{5, 1, 0}, []byte{5, 1, 0, 9, 10, 244, 0, 3}, port(80)),
			replies: cat(socksChoseNone, socksReplyBytes(8)),
		},
		{
			name: "greeting cut short",
			in:   []byte{5, 3, 0},
		},
		{
			name:    "address cut short",
			in:      cat([]byte{5, 1, 0}, []byte{5, 1, 0, 4, 0xfd, 0}),
			replies: socksChoseNone,
		},
		{
			name:    "port cut short",
			in:      cat([]byte{5, 1, 0}, []byte{5, 1, 0, 1, 10, 244, 0, 3, 0}),
			replies: socksChoseNone,
		},
		{
			name:    "name cut short",
			in:      cat([]byte{5, 1, 0}, []byte{5, 1, 0, 3, 20}, []byte("echo")),
			replies: socksChoseNone,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peer := &socksPeer{in: bytes.NewReader(tt.in)}
			got, err := socksHandshake(time.Now().Add(time.Minute), peer, socksTestResolve)
			if tt.want.IsValid() {
				if err != nil || got != tt.want {
					t.Fatalf("handshake = %v, %v; want %v", got, err, tt.want)
				}
				// What the client pipelined behind its request is left for the relay.
				if rest, _ := io.ReadAll(peer.in); string(rest) != early {
					t.Errorf("left unread %q, want %q", rest, early)
				}
			} else if err == nil {
				t.Fatalf("handshake = %v, want an error", got)
			}
			if !bytes.Equal(peer.out.Bytes(), tt.replies) {
				t.Errorf("replies % x, want % x", peer.out.Bytes(), tt.replies)
			}
		})
	}
}

// TestSOCKSResolveWithinDeadline: the name lookup runs under the handshake's context, so a
// resolver that does not answer cannot hold the handshake past its deadline.
func TestSOCKSResolveWithinDeadline(t *testing.T) {
	in := append([]byte{5, 1, 0, 5, 1, 0, 3, byte(len(meshName))}, meshName...)
	in = append(in, 0, 80)
	deadline := time.Now().Add(50 * time.Millisecond)
	var sawDeadline bool
	slow := func(ctx context.Context, _ string) netip.Addr {
		_, sawDeadline = ctx.Deadline()
		<-ctx.Done()
		return netip.Addr{}
	}
	done := make(chan error, 1)
	go func() {
		_, err := socksHandshake(deadline, &socksPeer{in: bytes.NewReader(in)}, slow)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a lookup that timed out gave a destination")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handshake outlived its context's deadline")
	}
	if !sawDeadline {
		t.Error("the resolver was not given the handshake's deadline")
	}
}

// TestSOCKSRefusesAuthOnlyClient: through the proxy's SOCKS5 port, a client that offers only
// username/password gets "no acceptable methods" and the connection closed, and no connection
// reaches the app.
func TestSOCKSRefusesAuthOnlyClient(t *testing.T) {
	e := newEnv(t)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP.AsSlice()}}
	c, err := d.Dial("tcp", netip.AddrPortFrom(serverIP, e.ports.SOCKS5).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The greeting alone: a request behind it, unread when the proxy closes, would turn its close
	// into a reset that can overtake the reply.
	if _, err := c.Write([]byte{5, 1, 2}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c) // to the proxy's close: a deadline error if it keeps the connection
	if err != nil {
		t.Fatalf("reading the reply: %v (after % x)", err, got)
	}
	if !bytes.Equal(got, socksNoMethod) {
		t.Fatalf("reply % x, want % x and the connection closed", got, socksNoMethod)
	}
	if n := e.appConns.Load(); n != 0 {
		t.Errorf("the app saw %d connections, want none", n)
	}
}

// FuzzSOCKSHandshake: whatever a client sends, the handshake reads at most one greeting and one
// request, never past them; it answers with the replies RFC 1928 allows; and a destination it
// returns is the one the request encoded.
func FuzzSOCKSHandshake(f *testing.F) {
	f.Add([]byte{5, 1, 0, 5, 1, 0, 1, 10, 244, 0, 3, 0, 80, 'x'})
	f.Add(append(append([]byte{5, 2, 2, 0, 5, 1, 0, 3, byte(len(meshName))}, meshName...), 1, 187))
	f.Add([]byte{5, 1, 0, 5, 1, 0, 4, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 22})
	f.Add([]byte{5, 1, 0, 5, 3, 0, 1})
	f.Add([]byte{5, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		peer := &socksPeer{in: bytes.NewReader(in)}
		got, err := socksHandshake(time.Now().Add(time.Minute), peer, socksTestResolve)
		used := in[:len(in)-peer.in.Len()]
		out := peer.out.Bytes()
		if err == nil {
			if !bytes.Equal(out, append(append([]byte{}, socksChoseNone...), socksReplyBytes(0)...)) {
				t.Fatalf("success with replies % x", out)
			}
			if want, ok := socksRequestDest(used); !ok || want != got {
				t.Fatalf("read % x and returned %v; the request encodes %v (%v)", used, got, want, ok)
			}
			return
		}
		// Failure: nothing, "no acceptable method", or the method chosen and maybe one failure
		// reply; never a success.
		switch {
		case len(out) == 0, bytes.Equal(out, socksNoMethod), bytes.Equal(out, socksChoseNone):
		case len(out) == 12 && bytes.Equal(out[:2], socksChoseNone) &&
			bytes.Equal(out[2:], socksReplyBytes(out[3])) && out[3] != socksRepOK:
		default:
			t.Fatalf("failed (%v) with replies % x", err, out)
		}
		if len(used) > 2+255+4+1+255+2 {
			t.Fatalf("read %d bytes, more than a greeting and a request can hold", len(used))
		}
	})
}

// socksRequestDest decodes the destination of a greeting and request that make up b exactly,
// with socksTestResolve for names; ok is false when b is not exactly those two messages.
func socksRequestDest(b []byte) (dst netip.AddrPort, ok bool) {
	if len(b) < 2 || b[0] != 5 || len(b) < 2+int(b[1]) || bytes.IndexByte(b[2:2+int(b[1])], 0) < 0 {
		return dst, false
	}
	r := b[2+int(b[1]):]
	if len(r) < 4 || r[0] != 5 || r[1] != 1 {
		return dst, false
	}
	var addr netip.Addr
	var rest []byte
	switch a := r[4:]; r[3] {
	case 1:
		if len(a) < 4 {
			return dst, false
		}
		addr, rest = netip.AddrFrom4([4]byte(a[:4])), a[4:]
	case 4:
		if len(a) < 16 {
			return dst, false
		}
		addr, rest = netip.AddrFrom16([16]byte(a[:16])).Unmap(), a[16:]
	case 3:
		if len(a) < 1 || len(a) < 1+int(a[0]) {
			return dst, false
		}
		addr, rest = socksTestResolve(context.Background(), string(a[1:1+int(a[0])])), a[1+int(a[0]):]
	default:
		return dst, false
	}
	if len(rest) != 2 || !addr.IsValid() {
		return dst, false
	}
	return netip.AddrPortFrom(addr, binary.BigEndian.Uint16(rest)), true
}
