package dns

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/ztunnel-go/ztunnel/internal/workers"
	"github.com/ztunnel-go/ztunnel/netutil"
)

// The server's own loops. miekg/dns gives the message types, their wire format and the
// session helpers that answer a UDP query from the address it was sent to; the loops that read
// the sockets are ours, so that a quiet listener holds no goroutine (netutil.IdleLoop): in
// shared mode every pod has four DNS sockets. What the loops do follows miekg/dns's server,
// which the proxy used before, so clients see no difference:
//   - a datagram shorter than a header is dropped; each other one is served on a goroutine of
//     its own (forwarding may wait for an upstream);
//   - a TCP connection carries up to maxTCPQueries queries, one at a time, the first within
//     tcpReadTimeout and each next one within tcpIdleTimeout of the answer before;
//   - acceptQuery decides on the header: responses are dropped, other opcodes answered NOTIMP,
//     odd section counts FORMERR, and so is a query whose body does not parse.

// parkAfter is how long a DNS socket's loop waits for the next query or connection before it
// gives its goroutine up. A variable for tests.
var parkAfter = time.Second

const (
	// tcpIdleTimeout bounds the wait for each query after the first on a TCP connection
	// (miekg/dns's default).
	tcpIdleTimeout = 8 * time.Second
	// maxTCPQueries is how many queries one TCP connection may carry (miekg/dns's default).
	maxTCPQueries = 128
	// headerSize is the length of a DNS message header.
	headerSize = 12
)

// udpBufs holds the buffers datagrams are read into; one stays with its query until answered.
var udpBufs = sync.Pool{New: func() any { return new([udpReadSize]byte) }}

// socketLoop is one socket of the server and the loop that reads it. stop ends the loop's
// reading: it closes a listener, and only sets a UDP socket's read deadline in the past,
// since queries in flight still answer on it (Close closes it after them).
type socketLoop struct {
	loop *netutil.IdleLoop
	sock io.Closer
	stop func() error
}

// inThePast is a deadline that has passed.
var inThePast = time.Unix(1, 0)

// udpSocket prepares the loop of pc; its owner starts it.
func (s *Server) udpSocket(pc *net.UDPConn) (socketLoop, error) {
	// The destination address of each query, so that the answer leaves from it (miekg/dns
	// asks for it the same way; one family failing is expected).
	err6 := ipv6.NewPacketConn(pc).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
	err4 := ipv4.NewPacketConn(pc).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
	if err6 != nil && err4 != nil {
		return socketLoop{}, err4
	}
	u := &udpLoop{s: s, pc: pc}
	var err error
	u.loop, err = netutil.NewIdleLoop(pc, pc.SetReadDeadline, parkAfter, u.serve)
	return socketLoop{u.loop, pc, func() error { return pc.SetReadDeadline(inThePast) }}, err
}

// udpLoop reads one UDP socket's queries.
type udpLoop struct {
	s    *Server
	pc   *net.UDPConn
	loop *netutil.IdleLoop
}

// serve reads for one period of u.loop.
func (u *udpLoop) serve() error {
	for {
		buf := udpBufs.Get().(*[udpReadSize]byte)
		n, sess, err := dns.ReadFromSessionUDP(u.pc, buf[:])
		if err != nil {
			udpBufs.Put(buf)
			if temporary(err) {
				continue
			}
			u.s.stopped(err)
			return err
		}
		u.loop.Active()
		if n < headerSize {
			udpBufs.Put(buf)
			continue
		}
		// Added before Close's Wait, since Close ends this loop first.
		u.s.wg.Add(1)
		workers.Go(func() { // owned by u.s.wg
			defer u.s.wg.Done()
			u.s.serveWire(&udpWriter{pc: u.pc, sess: sess}, buf[:n], protoUDP)
			udpBufs.Put(buf)
		})
	}
}

// tcpSocket prepares the accept loop of ln; its owner starts it.
func (s *Server) tcpSocket(ln *net.TCPListener) (socketLoop, error) {
	t := &tcpLoop{s: s, ln: ln}
	var err error
	t.loop, err = netutil.NewIdleLoop(ln, ln.SetDeadline, parkAfter, t.serve)
	return socketLoop{t.loop, ln, ln.Close}, err
}

// tcpLoop accepts one TCP listener's connections.
type tcpLoop struct {
	s    *Server
	ln   *net.TCPListener
	loop *netutil.IdleLoop
}

// serve accepts for one period of t.loop.
func (t *tcpLoop) serve() error {
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if temporary(err) {
				time.Sleep(5 * time.Millisecond) // out of descriptors: let some close
				continue
			}
			t.s.stopped(err)
			return err
		}
		t.loop.Active()
		t.s.wg.Add(1)
		workers.Go(func() { // owned by t.s.wg
			defer t.s.wg.Done()
			t.s.serveConn(c)
		})
	}
}

