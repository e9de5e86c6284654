package app

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/workers"
)

// memTrim returns the heap's free pages to the kernel when the proxy goes quiet after a spell
// that left them behind (a burst of new connections that now sit idle, a large xDS push).
//
// Go's runtime keeps up to its heap goal resident until the next collection: the heap live at
// the last collection plus its headroom (ztunnel bounds that to 1 MiB on a large heap and to half
// the live heap on a small one, see cmd/ztunnel; Go's default is as much again as the live
// heap), plus a tenth. A proxy that allocates nothing (idle connections, and bulk relays,
// allocate nothing) may not collect for two minutes, and the idle workers keep the stacks a
// burst grew. The Rust ztunnel's allocator behaves differently: jemalloc returns pages freed for
// ten seconds (its dirty_decay_ms). memTrim gives the Go proxy that behaviour once per quiet
// spell: after an interval in which the process allocated less than quietBytes, if the heap
// holds at least minExcess bytes of garbage and free pages, it ends the idle worker goroutines
// (whose stacks the burst grew: workers.RetireIdle) and runs two collections, the second
// returning every free page (debug.FreeOSMemory), so that what sync.Pools kept is freed too. It
// then waits for an interval that allocates quietBytes or more before it may trim again, so a
// steady load costs nothing and a load that comes and goes costs at most two collections per two
// intervals. Measured in benchmarks/README.md ("Idle memory trim", "The idle trim, again, and
// dials without a timer context (twenty-ninth session)", "The pools' buffers and the tracker
// (thirty-first session)" and "The collector's headroom, bounded (thirty-third session)").
type memTrim struct {
	interval   time.Duration // how often it looks; ZTUNNEL_MEMORY_TRIM_INTERVAL
	quietBytes uint64        // allocations per interval under which the process is quiet
	minExcess  uint64        // reclaimable heap bytes worth a collection
	log        *slog.Logger

	// onTrim, when set, is called after each trim with the bytes it expected to reclaim (tests).
	onTrim func(excess uint64)
}

// Defaults of memTrim. A quiet interval allocates less than 1 MiB: an idle ztunnel allocates a
// few kilobytes a second (metrics flushes, pool keepalives), one opening connections several
// megabytes. Less than 256 KiB to reclaim is not worth a collection. (It was 4 MiB while the
// collector's target was 100 and 1 MiB at 50. Since the collector's headroom is bounded to
// 1 MiB (cmd/ztunnel, internal/gctarget), a burst leaves less than that: after 9,400 idle
// HBONE connections the trim at 1 MiB no longer ran, and the idle workers' stacks and the free
// pages stayed, about 170 B per connection over both ztunnels; benchmarks/README.md, "The
// collector's headroom, bounded (thirty-third session)".) The estimate of what a collection
// would reclaim (what was allocated since the last one, plus free pages) is rough: it counts
// objects allocated since the last collection that are still live, it cannot see objects that
// died without a collection since, and it leaves out the idle workers' stacks.
const (
	defaultTrimQuietBytes = 1 << 20
	defaultTrimMinExcess  = 256 << 10
)

// The runtime/metrics samples memTrim reads, in this order.
var trimMetrics = [...]string{
	"/gc/heap/allocs:bytes",              // cumulative bytes allocated
	"/memory/classes/heap/objects:bytes", // live and not yet swept dead objects
	"/gc/heap/live:bytes",                // marked live by the last collection
	"/memory/classes/heap/free:bytes",    // free, resident, not yet returned
}

// run looks every interval until ctx ends. It owns no other goroutine.
func (t *memTrim) run(ctx context.Context) {
	samples := make([]metrics.Sample, len(trimMetrics))
	for i, name := range trimMetrics {
		samples[i].Name = name
	}
	read := func() (allocs, excess uint64) {
		metrics.Read(samples)
		for _, s := range samples {
			if s.Value.Kind() != metrics.KindUint64 {
				return 0, 0 // not supported by this runtime: never trims
			}
		}
		allocs = samples[0].Value.Uint64()
		objects, live, free := samples[1].Value.Uint64(), samples[2].Value.Uint64(), samples[3].Value.Uint64()
		if objects > live {
			excess = objects - live
		}
		return allocs, excess + free
	}
	lastAllocs, _ := read()
	armed := true // start-up's own release ran; what follows it may still leave garbage
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		allocs, excess := read()
		quiet := allocs-lastAllocs < t.quietBytes
		lastAllocs = allocs
		switch {
		case !quiet:
			armed = true
		case armed && excess >= t.minExcess:
			armed = false
			start := time.Now()
			retired := workers.RetireIdle()
			// Two collections: the first moves what sync.Pools hold to their victim caches,
			// and the second, FreeOSMemory's, drops those and returns every free page. A
			// quiet proxy has no use for them. The second took about 80 B per connection
			// more off S5 at rest (benchmarks/README.md, "The pools' buffers and the tracker
			// (thirty-first session)"). The record layer's 560 KB of pooled buffers are not
			// that saving: their pages were mostly never written ("Small buffers for small
			// records, measured and not kept (thirty-second session)").
			runtime.GC()
			debug.FreeOSMemory()
			t.log.Debug("returned idle heap memory", "reclaimable_bytes", excess, "idle_workers_ended", retired,
				"took", time.Since(start))
			if t.onTrim != nil {
				t.onTrim(excess)
			}
			lastAllocs, _ = read() // the collection's own allocations do not count as load
		}
	}
}
