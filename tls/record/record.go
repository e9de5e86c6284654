package record

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/rawio"
	"github.com/ztunnel-go/ztunnel/tls/aesgcm"
)

// Record layer constants (RFC 8446, section 5).
const (
	recordHeaderLen = 5
	maxPlaintext    = 1 << 14
	maxCiphertext   = maxPlaintext + 256 // the most a peer may send in one record
	tagLen          = 16                 // AES-GCM

	typeAlert     = 21
	typeHandshake = 22
	typeAppData   = 23

	hsNewSessionTicket = 4
	hsKeyUpdate        = 24

	alertCloseNotify       = 0
	alertUnexpectedMessage = 10
	alertBadRecordMAC      = 20
	alertRecordOverflow    = 22
	alertDecodeError       = 50
	alertIllegalParameter  = 47
	alertUserCanceled      = 90
)

// Sizes and limits of this implementation.
const (
	// inSize is the ciphertext buffer: up to four full records per read(2)
	// (crypto/tls reads about one).
	inSize = 4 * (recordHeaderLen + maxCiphertext)
	// ptSize is the plaintext buffer: records are decrypted into it, so the
	// AEAD's pass over the bytes is also their only copy.
	ptSize = 4 * maxCiphertext
	// maxPeek is the most Peek returns: whatever is left unread in the
	// plaintext buffer still leaves room to decrypt one more record.
	maxPeek = ptSize - maxCiphertext
	// outSize is the write buffer: eight full records, i.e. a 64 KiB
	// HTTP/2 DATA frame of each of two streams, sent with one write(2).
	outSize = 8 * (recordHeaderLen + maxPlaintext + 1 + tagLen)
	// maxUseless is how many records in a row may carry no application data
	// (empty records, tickets, key updates, warnings), as in crypto/tls.
	maxUseless = 16
	// maxHandshakeMsg caps a post-handshake message (a ticket is < 64 KiB).
	maxHandshakeMsg = 1 << 17
	// closeNotifyWait bounds the wait to send close_notify on a conn that is
	// not a socket (a socket gets it only if it takes it without waiting).
	closeNotifyWait = time.Second
)

// rekeyAfter is how many records we seal under one key before we update
// it: RFC 8446, section 5.5, allows 2^24.5 full-size AES-GCM records. A
// variable so tests can make it small.
var rekeyAfter uint64 = 1 << 24

var (
	inPool  = sync.Pool{New: func() any { return new([inSize]byte) }}
	ptPool  = sync.Pool{New: func() any { return new([ptSize]byte) }}
	outPool = sync.Pool{New: func() any { return new([outSize]byte) }}
)

// Conn is a TLS 1.3 connection after its handshake: it seals and opens
// application data records itself, with AES-GCM, from the traffic secrets
// crypto/tls negotiated (see Handshake). Compared with a *tls.Conn it
// decrypts straight into its read buffer and encrypts in place in its
// write buffer (one pass over the bytes each way instead of a pass and a
// copy), reads up to four records per system call, and when writes are
// buffered (BufferWrites) sends everything written before Flush with one
// system call. It answers the peer's KeyUpdate, updates its own key before
// the AES-GCM limit, ignores NewSessionTicket, and sends close_notify on
// Close when the socket can take it without waiting.
//
// Besides io.Reader it offers bufio.Reader's Peek, Discard, Buffered and
// ReadByte over the decrypted bytes, so a protocol reader needs no buffer of
// its own. Buffers come from pools and are held only while bytes wait in
// them: an idle Conn holds none.
//
// Reads are serialised with each other, writes with each other; a read and
// a write may run at once, as with net.Conn.
type Conn struct {
	conn  net.Conn        // as given to Handshake: writes, deadlines, addresses, Close
	rconn net.Conn        // the socket under conn, where reads go
	raw   syscall.RawConn // rconn's, to wait for input without a buffer; nil if none
	// server is the side we play; only a client may receive tickets.
	server bool
	closed atomic.Bool

	// Read side, guarded by rmu.
	rmu     sync.Mutex
	rd      direction
	in      *[inSize]byte // ciphertext; nil while empty
	inR     int
	inW     int
	pt      *[ptSize]byte // decrypted application data; nil while empty
	ptR     int
	ptW     int
	hs      []byte             // a post-handshake message still incomplete
	useless int                // records in a row without application data
	rerr    error              // sticky: io.EOF after close_notify, or why reading stopped
	readFn  func(uintptr) bool // c.readFD, made once
	rawN    int                // result of readFD
	rawErr  error              // result of readFD
	// idleDL is the read deadline WaitReadable set, in Unix nanoseconds; 0
	// when the socket's deadline is not WaitReadable's (SetReadDeadline
	// clears it, from any goroutine).
	idleDL atomic.Int64

	// Write side, guarded by wmu.
	wmu       sync.Mutex
	wr        direction
	out       *[outSize]byte // sealed records, then the open one; nil while empty
	outW      int
	open      int // offset in out of the record being filled; -1: none
	buffering bool
	werr      error
	// direct: flushes write to the socket under conn themselves (conn is
	// the socket, or a wrapper that says it writes through).
	direct  bool
	writeFn func(uintptr) bool // c.writeFD, made once
	wp      []byte             // what writeFD has left to write
	wErr    error              // writeFD's system call error
}

