package metrics

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The go_* and process_* metrics of the process, under the names, help texts, types and
// meanings of client_golang's Go and process collectors (v1.25, default options), which
// operators' Go dashboards read. They are made here instead because of what those collectors
// cost on every scrape: the process collector parses /proc/self/{stat,limits} with procfs (a
// regular expression per limit line) and /proc/self/net/netstat through a generic parser,
// and before Linux 6.2 lists /proc/self/fd as a slice of names (0.7 MB of garbage per scrape
// on a node with 10,000 descriptors open). Here the buffers are kept between scrapes, the
// numbers come from system calls and from /proc files read into one buffer, and the
// runtime's figures from one runtime/metrics read into a fixed sample slice: a scrape of an
// idle ztunnel takes 106 KB from the heap instead of 228 KB, in 60% of the time.
// benchmarks/README.md, "The process and Go metrics (sixty-sixth session)".

// runtimeCollector is the prometheus.Collector of the go_* and process_* metrics.
type runtimeCollector struct {
	mu      sync.Mutex       // serializes Collect, which reuses the fields below
	samples []metrics.Sample // rm* order; the names are set once in newRuntimeCollector
	gc      debug.GCStats    // reused: ReadGCStats keeps its slices' capacity and PauseQuantiles' length
	proc    procReader       // process figures (process_linux.go)

	goInfo prometheus.Metric // immutable after newRuntimeCollector
}

// Indices into runtimeCollector.samples, and the runtime/metrics names read there.
const (
	rmTinyAllocs = iota
	rmAllocsObjects
	rmFreesObjects
	rmAllocsBytes
	rmTotalBytes
	rmHeapObjectsBytes
	rmHeapUnusedBytes
	rmHeapReleasedBytes
	rmHeapFreeBytes
	rmHeapObjects
	rmStacksBytes
	rmOSStacksBytes
	rmMSpanInuse
	rmMSpanFree
	rmMCacheInuse
	rmMCacheFree
	rmBuckets
	rmMetadataOther
	rmOther
	rmHeapGoal
	rmGOGC
	rmMemLimit
	rmGOMAXPROCS
	rmCount
)

var rmNames = [rmCount]string{
	rmTinyAllocs:        "/gc/heap/tiny/allocs:objects",
	rmAllocsObjects:     "/gc/heap/allocs:objects",
	rmFreesObjects:      "/gc/heap/frees:objects",
	rmAllocsBytes:       "/gc/heap/allocs:bytes",
	rmTotalBytes:        "/memory/classes/total:bytes",
	rmHeapObjectsBytes:  "/memory/classes/heap/objects:bytes",
	rmHeapUnusedBytes:   "/memory/classes/heap/unused:bytes",
	rmHeapReleasedBytes: "/memory/classes/heap/released:bytes",
	rmHeapFreeBytes:     "/memory/classes/heap/free:bytes",
	rmHeapObjects:       "/gc/heap/objects:objects",
	rmStacksBytes:       "/memory/classes/heap/stacks:bytes",
	rmOSStacksBytes:     "/memory/classes/os-stacks:bytes",
	rmMSpanInuse:        "/memory/classes/metadata/mspan/inuse:bytes",
	rmMSpanFree:         "/memory/classes/metadata/mspan/free:bytes",
	rmMCacheInuse:       "/memory/classes/metadata/mcache/inuse:bytes",
	rmMCacheFree:        "/memory/classes/metadata/mcache/free:bytes",
	rmBuckets:           "/memory/classes/profiling/buckets:bytes",
	rmMetadataOther:     "/memory/classes/metadata/other:bytes",
	rmOther:             "/memory/classes/other:bytes",
	rmHeapGoal:          "/gc/heap/goal:bytes",
	rmGOGC:              "/gc/gogc:percent",
	rmMemLimit:          "/gc/gomemlimit:bytes",
	rmGOMAXPROCS:        "/sched/gomaxprocs:threads",
}

// rmMetric is one go_* metric computed from the samples.
type rmMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(s *[rmCount]uint64) float64
}

func gauge(name, help string, value func(s *[rmCount]uint64) float64) rmMetric {
	return rmMetric{prometheus.NewDesc(name, help, nil, nil), prometheus.GaugeValue, value}
}

func counterOf(name, help string, value func(s *[rmCount]uint64) float64) rmMetric {
	return rmMetric{prometheus.NewDesc(name, help, nil, nil), prometheus.CounterValue, value}
}

