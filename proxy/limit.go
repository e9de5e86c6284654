package proxy

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// ConnLimit caps the connections accepted by every proxy that shares it: in shared mode one
// ConnLimit serves all pods of the node, so ZTUNNEL_MAX_CONNECTIONS (our addition) bounds the
// process, not each pod. A connection counts from its accept until its handler returns, on every
// listener (15001, 15006, 15008, 15080); streams multiplexed inside one HBONE connection do not
// count separately. A nil *ConnLimit is unlimited.
//
// Safe for concurrent use; all state is atomic.
type ConnLimit struct {
	max     int64 // immutable after NewConnLimit
	open    atomic.Int64
	refused atomic.Uint64

	// logs lets a refusal be logged at most once per logEvery, with the number suppressed
	// since.
	logs logLimiter
}

// logEvery is the least time between two "connection limit reached" log lines: an attacker can
// trigger one per connection attempt.
const logEvery = 5 * time.Second

// NewConnLimit returns a limit of max open connections; max <= 0 means unlimited (nil).
func NewConnLimit(max int) *ConnLimit {
	if max <= 0 {
		return nil
	}
	return &ConnLimit{max: int64(max)}
}

// acquire takes one slot; false means the limit is reached and the connection must be refused.
func (l *ConnLimit) acquire() bool {
	if l == nil {
		return true
	}
	if l.open.Add(1) > l.max {
		l.open.Add(-1)
		l.refused.Add(1)
		return false
	}
	return true
}

// release returns a slot taken by acquire.
func (l *ConnLimit) release() {
	if l != nil {
		l.open.Add(-1)
	}
}

// Open returns how many connections hold a slot now.
func (l *ConnLimit) Open() int64 {
	if l == nil {
		return 0
	}
	return l.open.Load()
}

// Refused returns how many connections were refused since NewConnLimit.
func (l *ConnLimit) Refused() uint64 {
	if l == nil {
		return 0
	}
	return l.refused.Load()
}

// Max returns the limit; 0 means unlimited.
func (l *ConnLimit) Max() int64 {
	if l == nil {
		return 0
	}
	return l.max
}

// logRefusal logs a refusal unless one was logged less than logEvery ago; the next line says how
// many were not logged in between.
func (l *ConnLimit) logRefusal(log *slog.Logger, listener, src string) {
	suppressed, ok := l.logs.allow()
	if !ok {
		return
	}
	log.Warn("connection limit reached, refusing connection", "limit", l.max, "listener", listener,
		"src", src, "suppressed", suppressed, "refused_total", l.refused.Load())
}