func newConn(conn net.Conn, s suite, readSecret, writeSecret []byte, server bool) (*Conn, error) {
	c := &Conn{conn: conn, server: server, open: -1}
	c.readFn = c.readFD
	if err := c.rd.setSecret(s, readSecret); err != nil {
		return nil, err
	}
	if err := c.wr.setSecret(s, writeSecret); err != nil {
		return nil, err
	}
	c.rconn = socketOf(conn)
	if sc, ok := c.rconn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	c.writeFn = c.writeFD
	if c.raw != nil {
		wt, ok := conn.(WriteThrough)
		c.direct = conn == c.rconn || ok && wt.WritesThrough() && wt.NetConn() == c.rconn
	}
	return c, nil
}

// WriteThrough is a conn wrapper that passes every write straight to the conn
// under it (NetConn). Given to Handshake over a socket, it lets the Conn write
// to the socket itself, with rawio: nothing else writes to the wrapper, so no
// bytes can wait in it. hbone.WriteBuffer is one until its BufferWrites.
type WriteThrough interface {
	net.Conn
	NetConn() net.Conn
	WritesThrough() bool
}

// socketOf follows NetConn methods (the wrappers of this module pass reads
// through) down to the innermost conn.
func socketOf(c net.Conn) net.Conn {
	for range 8 {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		inner := u.NetConn()
		if inner == nil || inner == c {
			return c
		}
		c = inner
	}
	return c
}

// NetConn returns the conn given to Handshake.
func (c *Conn) NetConn() net.Conn { return c.conn }

func (c *Conn) LocalAddr() net.Addr  { return c.conn.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error {
	c.idleDL.Store(0) // the read deadline is the caller's now
	return c.conn.SetDeadline(t)
}
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.idleDL.Store(0)
	return c.conn.SetReadDeadline(t)
}
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// ---- read side ----

// AlertError is an alert that ended a connection's reading: one the peer
// sent (Remote), or the one the connection sent the peer for the fault it
// found in the peer's records (Fault says which, when it has a name).
type AlertError struct {
	Desc   uint8 // the alert's description (RFC 8446, section 6)
	Remote bool
	Fault  Fault
	Header [recordHeaderLen]byte // for FaultHeader: the refused header
	Type   uint8                 // for FaultContentType: the record's inner content type
	detail string
}

func (e *AlertError) Error() string {
	if e.Remote {
		return fmt.Sprintf("tls: peer sent alert %d", e.Desc)
	}
	return "tls: " + e.detail
}

// Fault is what was wrong with the peer's records, for an alert the
// connection sent.
type Fault uint8

