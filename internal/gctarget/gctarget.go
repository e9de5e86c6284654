// Package gctarget keeps the Go collector's headroom near a fixed number of bytes rather than a
// fixed fraction of the heap.
//
// Go starts a collection when the heap has grown by GOGC percent of what the last one scanned
// (the live heap, the goroutine stacks and the globals), so the memory a process holds above
// its live objects grows with them. A node proxy's live heap is mostly its open connections: at
// ten thousand idle ones, ztunnel's fixed target of 50 let each ztunnel hold about 5 MB of
// garbage and free slots above its 10 MB of connections, a sixth of what it adds per
// connection. A collection's cost is a scan of the live heap, and ztunnel's data path
// allocates nothing, so collections run only while connections open and close (and while
// configuration arrives). A target that shrinks as the heap grows keeps the headroom bounded,
// and costs a node holding many connections more collections only while it opens new ones.
//
// A Tuner sets the target after each collection: Budget bytes of headroom, as a percentage of
// what the collection scanned, bounded by Min and Max. A heap of up to 100/Max times the budget
// runs at Max, one of 100/Min times the budget or more at Min. Measured in benchmarks/README.md
// ("The collector's headroom, bounded (thirty-third session)").
package gctarget

import (
	"math/bits"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// Tuner sets the collector's target (debug.SetGCPercent) after each collection. Its fields are
// read by Start and must not change afterwards.
type Tuner struct {
	// Budget is the headroom wanted, in bytes: what the heap may grow by between two
	// collections. Zero sets Max always.
	Budget uint64
	// Min and Max bound the percentage set; Min is at least 1 and not above Max.
	Min, Max int

	mu      sync.Mutex // guards the fields below; held by one tune at a time
	stopped bool
	last    int // the percentage set last
	samples [3]metrics.Sample
}

// The runtime/metrics samples a tune reads: what the last collection scanned, which the
// runtime multiplies by the target to get the headroom.
var scanMetrics = [...]string{
	"/gc/heap/live:bytes",    // live heap marked by the last collection
	"/gc/scan/stack:bytes",   // goroutine stacks it scanned
	"/gc/scan/globals:bytes", // globals it scanned
}

// Start sets the target for the heap as it is and again after every collection, until Stop.
// The first setting happens before Start returns; Start may be called once. It owns no
// goroutine of its own: each tune runs on the runtime's cleanup goroutine (runtime.AddCleanup
// on an object dropped at once, which a collection frees), and arms the next one.
func (t *Tuner) Start() {
	for i, name := range scanMetrics {
		t.samples[i].Name = name
	}
	t.tune()
}

// Stop ends the tuning and returns the target it set last; the runtime keeps that target.
func (t *Tuner) Stop() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	return t.last
}

// Percent returns the target the Tuner set last.
func (t *Tuner) Percent() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

// sentinel is the object whose collection runs the next tune. It holds a pointer so that
// Go's tiny allocator, which packs pointer-free objects of under 16 bytes together (and so
// frees them only with their neighbours), never places it.
type sentinel struct {
	_ *byte
	_ uint64
}

// tune sets the target from the last collection's scan and arms the next tune.
func (t *Tuner) tune() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	metrics.Read(t.samples[:])
	var scanned uint64
	for _, s := range t.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			scanned += s.Value.Uint64()
		}
	}
	if p := percent(t.Budget, scanned, t.Min, t.Max); p != t.last {
		debug.SetGCPercent(p)
		t.last = p
	}
	runtime.AddCleanup(new(sentinel), (*Tuner).tune, t)
}

// percent is budget as a percentage of scanned, within [lo, hi]. Nothing scanned yet (no
// collection has run) or no budget gives hi.
func percent(budget, scanned uint64, lo, hi int) int {
	if budget == 0 || scanned == 0 {
		return hi
	}
	// budget*100/scanned in 128 bits: a budget above 2^64/100 would overflow.
	high, low := bits.Mul64(budget, 100)
	if high >= scanned {
		return hi // the quotient does not fit 64 bits: far above any bound
	}
	p, _ := bits.Div64(high, low, scanned)
	switch {
	case p < uint64(lo):
		return lo
	case p > uint64(hi):
		return hi
	}
	return int(p)
}
