package hbone

import (
	"sync/atomic"
	"time"
)

// A connection that carries a bulk transfer makes every other stream on it wait: their frames
// queue in the one TCP stream behind the bulk bytes already in the sockets' buffers (hundreds of
// kilobytes when the receiver is CPU-bound), which no frame scheduling of ours can overtake. The
// pool therefore keeps new streams off a connection whose DATA moved at bulk rate in either
// direction just now, while the key has fewer than maxBusyConns connections (see
// Pool.acquire). busyBytes in busyWindow is 25 MB/s (200 Mbit/s): far above what interactive
// streams (requests, round trips) move, well below any bulk transfer.
const (
	busyWindow   = 10 * time.Millisecond
	busyBytes    = 256 << 10
	maxBusyConns = 4
)

// loadMeter measures the DATA one direction of a connection moved recently. add is called by
// one goroutine at a time (the read loop for received DATA, the holder of the write lock for
// sent DATA); busy may be called by anyone.
type loadMeter struct {
	start int64        // start of the current window, as conn.now(); owner only
	bytes int64        // DATA bytes in the current window; owner only
	hot   atomic.Int64 // when a window last reached busyBytes, as conn.now(); 0: never
}

// add counts n DATA bytes moved at now.
func (m *loadMeter) add(now int64, n int) {
	if now-m.start >= int64(busyWindow) {
		m.start, m.bytes = now, 0
	}
	before := m.bytes
	m.bytes += int64(n)
	if before < busyBytes && m.bytes >= busyBytes {
		m.hot.Store(now)
	}
}

// busy reports whether a window that reached busyBytes started no more than two windows ago:
// a steady bulk transfer stays busy, and a connection is calm again 20 ms after it stops.
func (m *loadMeter) busy(now int64) bool {
	hot := m.hot.Load()
	return hot != 0 && now-hot < 2*int64(busyWindow)
}

// busy reports whether the connection is moving bulk DATA in either direction now.
func (c *conn) busy() bool {
	now := c.now()
	return c.recvLoad.busy(now) || c.sendLoad.busy(now)
}