const (
	FaultOther          Fault = iota // none of those below
	FaultHeader                      // a record refused for its header
	FaultAuthentication              // a record whose authentication failed
	FaultOverflow                    // a record with more plaintext than TLS allows
	FaultNoContentType               // a record whose plaintext is all padding
	FaultInterleaved                 // another record between the parts of a handshake message
	FaultContentType                 // a record of a content type that TLS 1.3 has no use for here
)

func localAlert(desc uint8, detail string) error {
	return &AlertError{Desc: desc, detail: detail}
}

func faultAlert(desc uint8, fault Fault, detail string) error {
	return &AlertError{Desc: desc, Fault: fault, detail: detail}
}

// Read reads decrypted application data.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	if c.ptR == c.ptW {
		if err := c.fillLocked(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.pt[c.ptR:c.ptW])
	c.ptR += n
	c.releasePlainLocked()
	return n, nil
}

// Buffered returns how many decrypted bytes can be read without a system
// call.
func (c *Conn) Buffered() int {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.ptW - c.ptR
}

// Peek returns the next n decrypted bytes without consuming them, reading
// as needed; like bufio.Reader's, the slice is valid until the next read
// call. Any n up to Buffered is returned at once; to read more, n may be at
// most maxPeek (about 48 KiB), larger is bufio.ErrBufferFull. With fewer
// bytes it returns them with the error.
func (c *Conn) Peek(n int) ([]byte, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if n < 0 {
		return nil, bufio.ErrNegativeCount
	}
	if n == 0 {
		return nil, nil // c.pt may be nil, and slicing a nil array pointer panics
	}
	if n <= c.ptW-c.ptR {
		return c.pt[c.ptR : c.ptR+n], nil
	}
	if n > maxPeek {
		return nil, bufio.ErrBufferFull
	}
	for c.ptW-c.ptR < n {
		if err := c.fillLocked(); err != nil {
			if c.pt == nil {
				return nil, err
			}
			return c.pt[c.ptR:c.ptW], err
		}
	}
	if c.pt == nil {
		return nil, nil
	}
	return c.pt[c.ptR : c.ptR+n], nil
}

// Discard skips the next n decrypted bytes, reading as needed.
func (c *Conn) Discard(n int) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	done := 0
	for done < n {
		if c.ptR == c.ptW {
			if err := c.fillLocked(); err != nil {
				return done, err
			}
		}
		k := min(n-done, c.ptW-c.ptR)
		c.ptR += k
		done += k
		c.releasePlainLocked()
	}
	return done, nil
}

// ReadByte reads one decrypted byte.
func (c *Conn) ReadByte() (byte, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.ptR == c.ptW {
		if err := c.fillLocked(); err != nil {
			return 0, err
		}
	}
	b := c.pt[c.ptR]
	c.ptR++
	c.releasePlainLocked()
	return b, nil
}

// releasePlainLocked returns the plaintext buffer to its pool once read.
func (c *Conn) releasePlainLocked() {
	if c.ptR == c.ptW && c.pt != nil {
		ptPool.Put(c.pt)
		c.pt, c.ptR, c.ptW = nil, 0, 0
	}
}

// takePlainLocked gives the Conn a plaintext buffer if it has none.
func (c *Conn) takePlainLocked() {
	if c.pt == nil {
		c.pt = ptPool.Get().(*[ptSize]byte)
		c.ptR, c.ptW = 0, 0
	}
}