// temporary reports whether a read or accept error is worth retrying at once: one that says
// it is temporary, other than the deadline's (which says so too, and ends a period).
func temporary(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Temporary() && !errors.Is(err, os.ErrDeadlineExceeded)
}

// stopped logs why a loop ends, unless its period just ended or Close ended it (by closing
// the listener, or by a read deadline in the past; only Close does either).
func (s *Server) stopped(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
		return
	}
	s.log.Error("DNS server stopped", "error", err)
}

// serveConn answers the queries of one TCP connection until the client closes it, is silent
// too long, or has sent maxTCPQueries.
func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	if !s.trackConn(c, true) {
		return // Close has begun
	}
	defer s.trackConn(c, false)
	w := &tcpWriter{c: c}
	timeout := tcpReadTimeout
	var buf []byte
	for range maxTCPQueries {
		if !s.readDeadline(c, timeout) {
			return
		}
		var length [2]byte
		if _, err := io.ReadFull(c, length[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(length[:]))
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		s.serveWire(w, buf, protoTCP)
		timeout = tcpIdleTimeout
	}
}

// readDeadline sets c's read deadline timeout ahead, unless Close has begun: Close sets
// the read deadlines of the connections it finds in the past, and this must not undo that.
func (s *Server) readDeadline(c net.Conn, timeout time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	return true
}

// trackConn adds c to (add) or removes it from the connections Close closes. Adding fails
// once Close has begun.
func (s *Server) trackConn(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, c)
		return true
	}
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.conns[c] = struct{}{}
	return true
}

// serveWire answers the query in m (a whole message, at least a header long) through w.
func (s *Server) serveWire(w dns.ResponseWriter, m []byte, proto protocol) {
	if len(m) < headerSize {
		return
	}
	action := acceptQuery(header(m))
	if action == dns.MsgIgnore {
		return
	}
	req := new(dns.Msg)
	if action == dns.MsgAccept {
		if req.Unpack(m) == nil {
			s.serve(w, req, proto)
			return
		}
		action = dns.MsgReject // the body does not parse; req keeps the header and what did
	} else {
		req.Unpack(m[:headerSize:headerSize]) // the header only: the counts make it fail after
	}
	// The reject answer: the query's header as a response with FORMERR (or NOTIMP with the
	// query's opcode), no records.
	opcode := req.Opcode
	req.SetRcodeFormatError(req)
	req.Zero = false
	if action == dns.MsgRejectNotImplemented {
		req.Opcode = opcode
		req.Rcode = dns.RcodeNotImplemented
	}
	req.Ns, req.Answer, req.Extra = nil, nil, nil
	w.WriteMsg(req)
}

// header is the header of message m, at least headerSize long.
func header(m []byte) dns.Header {
	return dns.Header{
		Id:      binary.BigEndian.Uint16(m[0:]),
		Bits:    binary.BigEndian.Uint16(m[2:]),
		Qdcount: binary.BigEndian.Uint16(m[4:]),
		Ancount: binary.BigEndian.Uint16(m[6:]),
		Nscount: binary.BigEndian.Uint16(m[8:]),
		Arcount: binary.BigEndian.Uint16(m[10:]),
	}
}

// udpWriter answers one UDP query, from the address it was sent to.
type udpWriter struct {
	pc   *net.UDPConn
	sess *dns.SessionUDP
}

func (w *udpWriter) LocalAddr() net.Addr  { return w.pc.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr { return w.sess.RemoteAddr() }
func (w *udpWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
func (w *udpWriter) Write(b []byte) (int, error) { return dns.WriteToSessionUDP(w.pc, b, w.sess) }
func (w *udpWriter) Close() error                { return nil }
func (w *udpWriter) TsigStatus() error           { return nil }
func (w *udpWriter) TsigTimersOnly(bool)         {}
func (w *udpWriter) Hijack()                     {}

// tcpWriter answers the queries of one TCP connection, each with its two-byte length first.
type tcpWriter struct{ c net.Conn }

func (w *tcpWriter) LocalAddr() net.Addr  { return w.c.LocalAddr() }
func (w *tcpWriter) RemoteAddr() net.Addr { return w.c.RemoteAddr() }
func (w *tcpWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
func (w *tcpWriter) Write(b []byte) (int, error) {
	if len(b) > dns.MaxMsgSize {
		return 0, errors.New("dns: message too large")
	}
	var length [2]byte
	binary.BigEndian.PutUint16(length[:], uint16(len(b)))
	// A client that stops reading must not hold the goroutine (nor Close) for ever.
	w.c.SetWriteDeadline(time.Now().Add(tcpReadTimeout))
	bufs := net.Buffers{length[:], b}
	n, err := bufs.WriteTo(w.c)
	return max(int(n)-2, 0), err
}
func (w *tcpWriter) Close() error        { return w.c.Close() }
func (w *tcpWriter) TsigStatus() error   { return nil }
func (w *tcpWriter) TsigTimersOnly(bool) {}
func (w *tcpWriter) Hijack()             {}
