package record

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/tls/certs/certtest"
	"github.com/ztunnel-go/ztunnel/tls/identity"
)

// pki is one CA and a leaf for each side, shared by the tests.
type pki struct {
	server, client *tls.Config
}

func newPKI(t testing.TB) pki {
	t.Helper()
	ca := certtest.NewCA(t, "record-test")
	now := time.Now()
	leaf := func(sa string) tls.Certificate {
		return ca.IssueLeaf(t, identity.ID{TrustDomain: "cluster.local", Namespace: "ns", ServiceAccount: sa},
			now.Add(-time.Hour), now.Add(time.Hour))
	}
	return pki{
		server: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{leaf("server")},
			ClientAuth:   tls.RequireAnyClientCert,
			NextProtos:   []string{"h2"},
		},
		client: &tls.Config{
			MinVersion:         tls.VersionTLS13,
			Certificates:       []tls.Certificate{leaf("client")},
			InsecureSkipVerify: true, // the record layer is under test, not verification
			NextProtos:         []string{"h2"},
		},
	}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a, r.c
}

// side says which ends run this package's record layer; the others are
// plain *tls.Conn.
type side struct{ client, server bool }

// connect hands a TCP pair to a client and a server, each ours or crypto/tls's.
func connect(t testing.TB, p pki, ours side) (client, server net.Conn) {
	t.Helper()
	a, b := tcpPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var serr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if ours.server {
			server, _, serr = Handshake(ctx, b, p.server, true)
			return
		}
		tc := tls.Server(b, p.server)
		serr = tc.HandshakeContext(ctx)
		server = tc
	}()
	var cerr error
	if ours.client {
		client, _, cerr = Handshake(ctx, a, p.client, false)
	} else {
		tc := tls.Client(a, p.client)
		cerr = tc.HandshakeContext(ctx)
		client = tc
	}
	wg.Wait()
	if cerr != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, serr)
	}
	for _, c := range []struct {
		c    net.Conn
		ours bool
	}{{client, ours.client}, {server, ours.server}} {
		if _, isOurs := c.c.(*Conn); isOurs != c.ours {
			t.Fatalf("got %T, want this package's Conn: %v", c.c, c.ours)
		}
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// connectOurs is connect that returns our end first: the client when ours
// names the client, the server otherwise.
func connectOurs(t testing.TB, p pki, ours side) (mine, peer net.Conn) {
	t.Helper()
	c, s := connect(t, p, ours)
	if ours.server {
		return s, c
	}
	return c, s
}

// exchange sends size random bytes each way at once, in writes of up to
// chunk bytes, and checks what arrives.
func exchange(t *testing.T, a, b net.Conn, size, chunk int) {
	t.Helper()
	send := func(c net.Conn, data []byte) error {
		for len(data) > 0 {
			k := min(chunk, len(data))
			if _, err := c.Write(data[:k]); err != nil {
				return err
			}
			if f, ok := c.(interface{ Flush() error }); ok {
				if err := f.Flush(); err != nil {
					return err
				}
			}
			data = data[k:]
		}
		return nil
	}
	ab, ba := make([]byte, size), make([]byte, size)
	rand.Read(ab)
	rand.Read(ba)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	check := func(c net.Conn, want []byte) {
		defer wg.Done()
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c, got); err != nil {
			errs <- err
			return
		}
		if !bytes.Equal(got, want) {
			errs <- errors.New("received bytes differ from those sent")
		}
	}
	wg.Add(4)
	go func() { defer wg.Done(); errs <- send(a, ab) }()
	go func() { defer wg.Done(); errs <- send(b, ba) }()
	go check(b, ab)
	go check(a, ba)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestInterop: each side of this package talks to crypto/tls, and to
// itself, in both directions at once, from single bytes to many records.
func TestInterop(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		name string
		ours side
	}{
		{"ours-client", side{client: true}},
		{"ours-server", side{server: true}},
		{"ours-both", side{client: true, server: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, size := range []struct{ total, chunk int }{{1, 1}, {1000, 7}, {100_000, 16_384}, {3 << 20, 100_000}} {
				c, s := connect(t, p, tc.ours)
				exchange(t, c, s, size.total, size.chunk)
			}
		})
	}
}

// TestConfigForClient: a server Config that picks its Config per client (as
// ztunnel picks the certificate of the local workload) still gets the
// record layer, and a KeyLogWriter of the picked Config still gets its lines.
func TestConfigForClient(t *testing.T) {
	p := newPKI(t)
	var logged bytes.Buffer
	picked := p.server.Clone()
	picked.KeyLogWriter = &logged
	p.server = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return picked, nil }}
	c, s := connect(t, p, side{client: true, server: true})
	exchange(t, c, s, 100_000, 10_000)
	if !strings.Contains(logged.String(), "SERVER_TRAFFIC_SECRET_0") {
		t.Fatalf("the picked Config's KeyLogWriter got %q", logged.String())
	}
}

