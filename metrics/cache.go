package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// defaultCacheSize bounds the series cache: distinct label sets (source, destination, flags,
// reporter) kept resolved. A workload pair costs one entry per direction and response flag.
const defaultCacheSize = 4096

// series holds the resolved counters of one normalized label set. Each group of counters is
// resolved the first time it is needed, never before, so the cache creates no series that
// the uncached code would not have created (a closed counter appears with the first close,
// a failed counter only for flags other than "-"). Immutable after the Once that sets it.
type series struct {
	key Labels    // normalized; immutable
	reg *Registry // the registry whose vectors the resolvers use; immutable

	openOnce               sync.Once
	opened, received, sent prometheus.Counter // set by openOnce

	closeOnce sync.Once
	closed    prometheus.Counter // set by closeOnce
	failed    prometheus.Counter // set by closeOnce; nil when the flags are "-"
}

func (s *series) openCounters() {
	s.openOnce.Do(s.resolveOpen)
}

func (s *series) closeCounters() {
	s.closeOnce.Do(s.resolveClose)
}

func (s *series) resolveOpen() {
	vals := s.key.values()
	s.opened = s.reg.opened.WithLabelValues(vals...)
	s.received = s.reg.received.WithLabelValues(vals...)
	s.sent = s.reg.sent.WithLabelValues(vals...)
}

func (s *series) resolveClose() {
	vals := s.key.values()
	s.closed = s.reg.closed.WithLabelValues(vals...)
	if s.key.ResponseFlags != FlagNone {
		s.failed = s.reg.failed.WithLabelValues(vals...)
	}
}

// seriesCache maps a normalized label set to its series. Safe for concurrent use.
//
// Prometheus series are never deleted by this package, so a series (and every Conn holding
// one) stays valid after its entry is evicted; evicting only costs a later re-resolution. If
// series deletion is ever added, the cache must be cleared with it.
type seriesCache struct {
	mu  sync.RWMutex
	m   map[Labels]*series // guarded by mu
	max int                // immutable after New
}

// get returns the series of l (normalized first), creating the entry on a miss.
func (c *seriesCache) get(reg *Registry, l *Labels) *series {
	key := l.normalized()
	c.mu.RLock()
	s := c.m[key]
	c.mu.RUnlock()
	if s != nil {
		return s
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.m[key]; s != nil {
		return s
	}
	if c.m == nil {
		c.m = make(map[Labels]*series)
	}
	if len(c.m) >= c.max {
		// Full: drop an arbitrary entry (map order is random).
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	s = &series{key: key, reg: reg}
	c.m[key] = s
	return s
}

// len reports the number of cached label sets.
func (c *seriesCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
