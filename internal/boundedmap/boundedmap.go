// Package boundedmap is a concurrency-safe map that holds at most a fixed number of entries,
// for caches of values made once per key and shared by everyone who asks for that key (metric
// series per label set, identities with their URIs). When it is full, an arbitrary entry gives
// way to the new one; holders of an evicted value keep it, and a later Get makes a new one.
package boundedmap

import "sync"

// Map maps keys to values made by Get's make function. The zero Map is not usable: use New.
type Map[K comparable, V any] struct {
	mu  sync.RWMutex
	m   map[K]V // guarded by mu
	max int     // immutable after New
}

// New returns an empty Map that holds at most limit entries (at least 1).
func New[K comparable, V any](limit int) *Map[K, V] {
	return &Map[K, V]{m: make(map[K]V), max: max(limit, 1)}
}

// Get returns the value of k, calling mk(k) and keeping the result on a miss. mk runs with
// the Map locked, once per miss.
func (c *Map[K, V]) Get(k K, mk func(K) V) V {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.m[k]; ok {
		return v
	}
	if len(c.m) >= c.max {
		for old := range c.m { // map order is random: an arbitrary entry
			delete(c.m, old)
			break
		}
	}
	v = mk(k)
	c.m[k] = v
	return v
}

// Len returns the number of entries.
func (c *Map[K, V]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