// TestBufferedWritesOneSyscall: with BufferWrites, what is written before
// Flush leaves in one write of several records, and the peer reads it all.
func TestBufferedWritesOneSyscall(t *testing.T) {
	p := newPKI(t)
	c, s := connect(t, p, side{client: true})
	rc := c.(*Conn)
	wc := &countWrites{Conn: rc.conn}
	rc.conn, rc.direct = wc, false // writes go through the counter
	rc.BufferWrites()
	data := make([]byte, 100_000) // seven records
	rand.Read(data)
	for i := 0; i < len(data); i += 10_000 {
		if _, err := rc.Write(data[i : i+10_000]); err != nil {
			t.Fatal(err)
		}
	}
	if wc.n != 0 {
		t.Fatalf("%d writes before Flush", wc.n)
	}
	if err := rc.Flush(); err != nil {
		t.Fatal(err)
	}
	if wc.n != 1 {
		t.Fatalf("Flush made %d writes, want 1", wc.n)
	}
	got := make([]byte, len(data))
	if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("peer read: %v, equal %v", err, bytes.Equal(got, data))
	}
}

type countWrites struct {
	net.Conn
	n     int // writes
	bytes int // bytes written
}

func (w *countWrites) Write(p []byte) (int, error) {
	w.n++
	w.bytes += len(p)
	return w.Conn.Write(p)
}

// TestPlaintextWithin: a Write of PlaintextWithin(wire) bytes and its Flush send at most
// wire bytes in one write, and one byte more would not fit, for wires around the record
// boundaries and the sizes of TCP packets.
func TestPlaintextWithin(t *testing.T) {
	c, peer, _ := rawPeer(t)
	go io.Copy(io.Discard, peer)
	wc := &countWrites{Conn: c.conn}
	c.conn, c.direct = wc, false // writes go through the counter
	c.BufferWrites()
	data := make([]byte, 1<<17)
	const full = recordHeaderLen + maxPlaintext + 1 + tagLen
	for _, wire := range []int{
		recordHeaderLen + 1 + tagLen + 1, 100, full - 1, full, full + 22, full + 23, full + 24,
		2*full - 1, 3*full + 5000, 63_712, 64_240, 65_160, 65_483, 4 * full, 4*full + 23,
	} {
		for _, extra := range []int{0, 1} {
			n := c.PlaintextWithin(wire) + extra
			wc.n, wc.bytes = 0, 0
			if _, err := c.Write(data[:n]); err != nil {
				t.Fatal(err)
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			if wc.n != 1 {
				t.Fatalf("wire %d: %d bytes took %d writes", wire, n, wc.n)
			}
			if fits := wc.bytes <= wire; fits != (extra == 0) {
				t.Errorf("wire %d: %d bytes sent as %d", wire, n, wc.bytes)
			}
		}
	}
	if got := c.PlaintextWithin(recordHeaderLen + 1 + tagLen); got != 0 {
		t.Errorf("PlaintextWithin(one record's overhead) = %d, want 0", got)
	}
	if got := c.PlaintextWithin(-1); got != 0 {
		t.Errorf("PlaintextWithin(-1) = %d, want 0", got)
	}
}

// TestKeyUpdateRequested: we ask a crypto/tls peer for a key update; it
// answers with its own, and data keeps flowing both ways under the new keys.
func TestKeyUpdateRequested(t *testing.T) {
	p := newPKI(t)
	for _, ours := range []side{{client: true}, {server: true}} {
		mine, peer := connectOurs(t, p, ours)
		rc := mine.(*Conn)
		exchange(t, mine, peer, 50_000, 20_000)
		rc.rmu.Lock()
		readBefore := rc.rd.secret
		rc.rmu.Unlock()
		rc.wmu.Lock()
		writeBefore := rc.wr.secret
		err := rc.keyUpdateLocked(true)
		if err == nil {
			err = rc.flushLocked()
		}
		rc.wmu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		// The peer reads our KeyUpdate with the next data and answers it
		// (its data of the same exchange may precede the answer, so a
		// second exchange follows); both directions then run under new keys.
		exchange(t, mine, peer, 50_000, 20_000)
		exchange(t, mine, peer, 1000, 1000)
		rc.rmu.Lock()
		readAfter := rc.rd.secret
		rc.rmu.Unlock()
		rc.wmu.Lock()
		writeAfter := rc.wr.secret
		rc.wmu.Unlock()
		if bytes.Equal(writeBefore, writeAfter) {
			t.Fatal("our write key was not updated")
		}
		if bytes.Equal(readBefore, readAfter) {
			t.Fatal("the peer's answering KeyUpdate was not applied")
		}
	}
}

// TestAES256: the SHA-384 suite, which crypto/tls never picks between two
// Go peers on AES hardware (Rust ztunnels may), between two Conns keyed
// from the same secrets.
func TestAES256(t *testing.T) {
	a, b := tcpPair(t)
	s := suites[tls.TLS_AES_256_GCM_SHA384]
	k1, k2 := make([]byte, 48), make([]byte, 48)
	rand.Read(k1)
	rand.Read(k2)
	c1, err := newConn(a, s, k1, k2, false)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := newConn(b, s, k2, k1, true)
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, c1, c2, 300_000, 50_000)
	// A key update each way keeps them in step.
	c1.wmu.Lock()
	err = c1.keyUpdateLocked(true)
	c1.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, c1, c2, 100_000, 30_000)
}

