package metrics

import (
	"maps"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

// family is one gathered metric family reduced to what the comparison needs.
type family struct {
	typ     dto.MetricType
	help    string
	samples map[string]float64 // by the sample's labels (and quantile) in text form
}

func gatherFamilies(t *testing.T, c ...prometheus.Collector) map[string]family {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]family)
	for _, mf := range mfs {
		f := family{typ: mf.GetType(), help: mf.GetHelp(), samples: map[string]float64{}}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + ","
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				f.samples[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				f.samples[key] = m.GetGauge().GetValue()
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				f.samples[key+"count"] = float64(s.GetSampleCount())
				f.samples[key+"sum"] = s.GetSampleSum()
				for _, q := range s.GetQuantile() {
					f.samples[key+"q"+strconv.FormatFloat(q.GetQuantile(), 'g', -1, 64)] = q.GetValue()
				}
			default:
				t.Fatalf("%s: unexpected type %v", mf.GetName(), mf.GetType())
			}
		}
		out[mf.GetName()] = f
	}
	return out
}

func names(m map[string]family) []string { return slices.Sorted(maps.Keys(m)) }

// TestRuntimeMetricsAsClientGolang: the go_* and process_* metrics have the names, types, help
// texts and labels of client_golang's Go and process collectors with their default options,
// and the same values: equal where the figure holds still, between two readings of
// client_golang's where it only grows, and of the same size where it moves (the heap, the
// resident set).
func TestRuntimeMetricsAsClientGolang(t *testing.T) {
	runtime.GC() // so that the pause summary and the last collection's time are not empty
	ref := func() map[string]family {
		return gatherFamilies(t, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	before := ref()
	ours := gatherFamilies(t, newRuntimeCollector())
	after := ref()

	if got, want := names(ours), names(before); !slices.Equal(got, want) {
		t.Fatalf("families:\n got %v\nwant %v", got, want)
	}
	exact := map[string]bool{
		"go_info": true, "go_gc_gogc_percent": true, "go_gc_gomemlimit_bytes": true,
		"go_sched_gomaxprocs_threads": true, "process_max_fds": true,
		"process_virtual_memory_max_bytes": true, "process_start_time_seconds": true,
		"process_open_fds": true, // nothing else in the test opens or closes a descriptor
	}
	for _, name := range names(ours) {
		o, b, a := ours[name], before[name], after[name]
		if o.typ != b.typ || o.help != b.help {
			t.Errorf("%s: type %v help %q, want type %v help %q", name, o.typ, o.help, b.typ, b.help)
			continue
		}
		if len(o.samples) != len(b.samples) {
			t.Errorf("%s: samples %v, want the keys of %v", name, o.samples, b.samples)
			continue
		}
		for key, v := range o.samples {
			lo, hi := math.Min(b.samples[key], a.samples[key]), math.Max(b.samples[key], a.samples[key])
			if _, ok := b.samples[key]; !ok {
				t.Errorf("%s: sample %q not in client_golang's %v", name, key, b.samples)
				continue
			}
			var ok bool
			switch {
			case exact[name]:
				ok = v == lo && v == hi
			case name == "process_cpu_seconds_total":
				ok = v >= lo-0.02 && v <= hi+0.02 // getrusage against 10 ms ticks
			case o.typ == dto.MetricType_COUNTER:
				ok = v >= lo && v <= hi
			case name == "go_gc_duration_seconds":
				// Equal when no collection ran between client_golang's readings, as is usual.
				ok = v == lo && v == hi || lo != hi
			default: // a gauge that moves as the test runs: the same magnitude
				ok = v >= lo/2-1 && v <= hi*2+1
			}
			if !ok {
				t.Errorf("%s%s = %v, client_golang's before and after: %v, %v", name, key, v, b.samples[key], a.samples[key])
			}
		}
	}
}

// BenchmarkRuntimeMetrics gathers the go_* and process_* metrics alone, ours against
// client_golang's Go and process collectors, with the test's few descriptors open and with
// 10,000 more (a busy node's ztunnel; before Linux 6.2 each scrape lists them all).
func BenchmarkRuntimeMetrics(b *testing.B) {
	for _, fds := range []int{0, 10000} {
		var files []*os.File
		for range fds {
			f, err := os.Open(os.DevNull)
			if err != nil {
				b.Skipf("opening %d descriptors: %v", fds, err)
			}
			files = append(files, f)
		}
		for _, c := range []struct {
			name string
			c    []prometheus.Collector
		}{
			{"ours", []prometheus.Collector{newRuntimeCollector()}},
			{"client_golang", []prometheus.Collector{collectors.NewGoCollector(),
				collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}},
		} {
			b.Run(c.name+"/fds="+strconv.Itoa(fds), func(b *testing.B) {
				reg := prometheus.NewRegistry()
				reg.MustRegister(c.c...)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := reg.Gather(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		for _, f := range files {
			f.Close()
		}
	}
}