// fillLocked adds at least one byte of application data to the plaintext
// buffer, or returns why it cannot: io.EOF after the peer's close_notify,
// an alert, or the socket's error. Every complete record already read is
// decrypted (so several records cost one call), as long as room remains.
func (c *Conn) fillLocked() error {
	if c.rerr != nil {
		return c.rerr
	}
	if c.pt != nil && c.ptR > 0 {
		c.ptW = copy(c.pt[:], c.pt[c.ptR:c.ptW])
		c.ptR = 0
	}
	// start is 0 whenever the plaintext buffer is empty, so it stays right
	// when the buffer is given back below and taken again.
	start := c.ptW
	for {
		for c.inW-c.inR >= recordHeaderLen {
			hdr := c.in[c.inR : c.inR+recordHeaderLen]
			n := int(binary.BigEndian.Uint16(hdr[3:]))
			if err := checkHeader(hdr, n); err != nil {
				return c.failReadAfter(start, err)
			}
			if c.inW-c.inR < recordHeaderLen+n {
				break
			}
			c.takePlainLocked() // only now: a whole record is here to open
			if ptSize-c.ptW < n-tagLen {
				break // no room: what was decrypted is enough for now
			}
			body := c.in[c.inR+recordHeaderLen : c.inR+recordHeaderLen+n]
			err := c.openRecord(hdr, body)
			c.inR += recordHeaderLen + n
			if err != nil {
				return c.failReadAfter(start, err)
			}
			if c.rerr != nil { // close_notify: nothing after it counts
				c.inR = c.inW // so the buffer goes back to its pool
				break
			}
		}
		if c.ptW > start {
			c.releaseInLocked()
			return nil
		}
		if c.rerr != nil {
			c.releaseInLocked()
			return c.rerr
		}
		// Nothing new to read: wait for the socket without a plaintext
		// buffer when none is pending (an idle pooled connection parked
		// in Peek would otherwise keep 64 KiB).
		c.releasePlainLocked()
		if err := c.readSocketLocked(); err != nil {
			if !isTimeout(err) { // a deadline is not the end: the caller may read on
				c.rerr = err
			}
			c.releaseInLocked()
			c.releasePlainLocked()
			return err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// checkHeader validates a record header: after the handshake every TLS 1.3
// record is application_data, version 0x0303, within the size limit.
func checkHeader(hdr []byte, n int) error {
	switch {
	case hdr[0] != typeAppData:
		return headerAlert(hdr, alertUnexpectedMessage, fmt.Sprintf("unexpected record type %d after the handshake", hdr[0]))
	case hdr[1] != 3 || hdr[2] != 3:
		return headerAlert(hdr, alertDecodeError, fmt.Sprintf("unexpected record version %#04x", binary.BigEndian.Uint16(hdr[1:])))
	case n > maxCiphertext:
		return headerAlert(hdr, alertRecordOverflow, fmt.Sprintf("record of %d bytes", n))
	case n < tagLen+1:
		return headerAlert(hdr, alertDecodeError, fmt.Sprintf("record of %d bytes", n))
	}
	return nil
}

// headerAlert is the error of a record refused for its header, hdr: the
// peer is sent the alert desc.
func headerAlert(hdr []byte, desc uint8, detail string) error {
	return &AlertError{Desc: desc, Fault: FaultHeader, Header: [recordHeaderLen]byte(hdr), detail: detail}
}

// releaseInLocked returns the ciphertext buffer to its pool when it holds
// nothing.
func (c *Conn) releaseInLocked() {
	if c.in != nil && c.inR == c.inW {
		inPool.Put(c.in)
		c.in, c.inR, c.inW = nil, 0, 0
	}
}

// readSocketLocked reads more ciphertext. With nothing buffered it waits
// for the socket in the netpoller holding no buffer, and takes one only
// when bytes are there; a partial record waiting for its tail keeps its
// buffer.
func (c *Conn) readSocketLocked() error {
	c.releaseInLocked()
	if c.in != nil && c.inR > 0 {
		c.inW = copy(c.in[:], c.in[c.inR:c.inW])
		c.inR = 0
	}
	if c.in == nil && c.raw != nil {
		err := c.raw.Read(c.readFn)
		if err != nil && c.idleExpired(err) {
			err = c.raw.Read(c.readFn)
		}
		if err != nil {
			return err
		}
		return c.tookRaw()
	}
	if c.in == nil {
		c.in = inPool.Get().(*[inSize]byte)
		c.inR, c.inW = 0, 0
	}
	n, err := c.rconn.Read(c.in[c.inW:])
	if n == 0 && err != nil && c.idleExpired(err) {
		n, err = c.rconn.Read(c.in[c.inW:])
	}
	c.inW += n
	if n > 0 {
		return nil
	}
	if err == io.EOF && c.inW > 0 {
		err = io.ErrUnexpectedEOF // the socket ended inside a record
	}
	return err
}

// tookRaw takes the result readFD left: the ciphertext buffer's fill, or
// the socket's error or end.
func (c *Conn) tookRaw() error {
	n, rerr := c.rawN, c.rawErr
	switch {
	case rerr != nil:
		return &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: rerr}
	case n == 0:
		// The peer closed without close_notify; like crypto/tls we
		// take that as the end at a record boundary.
		return io.EOF
	}
	c.inR, c.inW = 0, n
	return nil
}

// idleExpired reports whether err is WaitReadable's idle deadline passing
// under a read that is not a WaitReadable (the reader was busy reading a
// record, not idle); it then clears the deadline, and the caller reads again.
func (c *Conn) idleExpired(err error) bool {
	if c.idleDL.Load() == 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	c.idleDL.Store(0)
	c.rconn.SetReadDeadline(time.Time{})
	return true
}

// readFD is the RawConn.Read callback of readSocketLocked and WaitReadable:
// it takes a buffer only when the socket has bytes, leaving rawN and rawErr.
// A method value made once (readFn), so a read allocates nothing.
func (c *Conn) readFD(fd uintptr) bool {
	buf := inPool.Get().(*[inSize]byte)
	for {
		c.rawN, c.rawErr = rawio.Read(int(fd), buf[:])
		if c.rawErr != syscall.EINTR {
			break
		}
	}
	if c.rawErr == syscall.EAGAIN {
		inPool.Put(buf)
		return false
	}
	c.in = buf
	return true
}

// WaitReadable waits until Read has something to return without waiting
// (decrypted or encrypted bytes, or the end of reading), or until the socket
// has been silent for between idle/2 and idle; it reports false then. Bytes
// that came are kept for Read. Like Read it holds no buffer while it waits,
// and it returns at once when bytes are already buffered.
//
// The wait's limit is the socket's read deadline, which WaitReadable moves
// only once less than idle/2 of it is left, so a busy reader sets a timer a
// few times per idle rather than at every wait; a later read that the
// deadline interrupts reads again. A caller of WaitReadable therefore sets no
// read deadline of its own while it uses it (SetReadDeadline takes the
// deadline back). Without a raw socket to wait on (see Socket) it reports
// true at once.
func (c *Conn) WaitReadable(idle time.Duration) bool {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil || c.ptW > c.ptR || c.in != nil || c.raw == nil {
		return true
	}
	now := time.Now()
	if dl := c.idleDL.Load(); dl == 0 || dl-now.UnixNano() < int64(idle/2) {
		dl = now.Add(idle).UnixNano()
		c.idleDL.Store(dl)
		c.rconn.SetReadDeadline(time.Unix(0, dl))
	}
	err := c.raw.Read(c.readFn)
	switch {
	case err != nil && c.idleExpired(err):
		return false
	case err != nil:
		return true // closed: Read says so
	}
	if err := c.tookRaw(); err != nil {
		c.rerr = err // the end or an error, for Read to report
	}
	return true
}

// Socket returns the RawConn of the socket that reads come from, so that a
// reader can wait for it elsewhere (an epoll set), or nil when reads go
// through a connection without one.
func (c *Conn) Socket() syscall.RawConn { return c.raw }

// failRead makes err the sticky read error and tells the peer why with an
// alert, if the socket takes it at once; writes then fail with err too, so
// that a writer that finds the connection failed reports why.
func (c *Conn) failRead(err error) error {
	c.rerr = err
	c.inR, c.inW = 0, 0
	c.releaseInLocked()
	var ae *AlertError
	if errors.As(err, &ae) && !ae.Remote {
		c.sendAlertNow(ae.Desc, err)
	}
	if c.ptW == c.ptR {
		c.releasePlainLocked()
	}
	return err
}

// failReadAfter is failRead for a record refused after the application
// data of the records before it was decrypted into the plaintext buffer at
// start: that data is delivered first (the error is sticky, so the next
// fill returns it), as crypto/tls delivers each record before reading the
// next one.
func (c *Conn) failReadAfter(start int, err error) error {
	err = c.failRead(err)
	if c.ptW > start {
		return nil
	}
	return err
}

// openRecord decrypts one record into the plaintext buffer and acts on its
// content type. Only application data stays in the buffer.
func (c *Conn) openRecord(hdr, body []byte) error {
	plain, err := c.rd.aead.Open(c.pt[c.ptW:c.ptW], c.rd.nextNonce(), body, hdr)
	if err != nil {
		return faultAlert(alertBadRecordMAC, FaultAuthentication, "record authentication failed")
	}
	if len(plain) > maxPlaintext+1 {
		// TLSInnerPlaintext, padding included, is at most 2^14+1 bytes
		// (RFC 8446, section 5.4).
		return faultAlert(alertRecordOverflow, FaultOverflow, fmt.Sprintf("record with %d bytes of plaintext", len(plain)))
	}
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 {
		return faultAlert(alertUnexpectedMessage, FaultNoContentType, "record without content type")
	}
	typ, content := plain[i], plain[:i]
	if typ != typeHandshake && len(c.hs) > 0 {
		return faultAlert(alertUnexpectedMessage, FaultInterleaved, "handshake message interleaved with other records")
	}
	if typ == typeAppData && len(content) > 0 {
		c.useless = 0
		c.ptW += len(content)
		return nil
	}
	if c.useless++; c.useless > maxUseless {
		return localAlert(alertUnexpectedMessage, "too many records without application data")
	}
	switch typ {
	case typeAppData:
		return nil
	case typeAlert:
		if len(content) != 2 {
			return localAlert(alertDecodeError, "malformed alert")
		}
		switch content[1] {
		case alertCloseNotify:
			c.rerr = io.EOF
			return nil
		case alertUserCanceled:
			return nil
		}
		return &AlertError{Desc: content[1], Remote: true}
	case typeHandshake:
		if len(content) == 0 {
			return localAlert(alertUnexpectedMessage, "empty handshake record")
		}
		c.hs = append(c.hs, content...)
		return c.handshakeMessages()
	}
	return &AlertError{Desc: alertUnexpectedMessage, Fault: FaultContentType, Type: typ,
		detail: fmt.Sprintf("unexpected content type %d", typ)}
}

// handshakeMessages acts on the complete post-handshake messages in c.hs.
func (c *Conn) handshakeMessages() error {
	for len(c.hs) >= 4 {
		typ := c.hs[0]
		n := int(c.hs[1])<<16 | int(c.hs[2])<<8 | int(c.hs[3])
		if n > maxHandshakeMsg {
			return localAlert(alertUnexpectedMessage, fmt.Sprintf("post-handshake message of %d bytes", n))
		}
		if len(c.hs) < 4+n {
			return nil
		}
		body := c.hs[4 : 4+n]
		switch {
		case typ == hsNewSessionTicket && !c.server:
			// We never resume sessions: the ticket is dropped.
		case typ == hsKeyUpdate:
			if n != 1 || body[0] > 1 {
				return localAlert(alertDecodeError, "malformed KeyUpdate")
			}
			if len(c.hs) != 4+n {
				// A key change must end its record (RFC 8446, section 5.1).
				return localAlert(alertUnexpectedMessage, "data after KeyUpdate in its record")
			}
			if err := c.rd.update(); err != nil {
				return err
			}
			if body[0] == 1 {
				c.keyUpdate()
			}
		default:
			return localAlert(alertUnexpectedMessage, fmt.Sprintf("unexpected post-handshake message %d", typ))
		}
		c.hs = c.hs[4+n:]
	}
	if len(c.hs) == 0 {
		c.hs = nil
	}
	return nil
}

// ---- write side ----

// BufferWrites makes later writes wait in the write buffer until Flush (or
// until it holds eight records).
func (c *Conn) BufferWrites() {
	c.wmu.Lock()
	c.buffering = true
	c.wmu.Unlock()
}

// Write encrypts p as application data: into the open record first, then
// into new ones. Without BufferWrites it is sent before Write returns.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	n := 0
	for len(p) > 0 {
		if c.open < 0 {
			if err := c.beginLocked(); err != nil {
				return n, err
			}
		}
		room := min(c.open+recordHeaderLen+maxPlaintext, outSize-1-tagLen) - c.outW
		if len(p) < room {
			c.outW += copy(c.out[c.outW:], p)
			n += len(p)
			break
		}
		// p completes the open record: the cipher reads p's part where it
		// is, without a copy into the record first.
		c.sealWithLocked(typeAppData, p[:room])
		n += room
		p = p[room:]
	}
	if !c.buffering {
		return n, c.flushLocked()
	}
	return n, nil
}

// PlaintextWithin returns the most application data that one Write made with no record
// open (after a Flush, or the first) and the Flush after it send in at most wire bytes:
// full records first, then one more if the rest holds its overhead and a byte. A caller
// that knows how many bytes its socket sends as one packet sizes its writes with it.
func (c *Conn) PlaintextWithin(wire int) int {
	if wire <= 0 {
		return 0
	}
	const overhead = recordHeaderLen + 1 + tagLen // header, content type, tag
	const full = maxPlaintext + overhead
	n := wire / full * maxPlaintext
	if rest := wire % full; rest > overhead {
		n += rest - overhead
	}
	return n
}

// Flush sends every record written so far, sealing the open one.
func (c *Conn) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	return c.flushLocked()
}