// TestRekeyBeforeLimit: we update our own key every rekeyAfter records, and
// a crypto/tls peer follows.
func TestRekeyBeforeLimit(t *testing.T) {
	saved := rekeyAfter
	rekeyAfter = 3
	t.Cleanup(func() { rekeyAfter = saved })
	p := newPKI(t)
	c, s := connect(t, p, side{client: true})
	exchange(t, c, s, 200_000, 1000) // ~200 records, ~66 key updates
	rc := c.(*Conn)
	rc.wmu.Lock()
	seq := rc.wr.seq
	rc.wmu.Unlock()
	if seq > 3 {
		t.Fatalf("write sequence %d past rekeyAfter", seq)
	}
}

// TestTicketsIgnored: a crypto/tls server that sends session tickets; our
// client drops them and reads on.
func TestTicketsIgnored(t *testing.T) {
	p := newPKI(t)
	p.server.SessionTicketsDisabled = false
	p.client.ClientSessionCache = nil
	c, s := connect(t, p, side{client: true})
	exchange(t, c, s, 10_000, 1000)
}

// TestCloseNotify: Close sends close_notify both ways, and the reader sees
// io.EOF after every byte sent before it.
func TestCloseNotify(t *testing.T) {
	p := newPKI(t)
	for _, ours := range []side{{client: true}, {server: true}} {
		mine, peer := connectOurs(t, p, ours)
		if _, err := mine.Write([]byte("last words")); err != nil {
			t.Fatal(err)
		}
		mine.Close()
		got, err := io.ReadAll(peer)
		if err != nil || string(got) != "last words" {
			t.Fatalf("peer read %q, %v; want the bytes then io.EOF", got, err)
		}

		mine, peer = connectOurs(t, p, ours)
		peer.Write([]byte("bye"))
		peer.Close()
		got, err = io.ReadAll(mine)
		if err != nil || string(got) != "bye" {
			t.Fatalf("we read %q, %v; want the bytes then io.EOF", got, err)
		}
	}
}

// TestDeadlineNotSticky: a read deadline ends a Read, holds no buffer, and a
// later Read still gets data.
func TestDeadlineNotSticky(t *testing.T) {
	p := newPKI(t)
	c, s := connect(t, p, side{client: true})
	rc := c.(*Conn)
	rc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := rc.Read(make([]byte, 10))
	if !isTimeout(err) {
		t.Fatalf("Read: %v, want a timeout", err)
	}
	rc.rmu.Lock()
	held := rc.in != nil || rc.pt != nil
	rc.rmu.Unlock()
	if held {
		t.Fatal("a Read that timed out holds a buffer")
	}
	rc.SetReadDeadline(time.Time{})
	s.Write([]byte("later"))
	buf := make([]byte, 10)
	n, err := rc.Read(buf)
	if err != nil || string(buf[:n]) != "later" {
		t.Fatalf("Read after the deadline: %q, %v", buf[:n], err)
	}
}

// TestIdleHoldsNoBuffer: once what arrived was read and what was written
// was flushed, a Conn holds no buffer.
func TestIdleHoldsNoBuffer(t *testing.T) {
	p := newPKI(t)
	c, s := connect(t, p, side{client: true, server: true})
	exchange(t, c, s, 500_000, 64<<10)
	for _, x := range []net.Conn{c, s} {
		rc := x.(*Conn)
		rc.rmu.Lock()
		rc.wmu.Lock()
		held := rc.in != nil || rc.pt != nil || rc.out != nil
		rc.wmu.Unlock()
		rc.rmu.Unlock()
		if held {
			t.Fatal("an idle Conn holds a buffer")
		}
	}
}

