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

// The registry's cache (Registry.cache) maps a normalized label set to its series.
//
// Prometheus series are never deleted by this package, so a series (and every Conn holding
// one) stays valid after its entry is evicted; evicting only costs a later re-resolution. If
// series deletion is ever added, the cache must be cleared with it.

// series returns the series of l (normalized first), creating the entry on a miss.
func (r *Registry) series(l *Labels) *series {
	return r.cache.Get(l.normalized(), r.newSeries)
}

// makeSeries is the cache's constructor; bound once as newSeries, so a lookup allocates
// nothing.
func (r *Registry) makeSeries(key Labels) *series { return &series{key: key, reg: r} }