// beginLocked opens a record, making room first (by sending what the buffer
// holds) and updating our key when it has sealed rekeyAfter records.
func (c *Conn) beginLocked() error {
	if c.out == nil {
		c.out = outPool.Get().(*[outSize]byte)
		c.outW = 0
	}
	if outSize-c.outW < recordHeaderLen+2+tagLen {
		if err := c.flushLocked(); err != nil {
			return err
		}
		c.out = outPool.Get().(*[outSize]byte)
	}
	if c.wr.seq >= rekeyAfter {
		if err := c.keyUpdateLocked(false); err != nil {
			return err
		}
		return c.beginLocked()
	}
	c.open = c.outW
	c.outW += recordHeaderLen
	return nil
}

// sealLocked closes the open record as content type typ and encrypts it in
// place.
func (c *Conn) sealLocked(typ byte) {
	if c.open >= 0 {
		c.sealWithLocked(typ, nil)
	}
}

// sealWithLocked closes the open record, which there must be, as content
// type typ with body as the last of its content, and encrypts it in place.
// body, which must fit, is read where it is (aesgcm.SealRecord).
func (c *Conn) sealWithLocked(typ byte, body []byte) {
	start := c.open + recordHeaderLen
	m := c.outW - start
	hdr := c.out[c.open:start]
	hdr[0], hdr[1], hdr[2] = typeAppData, 3, 3
	binary.BigEndian.PutUint16(hdr[3:], uint16(m+len(body)+1+tagLen))
	rec := aesgcm.SealRecord(c.wr.aead, c.out[start:], m, body, typ, c.wr.nextNonce(), hdr)
	c.outW = start + len(rec)
	c.open = -1
}