// TestWaitingReaderHoldsNoBuffer: a reader parked on an empty socket (the
// HBONE read loop waits in Peek for the next frame header) holds no
// plaintext buffer, so idle pooled connections cost no 64 KiB each. The
// socket read callback, which runs while the reader waits, looks.
func TestWaitingReaderHoldsNoBuffer(t *testing.T) {
	p := newPKI(t)
	c, s := connect(t, p, side{client: true, server: true})
	exchange(t, c, s, 100_000, 16<<10)
	type peeked struct {
		b           []byte
		err         error
		calls, held int
	}
	results := make(chan peeked, 2)
	for _, x := range []net.Conn{c, s} {
		rc := x.(*Conn)
		var calls, held int // written by the reader's goroutine only
		readFD := rc.readFn
		rc.readFn = func(fd uintptr) bool {
			calls++
			if rc.pt != nil {
				held++
			}
			return readFD(fd)
		}
		go func() {
			b, err := rc.Peek(9)
			results <- peeked{append([]byte(nil), b...), err, calls, held}
		}()
	}
	time.Sleep(20 * time.Millisecond) // usually the readers wait before the bytes come
	for _, x := range []net.Conn{c, s} {
		if _, err := x.Write([]byte("ninebytes")); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		r := <-results
		if r.err != nil || string(r.b) != "ninebytes" {
			t.Fatalf("Peek after the wait: %q, %v", r.b, r.err)
		}
		if r.calls == 0 || r.held != 0 {
			t.Fatalf("the socket read callback ran %d times, %d of them with a plaintext buffer held; want some, none held", r.calls, r.held)
		}
	}
}

// TestPeekDiscard: the bufio-like methods see the same byte stream as Read.
func TestPeekDiscard(t *testing.T) {
	p := newPKI(t)
	c, s := connect(t, p, side{client: true})
	rc := c.(*Conn)
	data := make([]byte, 60_000)
	rand.Read(data)
	// Nothing is buffered yet: a Peek that would need more than maxPeek
	// is refused.
	if _, err := rc.Peek(maxPeek + 1); !errors.Is(err, bufio.ErrBufferFull) {
		t.Fatalf("Peek past maxPeek: %v", err)
	}
	go s.Write(data)
	b, err := rc.Peek(40_000) // spans three records
	if err != nil || !bytes.Equal(b, data[:40_000]) {
		t.Fatalf("Peek: %v", err)
	}
	// Whatever is buffered can be peeked, even past maxPeek.
	if b, err := rc.Peek(rc.Buffered()); err != nil || len(b) != rc.Buffered() {
		t.Fatalf("Peek(Buffered()): %d bytes, %v", len(b), err)
	}
	if n, err := rc.Discard(39_999); n != 39_999 || err != nil {
		t.Fatalf("Discard: %d, %v", n, err)
	}
	if x, err := rc.ReadByte(); err != nil || x != data[39_999] {
		t.Fatalf("ReadByte: %v", err)
	}
	rest := make([]byte, 20_000)
	if _, err := io.ReadFull(rc, rest); err != nil || !bytes.Equal(rest, data[40_000:]) {
		t.Fatalf("Read after Discard: %v", err)
	}
}

// TestHostileRecords: records a peer must never send end the connection
// with an alert-named error (an *AlertError that says which alert the peer
// was sent, and the header when that was the fault), and the Conn stays
// failed.
func TestHostileRecords(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		name  string
		wire  []byte // written raw to our client's socket after the handshake
		want  string
		desc  uint8
		fault Fault
	}{
		{"plaintext handshake record", []byte{22, 3, 3, 0, 20}, "unexpected record type 22", alertUnexpectedMessage, FaultHeader},
		{"bad version", append([]byte{23, 3, 1, 0, 20}, make([]byte, 20)...), "record version", alertDecodeError, FaultHeader},
		{"oversized", []byte{23, 3, 3, 0x50, 0}, "record of 20480 bytes", alertRecordOverflow, FaultHeader},
		{"too short", []byte{23, 3, 3, 0, 16}, "record of 16 bytes", alertDecodeError, FaultHeader},
		{"forged", append([]byte{23, 3, 3, 0, 40}, make([]byte, 40)...), "authentication failed", alertBadRecordMAC, FaultAuthentication},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := connect(t, p, side{client: true})
			raw := s.(*tls.Conn).NetConn()
			if _, err := raw.Write(tc.wire); err != nil {
				t.Fatal(err)
			}
			_, err := c.Read(make([]byte, 100))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Read: %v, want an error with %q", err, tc.want)
			}
			var ae *AlertError
			switch {
			case !errors.As(err, &ae):
				t.Errorf("Read: %T, want an *AlertError", err)
			case ae.Remote || ae.Desc != tc.desc || ae.Fault != tc.fault:
				t.Errorf("Read: %+v, want alert %d sent for fault %d", *ae, tc.desc, tc.fault)
			case tc.fault == FaultHeader && !bytes.Equal(ae.Header[:], tc.wire[:recordHeaderLen]):
				t.Errorf("Read: header % x, want % x", ae.Header, tc.wire[:recordHeaderLen])
			}
			if _, err2 := c.Read(make([]byte, 100)); err2 == nil {
				t.Fatal("a failed Conn read again")
			}
			if _, werr := c.Write([]byte("x")); werr != err {
				t.Errorf("Write after the alert: %v, want the read's error", werr)
			}
		})
	}
}

