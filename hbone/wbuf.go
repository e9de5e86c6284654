package hbone

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// wbufSize is the capacity of a WriteBuffer's pooled buffer: one 64 KiB
// DATA frame as TLS records (five records, about 65.7 KiB) plus a second
// frame of a queued writer, so back-to-back frames of two streams share a
// syscall too.
const wbufSize = 128 << 10

var wbufPool = sync.Pool{New: func() any { return new([wbufSize]byte) }}

// WriteBuffer is a net.Conn wrapper for the socket under a *tls.Conn that
// lets the HBONE engine send several TLS records with one write(2).
// crypto/tls writes every record (at most 16 KiB of plaintext) to its
// underlying conn separately, so without it a 64 KiB DATA frame costs five
// syscalls.
//
// A new WriteBuffer passes writes straight through (the TLS handshake needs
// that). When a connection built on it starts (NewClientConn, ServeConn), the
// engine finds it through (*tls.Conn).NetConn, calls BufferWrites, and from
// then on Write appends to a pooled buffer, held only while bytes wait, and
// Flush sends the lot; the engine flushes whenever it flushes its own frame
// buffer (the last writer out), so a lone frame is not delayed. Changing the
// write deadline and Close flush first, under the old deadline, so bytes
// crypto/tls writes outside the engine (its close_notify alert, a KeyUpdate
// answer) still leave.
//
// WriteBuffer is safe for concurrent use; its methods serialise on one
// mutex, held across the flushing syscall.
type WriteBuffer struct {
	net.Conn // the socket; reads and read deadlines go straight to it

	mu   sync.Mutex
	on   bool            // BufferWrites was called
	buf  *[wbufSize]byte // pooled; nil while nothing waits
	n    int             // bytes waiting in buf
	vec  [2][]byte       // writev scratch for an overflowing Write
	bufs net.Buffers     // points into vec while a writev runs
}

// NewWriteBuffer wraps c, passing writes through until BufferWrites.
func NewWriteBuffer(c net.Conn) *WriteBuffer { return &WriteBuffer{Conn: c} }

// NetConn returns the wrapped conn (so socket options can be set on it).
func (w *WriteBuffer) NetConn() net.Conn { return w.Conn }

// WritesThrough reports whether writes pass straight to the socket
// (BufferWrites was not called); tls/record writes to the socket itself then.
func (w *WriteBuffer) WritesThrough() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.on
}

// BufferWrites makes later writes wait in the buffer until Flush.
func (w *WriteBuffer) BufferWrites() {
	w.mu.Lock()
	w.on = true
	w.mu.Unlock()
}

// Write buffers p, or when buffering is off writes it through. When p does
// not fit beside the waiting bytes, both go out in one writev.
func (w *WriteBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.on {
		return w.Conn.Write(p)
	}
	if w.n+len(p) <= wbufSize {
		if w.buf == nil {
			w.buf = wbufPool.Get().(*[wbufSize]byte)
		}
		w.n += copy(w.buf[w.n:], p)
		return len(p), nil
	}
	if w.n == 0 {
		return w.Conn.Write(p)
	}
	held := w.n
	w.vec[0], w.vec[1] = w.buf[:held], p
	w.bufs = w.vec[:]
	written, err := w.bufs.WriteTo(w.Conn)
	w.vec, w.bufs = [2][]byte{}, nil
	w.release()
	n := int(max(written-int64(held), 0))
	return n, err
}

// Flush writes the waiting bytes with one write (or as few as the socket
// takes), under the conn's write deadline.
func (w *WriteBuffer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

func (w *WriteBuffer) flushLocked() error {
	if w.n == 0 {
		return nil
	}
	_, err := w.Conn.Write(w.buf[:w.n])
	w.release()
	return err
}

// release returns the buffer to the pool. mu must be held.
func (w *WriteBuffer) release() {
	w.n = 0
	if w.buf != nil {
		wbufPool.Put(w.buf)
		w.buf = nil
	}
}

// SetWriteDeadline flushes under the old deadline, then sets t.
func (w *WriteBuffer) SetWriteDeadline(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.flushLocked() // an error here is the next write's error too
	return w.Conn.SetWriteDeadline(t)
}

// SetDeadline flushes under the old write deadline, then sets t.
func (w *WriteBuffer) SetDeadline(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.flushLocked()
	return w.Conn.SetDeadline(t)
}

// Close flushes what waits (best effort) and closes the conn.
func (w *WriteBuffer) Close() error {
	w.mu.Lock()
	_ = w.flushLocked()
	w.mu.Unlock()
	return w.Conn.Close()
}

// writeFlusher is what the engine looks for under its conn: a WriteBuffer,
// or anything else that gathers writes until Flush.
type writeFlusher interface {
	BufferWrites()
	Flush() error
}

// findFlusher returns the writeFlusher under nc (nc itself, or reached
// through NetConn methods such as (*tls.Conn).NetConn) after turning its
// buffering on, or nil. A *tls.Conn whose handshake has not completed is
// left alone: its handshake must write through.
func findFlusher(nc net.Conn) writeFlusher {
	for range 8 {
		if f, ok := nc.(writeFlusher); ok {
			f.BufferWrites()
			return f
		}
		if tc, ok := nc.(*tls.Conn); ok && !tc.ConnectionState().HandshakeComplete {
			return nil
		}
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		inner := u.NetConn()
		if inner == nil || inner == nc {
			return nil
		}
		nc = inner
	}
	return nil
}