// appendRecordLocked adds a record of content type typ holding content.
func (c *Conn) appendRecordLocked(typ byte, content []byte) error {
	c.sealLocked(typeAppData)
	if c.out == nil || outSize-c.outW < recordHeaderLen+len(content)+1+tagLen {
		if err := c.flushLocked(); err != nil {
			return err
		}
		c.out = outPool.Get().(*[outSize]byte)
	}
	c.open = c.outW
	c.outW += recordHeaderLen
	c.outW += copy(c.out[c.outW:], content)
	c.sealLocked(typ)
	return nil
}

// flushLocked seals the open record and writes the buffer.
func (c *Conn) flushLocked() error {
	if c.open >= 0 {
		if c.outW == c.open+recordHeaderLen {
			c.outW, c.open = c.open, -1 // empty: drop
		} else {
			c.sealLocked(typeAppData)
		}
	}
	if c.out == nil {
		return nil
	}
	var err error
	if c.outW > 0 {
		err = c.writeOutLocked(c.out[:c.outW])
	}
	outPool.Put(c.out)
	c.out, c.outW = nil, 0
	if err != nil {
		c.werr = err
	}
	return err
}

// writeOutLocked writes all of p to conn. When c.direct, it writes to the
// socket from RawConn.Write's callback with rawio (no scheduler bookkeeping
// per system call); the netpoller waits out a full socket and the write
// deadline, as net.Conn.Write does, and errors come back as net.Conn's would.
// Otherwise it takes conn's Write.
func (c *Conn) writeOutLocked(p []byte) error {
	if !c.direct {
		_, err := c.conn.Write(p)
		return err
	}
	c.wp, c.wErr = p, nil
	err := c.raw.Write(c.writeFn)
	if err == nil && c.wErr != nil {
		err = rawio.WriteError(c, c.wErr)
	}
	c.wp, c.wErr = nil, nil
	return err
}