// TestSteadyStateAllocs: a buffered write, flush and read of a record
// allocate nothing.
func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("SKIPPED under -race: sync.Pool drops items at random there; the plain test run checks the budget")
	}
	p := newPKI(t)
	c, s := connect(t, p, side{client: true, server: true})
	w, r := c.(*Conn), s.(*Conn)
	w.BufferWrites()
	msg := make([]byte, 16<<10)
	buf := make([]byte, len(msg))
	round := func() {
		w.Write(msg)
		w.Flush()
		io.ReadFull(r, buf)
	}
	round()
	if n := testing.AllocsPerRun(50, round); n != 0 {
		t.Fatalf("%v allocations per write+flush+read, want 0", n)
	}
}

// rawPeer is our client Conn on one end of a TCP pair and, on the other,
// the raw socket and the write protection of a peer that seals records by
// hand (sealRecord, sealPadded).
func rawPeer(t *testing.T) (*Conn, net.Conn, *direction) {
	t.Helper()
	a, b := tcpPair(t)
	s := suites[tls.TLS_AES_128_GCM_SHA256]
	readKey, writeKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	c, err := newConn(a, s, readKey, writeKey, false)
	if err != nil {
		t.Fatal(err)
	}
	w := &direction{}
	if err := w.setSecret(s, readKey); err != nil {
		t.Fatal(err)
	}
	return c, b, w
}

// sealPadded is sealRecord with pad zero bytes after the content type.
func sealPadded(wire []byte, d *direction, typ byte, content []byte, pad int) []byte {
	inner := append(append(append([]byte{}, content...), typ), make([]byte, pad)...)
	hdr := []byte{typeAppData, 3, 3, 0, 0}
	binary.BigEndian.PutUint16(hdr[3:], uint16(len(inner)+tagLen))
	wire = append(wire, hdr...)
	return d.aead.Seal(wire, d.nextNonce(), inner, hdr)
}

// TestPeekEdges: Peek(0) with nothing buffered (the plaintext buffer is
// not held) and a negative count answer like bufio.Reader's, not panic.
func TestPeekEdges(t *testing.T) {
	c, _, _ := rawPeer(t)
	if b, err := c.Peek(0); len(b) != 0 || err != nil {
		t.Fatalf("Peek(0): %q, %v; want nothing, nil", b, err)
	}
	if _, err := c.Peek(-1); !errors.Is(err, bufio.ErrNegativeCount) {
		t.Fatalf("Peek(-1): %v, want bufio.ErrNegativeCount", err)
	}
}

// TestDataBeforeRefusedRecord: application data that arrives in the same
// read as a record the Conn refuses is delivered before the error, so
// io.ReadAll and io.Copy see every byte the peer sent before it.
func TestDataBeforeRefusedRecord(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bad    func(w *direction) []byte
		want   string
		desc   uint8 // the alert's, received or sent
		remote bool
		fault  Fault
	}{
		{"fatal alert", func(w *direction) []byte { return sealRecord(nil, w, typeAlert, []byte{2, 40}) }, "peer sent alert 40", 40, true, FaultOther},
		{"forged record", func(*direction) []byte { return append([]byte{23, 3, 3, 0, 40}, make([]byte, 40)...) }, "authentication failed", alertBadRecordMAC, false, FaultAuthentication},
		{"bad header", func(*direction) []byte { return []byte{22, 3, 3, 0, 20} }, "unexpected record type 22", alertUnexpectedMessage, false, FaultHeader},
		{"unexpected content type", func(w *direction) []byte { return sealRecord(nil, w, 20, []byte{1}) }, "unexpected content type 20", alertUnexpectedMessage, false, FaultContentType},
		{"all padding", func(w *direction) []byte { return sealRecord(nil, w, 0, make([]byte, 3)) }, "record without content type", alertUnexpectedMessage, false, FaultNoContentType},
		{"interleaved handshake message", func(w *direction) []byte {
			return sealRecord(sealRecord(nil, w, typeHandshake, []byte{hsNewSessionTicket, 0}), w, typeAppData, []byte("x"))
		}, "interleaved", alertUnexpectedMessage, false, FaultInterleaved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, peer, w := rawPeer(t)
			wire := sealRecord(nil, w, typeAppData, []byte("hello"))
			wire = append(wire, tc.bad(w)...)
			if _, err := peer.Write(wire); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if string(got) != "hello" || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadAll: %q, %v; want %q, then an error with %q", got, err, "hello", tc.want)
			}
			if ae := (*AlertError)(nil); !errors.As(err, &ae) || ae.Desc != tc.desc || ae.Remote != tc.remote || ae.Fault != tc.fault {
				t.Errorf("ReadAll: %#v, want an *AlertError for alert %d, received: %v, fault %d", err, tc.desc, tc.remote, tc.fault)
			} else if tc.fault == FaultContentType && ae.Type != 20 {
				t.Errorf("ReadAll: content type %d, want 20", ae.Type)
			}
		})
	}
}

