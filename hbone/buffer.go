package hbone

import (
	"sync"
	"time"
)

// chunkSize is the unit of a stream's receive buffer, as allocated. It
// matches the largest TLS record, so one record's plaintext fills about one
// chunk.
const chunkSize = 16 << 10

// chunk is one unit of a receive buffer: its link to the next chunk of the
// same buffer, first (so the collector, which scans an object up to its last
// pointer, reads one word of it), then chunkData bytes, chunkSize in all.
type chunk struct {
	next *chunk
	b    [chunkData]byte
}

// chunkData is the bytes a chunk holds.
const chunkData = chunkSize - 8

// chunkPool holds receive-buffer chunks, each with a nil next. A chunk
// belongs to one recvBuf from Get until the reader has consumed it (or the
// stream is closed) and Put.
var chunkPool = sync.Pool{New: func() any { return new(chunk) }}

// recvBuf is a FIFO of pooled chunks, linked through their next. It is not
// safe for concurrent use: its owner (Stream) guards it with Stream.mu. Its
// size is bounded by the stream's receive window, which the read loop
// enforces before writing, and so is size (int32 is ample: the window is at
// most 2^31-1).
//
// It takes 24 bytes of every Stream, buffering or not: the chunks link each
// other instead of being listed in a slice (which, with the one-entry array
// that spared most streams a list of their own, took 40 and kept a Stream in
// the 192-byte allocation class instead of 176), and the offsets within a
// chunk are 16-bit.
type recvBuf struct {
	head, tail *chunk // reading at head.b[r:], writing at tail.b[w:]; nil when empty
	r, w       uint16
	size       int32 // bytes buffered
}

// A chunk's offsets are 16-bit (recvBuf.r and w).
var _ [1<<16 - 1 - chunkData]struct{}

// len returns the bytes buffered.
func (b *recvBuf) len() int32 { return b.size }

// write appends p, taking chunks from the pool as needed.
func (b *recvBuf) write(p []byte) {
	for len(p) > 0 {
		if b.tail == nil || b.w == chunkData {
			c := chunkPool.Get().(*chunk)
			if b.tail == nil {
				b.head = c
			} else {
				b.tail.next = c
			}
			b.tail, b.w = c, 0
		}
		k := copy(b.tail.b[b.w:], p)
		b.w += uint16(k)
		b.size += int32(k)
		p = p[k:]
	}
}

// read moves up to len(p) buffered bytes into p and returns fully consumed
// chunks to the pool.
func (b *recvBuf) read(p []byte) int {
	n := 0
	for len(p) > 0 && b.size > 0 {
		c := b.head
		end := uint16(chunkData)
		if c == b.tail {
			end = b.w
		}
		k := copy(p, c.b[b.r:end])
		b.r += uint16(k)
		b.size -= int32(k)
		n += k
		p = p[k:]
		if b.r < end {
			continue
		}
		if c == b.tail {
			b.release()
		} else {
			b.head, b.r = c.next, 0
			c.next = nil
			chunkPool.Put(c)
		}
	}
	return n
}

// release drops everything buffered and returns the chunks to the pool.
func (b *recvBuf) release() {
	for c := b.head; c != nil; {
		next := c.next
		c.next = nil
		chunkPool.Put(c)
		c = next
	}
	*b = recvBuf{}
}

// deadline is a settable deadline whose expiry closes a channel, so that
// blocked Read and Write calls can select on it (the same idea as the
// standard library's net.Pipe).
//
// The channel is nil until the deadline is first armed (a select never
// picks a nil channel), so a stream that never sets a deadline allocates
// nothing for it. A waiter that took the nil channel is not woken by set:
// the owner must wake it another way (Stream.SetReadDeadline signals wakeR,
// SetWriteDeadline wwake and wakeW).
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{} // closed when the deadline has passed; nil: never armed, or disarmed after passing
}

// set arms the deadline at t; the zero time disarms it.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait until it closed cancel
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = nil
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if d.cancel == nil || closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if d.cancel == nil {
		d.cancel = make(chan struct{})
	}
	if !isClosed(d.cancel) {
		close(d.cancel)
	}
}

// wait returns a channel closed when the deadline passes.
func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// signal does a non-blocking send on a capacity-1 wake-up channel.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