// writeFD is c.raw's Write callback: it writes c.wp until done or until the
// socket is full (false: wait for room, then call again).
func (c *Conn) writeFD(fd uintptr) bool {
	n, err := rawio.WriteAll(int(fd), c.wp)
	c.wp = c.wp[n:]
	switch err {
	case nil:
	case syscall.EAGAIN:
		return false
	default:
		c.wErr = err
	}
	return true
}

// keyUpdate sends KeyUpdate(update_not_requested) in answer to the peer's
// request and moves to our next key. A failed write stays in werr and
// surfaces at the next write, as in crypto/tls: reading goes on.
func (c *Conn) keyUpdate() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return // we can no longer write
	}
	pending := c.out != nil // the engine writing it flushes it
	if err := c.keyUpdateLocked(false); err != nil {
		if c.werr == nil {
			c.werr = err
		}
		return
	}
	if !pending || !c.buffering {
		// Nobody is about to flush: send it now (an error stays in werr).
		c.flushLocked()
	}
}

// keyUpdateLocked appends a KeyUpdate record and switches to the next write
// key.
func (c *Conn) keyUpdateLocked(requested bool) error {
	msg := [5]byte{hsKeyUpdate, 0, 0, 1, 0}
	if requested {
		msg[4] = 1
	}
	if err := c.appendRecordLocked(typeHandshake, msg[:]); err != nil {
		return err
	}
	return c.wr.update()
}

// sendAlertNow sends a fatal alert (or close_notify) if nothing else waits
// to be written and the socket takes it without waiting; it is a courtesy
// before closing, never a reason to block. Once it is sent, writes fail
// with werr.
func (c *Conn) sendAlertNow(desc uint8, werr error) {
	if !c.wmu.TryLock() {
		return
	}
	defer c.wmu.Unlock()
	if c.werr != nil || c.out != nil {
		return
	}
	level := byte(2)
	if desc == alertCloseNotify {
		level = 1
	}
	if err := c.appendRecordLocked(typeAlert, []byte{level, desc}); err != nil {
		return
	}
	rec := c.out[:c.outW]
	if c.raw != nil {
		c.raw.Write(func(fd uintptr) bool {
			rawio.Write(int(fd), rec)
			return true // sent or not, never wait
		})
	} else {
		c.conn.SetWriteDeadline(time.Now().Add(closeNotifyWait))
		c.conn.Write(rec)
	}
	outPool.Put(c.out)
	c.out, c.outW = nil, 0
	c.werr = werr
}

// Close sends close_notify when the socket takes it at once, then closes.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return net.ErrClosed
	}
	c.sendAlertNow(alertCloseNotify, net.ErrClosed)
	return c.conn.Close()
}