// TestPaddedOverflow: a TLSInnerPlaintext longer than 2^14+1 bytes is
// record_overflow even when the excess is padding (RFC 8446, section 5.4),
// as crypto/tls has it.
func TestPaddedOverflow(t *testing.T) {
	for _, tc := range []struct {
		name      string
		content   int
		pad       int
		wantError bool
	}{
		{"full record", maxPlaintext, 0, false},
		{"full record and padding", maxPlaintext, 10, true},
		{"padding to the limit", maxPlaintext - 10, 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, peer, w := rawPeer(t)
			data := bytes.Repeat([]byte{'a'}, tc.content)
			wire := sealPadded(nil, w, typeAppData, data, tc.pad)
			wire = sealRecord(wire, w, typeAlert, []byte{1, alertCloseNotify})
			if _, err := peer.Write(wire); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if tc.wantError {
				if len(got) != 0 || err == nil || !strings.Contains(err.Error(), "plaintext") {
					t.Fatalf("ReadAll: %d bytes, %v; want record_overflow", len(got), err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("ReadAll: %d bytes, %v; want %d bytes", len(got), err, len(data))
			}
		})
	}
}

// TestKeyUpdateWriteFailure: when our answer to the peer's update_requested
// cannot be written, the read side goes on under the peer's new key and the
// write error surfaces at the next Write, as in crypto/tls.
func TestKeyUpdateWriteFailure(t *testing.T) {
	c, peer, w := rawPeer(t)
	c.conn.SetWriteDeadline(time.Now().Add(-time.Second))
	wire := sealRecord(nil, w, typeHandshake, []byte{hsKeyUpdate, 0, 0, 1, 1})
	if err := w.update(); err != nil {
		t.Fatal(err)
	}
	wire = sealRecord(wire, w, typeAppData, []byte("after"))
	if _, err := peer.Write(wire); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "after" {
		t.Fatalf("Read: %q, %v; want %q", buf[:n], err, "after")
	}
	if _, err := c.Write([]byte("x")); !isTimeout(err) {
		t.Fatalf("Write: %v, want the write timeout of the KeyUpdate", err)
	}
}

// TestCloseNotifyDropsTheRest: what follows close_notify in the same read
// is dropped with the ciphertext buffer, which goes back to its pool.
func TestCloseNotifyDropsTheRest(t *testing.T) {
	c, peer, w := rawPeer(t)
	wire := sealRecord(nil, w, typeAppData, []byte("bye"))
	wire = sealRecord(wire, w, typeAlert, []byte{1, alertCloseNotify})
	wire = sealRecord(wire, w, typeAppData, []byte("ignored"))
	if _, err := peer.Write(wire); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "bye" {
		t.Fatalf("ReadAll: %q, %v; want %q", got, err, "bye")
	}
	c.rmu.Lock()
	held := c.in != nil || c.pt != nil
	c.rmu.Unlock()
	if held {
		t.Fatal("a Conn read to its close_notify holds a buffer")
	}
}

// BenchmarkTransfer moves 64 KiB writes one way over loopback TCP, through
// this package's Conn at both ends and through crypto/tls at both ends.
func BenchmarkTransfer(b *testing.B) {
	p := newPKI(b)
	for _, tc := range []struct {
		name string
		ours side
	}{{"record", side{client: true, server: true}}, {"crypto-tls", side{}}} {
		b.Run(tc.name, func(b *testing.B) {
			c, s := connect(b, p, tc.ours)
			if rc, ok := c.(*Conn); ok {
				rc.BufferWrites()
			}
			msg := make([]byte, 64<<10)
			done := make(chan error, 1)
			go func() {
				buf := make([]byte, 64<<10)
				var err error
				for left := b.N * len(msg); left > 0 && err == nil; {
					var n int
					n, err = s.Read(buf)
					left -= n
				}
				done <- err
			}()
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if f, ok := c.(interface{ Flush() error }); ok {
					if err := f.Flush(); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// TestFallbackTLS12: a handshake that ends in TLS 1.2 keeps crypto/tls's
// records (the Conn is the *tls.Conn), and its reads pass through the
// boundary reader untouched.
func TestFallbackTLS12(t *testing.T) {
	p := newPKI(t)
	p.server.MinVersion, p.server.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	p.client.MinVersion = tls.VersionTLS12
	a, b := tcpPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		c   net.Conn
		cs  tls.ConnectionState
		err error
	}
	srv := make(chan result, 1)
	go func() {
		c, cs, err := Handshake(ctx, b, p.server, true)
		srv <- result{c, cs, err}
	}()
	c, cs, err := Handshake(ctx, a, p.client, false)
	if err != nil {
		t.Fatal(err)
	}
	r := <-srv
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer c.Close()
	defer r.c.Close()
	if cs.Version != tls.VersionTLS12 || r.cs.Version != tls.VersionTLS12 {
		t.Fatalf("negotiated %#x / %#x, want TLS 1.2", cs.Version, r.cs.Version)
	}
	for _, x := range []net.Conn{c, r.c} {
		if _, ok := x.(*tls.Conn); !ok {
			t.Fatalf("got %T, want *tls.Conn for TLS 1.2", x)
		}
	}
	exchange(t, c, r.c, 300_000, 50_000)
}

// TestWaitReadable: with the peer silent, WaitReadable reports false after
// its idle time, holding no buffer and leaving no deadline (a later Read
// waits longer than idle); bytes that come are kept for Read; buffered bytes
// and the peer's end answer at once.
func TestWaitReadable(t *testing.T) {
	c, peer, w := rawPeer(t)
	// idle is for the waits that must time out; patience for those that must
	// see the peer's bytes, which a loaded machine may send late.
	const idle, patience = 30 * time.Millisecond, 10 * time.Second
	start := time.Now()
	if c.WaitReadable(idle) {
		t.Fatal("WaitReadable reported true with the peer silent")
	}
	if waited := time.Since(start); waited < idle {
		t.Fatalf("WaitReadable gave up after %v, before its idle time %v", waited, idle)
	}
	c.rmu.Lock()
	held := c.in != nil || c.pt != nil
	c.rmu.Unlock()
	if held {
		t.Fatal("WaitReadable holds a buffer after the idle time")
	}

	// No deadline is left behind: this Read waits for bytes sent later than idle.
	go func() {
		time.Sleep(3 * idle)
		peer.Write(sealRecord(nil, w, typeAppData, []byte("late")))
	}()
	buf := make([]byte, 16)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "late" {
		t.Fatalf("Read after WaitReadable: %q, %v", buf[:n], err)
	}

	// Bytes that come during the wait end it and stay for Read. (The wait
	// is long: on a loaded machine the writer may run late.)
	go func() {
		time.Sleep(idle / 3)
		peer.Write(sealRecord(nil, w, typeAppData, []byte("during")))
	}()
	if !c.WaitReadable(patience) {
		t.Fatal("WaitReadable reported false although the peer wrote")
	}
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "during" {
		t.Fatalf("Read after WaitReadable: %q, %v", buf[:n], err)
	}

	// The deadline a wait sets stays, and a Read that outlasts it reads on.
	// The bytes are there before the wait, so it sees them whatever the
	// machine's load.
	peer.Write(sealRecord(nil, w, typeAppData, []byte("before")))
	if !c.WaitReadable(idle) {
		t.Fatal("WaitReadable reported false with the peer's bytes waiting")
	}
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "before" {
		t.Fatalf("Read after WaitReadable: %q, %v", buf[:n], err)
	}
	go func() {
		time.Sleep(3 * idle)
		peer.Write(sealRecord(nil, w, typeAppData, []byte("after")))
	}()
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "after" {
		t.Fatalf("Read past WaitReadable's deadline: %q, %v", buf[:n], err)
	}

	// Decrypted bytes already buffered answer at once.
	peer.Write(sealRecord(nil, w, typeAppData, []byte("twoparts")))
	if n, err := c.Read(buf[:3]); err != nil || n != 3 {
		t.Fatalf("Read: %d, %v", n, err)
	}
	if !c.WaitReadable(time.Minute) {
		t.Fatal("WaitReadable reported false with decrypted bytes buffered")
	}
	if n, _ := c.Read(buf); string(buf[:n]) != "parts" {
		t.Fatalf("Read: %q", buf[:n])
	}

	// Part of a record answers at once too: the reader must not park with
	// a record half read, and the rest comes without a deadline.
	// The deadline set by the wait that saw the first part passes while
	// Read waits for the rest: Read reads on.
	two := sealRecord(sealRecord(nil, w, typeAppData, []byte("first")), w, typeAppData, []byte("second"))
	half := len(two) - 10
	peer.Write(two[:half])
	if !c.WaitReadable(idle) {
		t.Fatal("WaitReadable reported false with the peer's bytes waiting")
	}
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "first" {
		t.Fatalf("Read: %q, %v", buf[:n], err)
	}
	start = time.Now()
	if !c.WaitReadable(idle) || time.Since(start) > idle/2 {
		t.Fatal("WaitReadable waited with part of a record buffered")
	}
	go func() {
		time.Sleep(3 * idle)
		peer.Write(two[half:])
	}()
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "second" {
		t.Fatalf("Read of the record's rest: %q, %v", buf[:n], err)
	}

	// The peer's end answers, and Read then reports it.
	peer.Close()
	if !c.WaitReadable(time.Minute) {
		t.Fatal("WaitReadable reported false after the peer closed")
	}
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("Read after the peer closed: %v, want io.EOF", err)
	}
	if c.Socket() == nil {
		t.Fatal("a Conn over TCP has no Socket")
	}
}

// TestStateNotKept: once the caller drops the state Handshake returned, the
// peer's parsed certificate is garbage while the connection lives on: a
// *Conn keeps no copy of it (with its certificate chain and the handshake's
// secrets it was 3.7 KiB in 34 objects per server-side connection).
func TestStateNotKept(t *testing.T) {
	p := newPKI(t)
	a, b := tcpPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		tc := tls.Server(b, p.server)
		tc.HandshakeContext(ctx)
		io.Copy(io.Discard, tc)
	}()
	c, cs, err := Handshake(ctx, a, p.client, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*Conn); !ok {
		t.Fatalf("got %T, want this package's Conn", c)
	}
	freed := make(chan struct{})
	runtime.AddCleanup(cs.PeerCertificates[0], func(ch chan struct{}) { close(ch) }, freed)
	cs = tls.ConnectionState{}
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		select {
		case <-freed:
			if _, err := c.Write([]byte("still usable")); err != nil {
				t.Fatalf("write after the state was dropped: %v", err)
			}
			runtime.KeepAlive(c)
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the peer's certificate is still reachable from the connection")
		}
	}
}

// TestWriteErrors: a full socket waits in the netpoller until the write deadline, and a reset
// peer is a *net.OpError for "write" that wraps the errno, kept for the writes after it. The
// Conn writes to the socket itself here (through rawio), so these are that path's errors.
func TestWriteErrors(t *testing.T) {
	c, peer, _ := rawPeer(t)
	if !c.direct || c.raw == nil {
		t.Fatal("the Conn does not write to its socket itself: the rawio write path is not under test")
	}
	data := make([]byte, 1<<20)
	c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	var err error
	start := time.Now()
	for i := 0; i < 64 && err == nil; i++ { // the peer never reads: the buffers fill
		_, err = c.Write(data)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("writing to a peer that does not read: %v after %v, want the deadline", err, time.Since(start))
	}

	c, peer, _ = rawPeer(t)
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close() // a reset
	err = nil
	for i := 0; i < 100 && err == nil; i++ {
		_, err = c.Write(data[:1000])
		time.Sleep(time.Millisecond)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "write" || !(errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("writing to a reset peer: %#v, want a write *net.OpError with EPIPE or ECONNRESET", err)
	}
	if _, again := c.Write(data[:1]); again != err {
		t.Errorf("the next write returned %v, want the same sticky error", again)
	}
}

// throughWrapper is a WriteThrough wrapper that counts the writes that reach it.
type throughWrapper struct {
	countWrites
	through bool
}

func (w *throughWrapper) NetConn() net.Conn   { return w.Conn }
func (w *throughWrapper) WritesThrough() bool { return w.through }

// TestWriteThrough: over a wrapper that writes through, every flush, bulk or small, goes to the
// socket itself (the wrapper sees none of them); over a wrapper that does not write through,
// and over any other wrapper, every flush goes through the wrapper.
func TestWriteThrough(t *testing.T) {
	s := suites[tls.TLS_AES_128_GCM_SHA256]
	key := bytes.Repeat([]byte{1}, 32)
	big := make([]byte, 3*maxPlaintext) // three records, flushed in one write
	for _, through := range []bool{true, false} {
		a, b := tcpPair(t)
		go io.Copy(io.Discard, b)
		w := &throughWrapper{countWrites: countWrites{Conn: a}, through: through}
		c, err := newConn(w, s, key, key, false)
		if err != nil {
			t.Fatal(err)
		}
		if c.direct != through {
			t.Errorf("through=%v: direct %v", through, c.direct)
		}
		if _, err := c.Write(big); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 0, false: 1}[through]; w.n != want {
			t.Errorf("through=%v: a bulk flush made %d writes on the wrapper, want %d", through, w.n, want)
		}
		w.n = 0
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 0, false: 1}[through]; w.n != want {
			t.Errorf("through=%v: a small flush made %d writes on the wrapper, want %d", through, w.n, want)
		}
	}
	a, _ := tcpPair(t)
	c, err := newConn(&countWrites{Conn: a}, s, key, key, false)
	if err != nil {
		t.Fatal(err)
	}
	if c.direct {
		t.Error("a wrapper that is not a WriteThrough is written around")
	}
}
