package logging

import "sync"

// An Output writes each line with its own Write call, on the goroutine that logs it, while it
// holds the Output's lock: a connection that ends waits for its access log line to reach the
// writer, and so does every other line behind it. When the writer is a pipe to a container
// runtime that has fallen behind, that wait stalls every connection that ends.
//
// Between Queue and the stop function it returns, lines are queued instead: appended to a
// buffer under the lock (a copy, no system call), and a drain goroutine writes everything
// queued with one Write each time it wakes, so that a burst of lines costs one system call and
// a writer that is slow for a moment holds up nobody. A logger waits only when maxQueued bytes
// are already queued: a writer that stays behind slows the loggers down rather than losing
// their lines or growing the queue without bound (ztunnel's log writer makes the same choice).

// maxQueued bounds the bytes queued for the drain goroutine, and maxKeptQueue the capacity of
// the buffer the queue keeps between bursts. Behind a writer that is stuck, up to twice
// maxQueued is held: the batch the drain goroutine is writing and the lines queued behind it.
//
// The bound is of ztunnel's order (10,000 lines; an access line is 200 to 700 bytes) and costs
// nothing until a writer falls behind. It is not smaller because a logger that waits for room
// is a connection that has ended but still holds its goroutine and state, about 7 KiB, over
// ten times its line. With the ztunnel-bench harness's logs stalled for 2 s in every 4 s
// (-log-stall 2s/4s; S3, about 1,400 HBONE connections a second, 1.2 MB of lines per stall),
// the two ztunnels peaked at 66 MiB with a bound of 256 KiB and at 40 MiB with a bound of
// 8 MiB, 36 MiB without the stall (benchmarks/README.md, fifty-third session).
const (
	maxQueued    = 4 << 20
	maxKeptQueue = 64 << 10
)

// queue is the state of an Output's queued mode; all of it is guarded by Output.mu.
type queue struct {
	on      bool          // lines are queued
	max     int           // loggers wait while this many bytes are queued (maxQueued)
	stopped bool          // stop was called: do not kick; stop writes what is left
	pending []byte        // queued bytes, in order
	spare   []byte        // an empty buffer to swap in for pending, or nil
	kick    chan struct{} // capacity 1: pending became non-empty; closed by stop
	room    *sync.Cond    // L is Output.mu; broadcast when pending was taken
}

// Queue starts queueing lines and a goroutine that writes them. The returned function stops
// it: it waits until every line logged before it was written, and from then on lines are
// written at once again. Queue must not be called again before stop returned.
func (o *Output) Queue() (stop func()) {
	o.mu.Lock()
	o.q = queue{on: true, max: maxQueued, kick: make(chan struct{}, 1), room: sync.NewCond(&o.mu)}
	kick := o.q.kick
	o.mu.Unlock()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for range kick {
			o.drain()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			o.mu.Lock()
			o.q.stopped = true
			close(o.q.kick)
			o.mu.Unlock()
			<-drained
			o.mu.Lock()
			if len(o.q.pending) > 0 { // queued after the drain goroutine's last pass
				o.w.Write(o.q.pending)
			}
			room := o.q.room
			o.q = queue{}
			room.Broadcast() // loggers waiting for room now write at once
			o.mu.Unlock()
		})
	}
}

// writeLocked writes or queues one line; o.mu is held. A queued line's write error is not
// reported (the drain goroutine has no one to report it to).
func (o *Output) writeLocked(b []byte) error {
	for o.q.on && len(o.q.pending) > 0 && len(o.q.pending)+len(b) > o.q.max {
		o.q.room.Wait()
	}
	if !o.q.on {
		_, err := o.w.Write(b)
		return err
	}
	if len(o.q.pending) == 0 && !o.q.stopped {
		select {
		case o.q.kick <- struct{}{}:
		default:
		}
	}
	o.q.pending = append(o.q.pending, b...)
	return nil
}

// drain writes what is queued, outside the lock, and keeps the buffer for the next burst.
// Only the drain goroutine calls it, so writes to o.w never overlap: a logger writes to o.w
// itself only when the queue is off, after the drain goroutine has returned.
func (o *Output) drain() {
	o.mu.Lock()
	b := o.q.pending
	o.q.pending, o.q.spare = o.q.spare, nil
	o.q.room.Broadcast()
	o.mu.Unlock()
	if len(b) == 0 {
		return
	}
	o.w.Write(b)
	if cap(b) > maxKeptQueue {
		return
	}
	o.mu.Lock()
	o.q.spare = b[:0]
	o.mu.Unlock()
}