// rmMetrics are the go_memstats_* metrics (client_golang derives them from runtime/metrics
// the same way; go_memstats_last_gc_time_seconds comes from debug.ReadGCStats) and the three
// runtime settings it exports by default.
var rmMetrics = []rmMetric{
	gauge("go_memstats_alloc_bytes",
		"Number of bytes allocated in heap and currently in use. Equals to /memory/classes/heap/objects:bytes.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmHeapObjectsBytes]) }),
	counterOf("go_memstats_alloc_bytes_total",
		"Total number of bytes allocated in heap until now, even if released already. Equals to /gc/heap/allocs:bytes.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmAllocsBytes]) }),
	gauge("go_memstats_buck_hash_sys_bytes",
		"Number of bytes used by the profiling bucket hash table. Equals to /memory/classes/profiling/buckets:bytes.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmBuckets]) }),
	counterOf("go_memstats_frees_total",
		"Total number of heap objects frees. Equals to /gc/heap/frees:objects + /gc/heap/tiny/allocs:objects.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmFreesObjects] + s[rmTinyAllocs]) }),
	gauge("go_memstats_gc_sys_bytes",
		"Number of bytes used for garbage collection system metadata. Equals to /memory/classes/metadata/other:bytes.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmMetadataOther]) }),
	gauge("go_memstats_heap_alloc_bytes",
		"Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes. Equals to /memory/classes/heap/objects:bytes.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmHeapObjectsBytes]) }),
	gauge("go_memstats_heap_idle_bytes",
		"Number of heap bytes waiting to be used. Equals to /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmHeapReleasedBytes] + s[rmHeapFreeBytes]) }),
	gauge("go_memstats_heap_inuse_bytes",
		"Number of heap bytes that are in use. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes",
		func(s *[rmCount]uint64) float64 { return float64(s[rmHeapObjectsBytes] + s[rmHeapUnusedBytes]) }),
	gauge("go_memstats_heap_objects",
		"Number of currently allocated objects. Equals to /gc/heap/objects:objects.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmHeapObjects]) }),
	gauge("go_memstats_heap_released_bytes",
		"Number of heap bytes released to OS. Equals to /memory/classes/heap/released:bytes.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmHeapReleasedBytes]) }),
	gauge("go_memstats_heap_sys_bytes",
		"Number of heap bytes obtained from system. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes + /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.",
		func(s *[rmCount]uint64) float64 {
			return float64(s[rmHeapObjectsBytes] + s[rmHeapUnusedBytes] + s[rmHeapReleasedBytes] + s[rmHeapFreeBytes])
		}),
	counterOf("go_memstats_mallocs_total",
		"Total number of heap objects allocated, both live and gc-ed. Semantically a counter version for go_memstats_heap_objects gauge. Equals to /gc/heap/allocs:objects + /gc/heap/tiny/allocs:objects.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmAllocsObjects] + s[rmTinyAllocs]) }),
	gauge("go_memstats_mcache_inuse_bytes",
		"Number of bytes in use by mcache structures. Equals to /memory/classes/metadata/mcache/inuse:bytes.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmMCacheInuse]) }),
	gauge("go_memstats_mcache_sys_bytes",
		"Number of bytes used for mcache structures obtained from system. Equals to /memory/classes/metadata/mcache/inuse:bytes + /memory/classes/metadata/mcache/free:bytes.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmMCacheInuse] + s[rmMCacheFree]) }),
	gauge("go_memstats_mspan_inuse_bytes",
		"Number of bytes in use by mspan structures. Equals to /memory/classes/metadata/mspan/inuse:bytes.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmMSpanInuse]) }),
	gauge("go_memstats_mspan_sys_bytes",
		"Number of bytes used for mspan structures obtained from system. Equals to /memory/classes/metadata/mspan/inuse:bytes + /memory/classes/metadata/mspan/free:bytes.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmMSpanInuse] + s[rmMSpanFree]) }),
	gauge("go_memstats_next_gc_bytes",
		"Number of heap bytes when next garbage collection will take place. Equals to /gc/heap/goal:bytes.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmHeapGoal]) }),
	gauge("go_memstats_other_sys_bytes",
		"Number of bytes used for other system allocations. Equals to /memory/classes/other:bytes.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmOther]) }),
	gauge("go_memstats_stack_inuse_bytes",
		"Number of bytes obtained from system for stack allocator in non-CGO environments. Equals to /memory/classes/heap/stacks:bytes.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmStacksBytes]) }),
	gauge("go_memstats_stack_sys_bytes",
		"Number of bytes obtained from system for stack allocator. Equals to /memory/classes/heap/stacks:bytes + /memory/classes/os-stacks:bytes.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmStacksBytes] + s[rmOSStacksBytes]) }),
	gauge("go_memstats_sys_bytes",
		"Number of bytes obtained from system. Equals to /memory/classes/total:byte.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmTotalBytes]) }),
	gauge("go_gc_gogc_percent",
		"Heap size target percentage configured by the user, otherwise 100. This value is set by the GOGC environment variable, and the runtime/debug.SetGCPercent function. Sourced from /gc/gogc:percent.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmGOGC]) }),
	gauge("go_gc_gomemlimit_bytes",
		"Go runtime memory limit configured by the user, otherwise math.MaxInt64. This value is set by the GOMEMLIMIT environment variable, and the runtime/debug.SetMemoryLimit function. Sourced from /gc/gomemlimit:bytes.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmMemLimit]) }),
	gauge("go_sched_gomaxprocs_threads",
		"The current runtime.GOMAXPROCS setting, or the number of operating system threads that can execute user-level Go code simultaneously. Sourced from /sched/gomaxprocs:threads.",
		func(s *[rmCount]uint64) float64 { return float64(s[rmGOMAXPROCS]) }),
}

var (
	goroutinesDesc = prometheus.NewDesc("go_goroutines", "Number of goroutines that currently exist.", nil, nil)
	threadsDesc    = prometheus.NewDesc("go_threads", "Number of OS threads created.", nil, nil)
	gcPausesDesc   = prometheus.NewDesc("go_gc_duration_seconds",
		"A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.", nil, nil)
	lastGCDesc = prometheus.NewDesc("go_memstats_last_gc_time_seconds",
		"Number of seconds since 1970 of last garbage collection.", nil, nil)
	goInfoDesc = prometheus.NewDesc("go_info", "Information about the Go environment.",
		nil, prometheus.Labels{"version": runtime.Version()})
)

func newRuntimeCollector() *runtimeCollector {
	c := &runtimeCollector{
		samples: make([]metrics.Sample, rmCount),
		goInfo:  prometheus.MustNewConstMetric(goInfoDesc, prometheus.GaugeValue, 1),
	}
	for i, name := range rmNames {
		c.samples[i].Name = name
	}
	c.gc.PauseQuantiles = make([]time.Duration, 5) // filled, never resized, by ReadGCStats
	c.proc.init()
	return c
}

// Describe implements prometheus.Collector.
func (c *runtimeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- goroutinesDesc
	ch <- threadsDesc
	ch <- gcPausesDesc
	ch <- lastGCDesc
	ch <- goInfoDesc
	for i := range rmMetrics {
		ch <- rmMetrics[i].desc
	}
	describeProcess(ch)
}

// Collect implements prometheus.Collector.
func (c *runtimeCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()

	ch <- prometheus.MustNewConstMetric(goroutinesDesc, prometheus.GaugeValue, float64(runtime.NumGoroutine()))
	threads, _ := runtime.ThreadCreateProfile(nil)
	ch <- prometheus.MustNewConstMetric(threadsDesc, prometheus.GaugeValue, float64(threads))

	// The pause summary: the minimum, the quartiles and the maximum of the last pauses the
	// runtime keeps (up to 256), as client_golang reports them.
	debug.ReadGCStats(&c.gc)
	q := c.gc.PauseQuantiles
	ch <- prometheus.MustNewConstSummary(gcPausesDesc, uint64(c.gc.NumGC), c.gc.PauseTotal.Seconds(),
		map[float64]float64{0: q[0].Seconds(), 0.25: q[1].Seconds(), 0.5: q[2].Seconds(),
			0.75: q[3].Seconds(), 1: q[4].Seconds()})
	// Before the first collection LastGC is the Unix epoch: 0, as in client_golang.
	ch <- prometheus.MustNewConstMetric(lastGCDesc, prometheus.GaugeValue, float64(c.gc.LastGC.UnixNano())/1e9)
	ch <- c.goInfo

	metrics.Read(c.samples)
	var v [rmCount]uint64
	for i := range c.samples {
		if c.samples[i].Value.Kind() == metrics.KindUint64 {
			v[i] = c.samples[i].Value.Uint64()
		} // a name this runtime does not know reads as 0, as in client_golang
	}
	for i := range rmMetrics {
		m := &rmMetrics[i]
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(&v))
	}

	c.proc.collect(ch)
}
