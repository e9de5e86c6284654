package hbone

import (
	"sync"
	"time"
)

// chunkSize is the unit of a stream's receive buffer. It matches the
// largest TLS record, so one record's plaintext fills about one chunk.
const chunkSize = 16 << 10

type chunk [chunkSize]byte

// chunkPool holds receive-buffer chunks. A chunk belongs to one recvBuf from
// Get until the reader has consumed it (or the stream is closed) and Put.
var chunkPool = sync.Pool{New: func() any { return new(chunk) }}

// recvBuf is a FIFO of pooled chunks. It is not safe for concurrent use: its
// owner (Stream) guards it with Stream.mu. Its size is bounded by the
// stream's receive window, which the read loop enforces before writing, and
// so is len (int32 is ample: the window is at most 2^31-1).
//
// The list of one chunk, what a stream buffers almost always, is kept in
// the recvBuf itself (inline): a list of its own would be an 8-byte
// allocation that a stream keeps for its life once it has buffered anything,
// idle or not, and such small long-lived objects scattered among the
// garbage of connection set-up keep whole pages of the heap resident.
type recvBuf struct {
	chunks []*chunk // FIFO; reading at chunks[0][r:], writing at chunks[last][w:]
	r, w   int32
	inline [1]*chunk // chunks' first array
}

// len returns the bytes buffered: every chunk but the last is full, and the
// first was read up to r. (Kept as a count it cost the Stream 8 bytes.)
func (b *recvBuf) len() int32 {
	if len(b.chunks) == 0 {
		return 0
	}
	return int32(len(b.chunks)-1)*chunkSize + b.w - b.r
}

// write appends p, taking chunks from the pool as needed.
func (b *recvBuf) write(p []byte) {
	for len(p) > 0 {
		if len(b.chunks) == 0 || b.w == chunkSize {
			if b.chunks == nil {
				b.chunks = b.inline[:0]
			}
			b.chunks = append(b.chunks, chunkPool.Get().(*chunk))
			b.w = 0
		}
		k := int32(copy(b.chunks[len(b.chunks)-1][b.w:], p))
		b.w += k
		p = p[k:]
	}
}

// read moves up to len(p) buffered bytes into p and returns fully consumed
// chunks to the pool.
func (b *recvBuf) read(p []byte) int {
	n := 0
	for len(p) > 0 && b.len() > 0 {
		c := b.chunks[0]
		end := int32(chunkSize)
		if len(b.chunks) == 1 {
			end = b.w
		}
		k := copy(p, c[b.r:end])
		b.r += int32(k)
		n += k
		p = p[k:]
		if b.r < end {
			continue
		}
		if len(b.chunks) == 1 {
			b.release()
		} else {
			chunkPool.Put(c)
			copy(b.chunks, b.chunks[1:])
			b.chunks[len(b.chunks)-1] = nil
			b.chunks = b.chunks[:len(b.chunks)-1]
			b.r = 0
		}
	}
	return n
}

// release drops everything buffered and returns the chunks to the pool.
func (b *recvBuf) release() {
	for i, c := range b.chunks {
		chunkPool.Put(c)
		b.chunks[i] = nil
	}
	b.chunks = b.chunks[:0]
	b.r, b.w = 0, 0
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
