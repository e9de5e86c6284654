package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/inpod/zdstest"
	"github.com/ztunnel-go/ztunnel/internal/lab"
	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"github.com/ztunnel-go/ztunnel/internal/procfs"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
)

// podRig is a shared-mode App (loopbackConfig: FAKE_CA, empty local config, the DNS proxy on)
// fed by a fake istio-cni, to which pods are added, each in a network namespace of its own.
type podRig struct {
	lab  *lab.Lab
	zds  *zdstest.Server
	pods int
}

// newPodRig starts the App and returns once it is ready and its own quiet listeners have
// parked (they do within a second of start-up).
func newPodRig(tb testing.TB) *podRig {
	tb.Helper()
	l := lab.New(tb) // skips without root
	sock := filepath.Join(tb.TempDir(), "zds.sock")
	zds, err := zdstest.Listen(sock, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatalf("fake istio-cni: %v", err)
	}
	tb.Cleanup(func() { zds.Close() })
	a, err := New(loopbackConfig(tb, map[string]string{"PROXY_MODE": "shared", "INPOD_UDS": sock}, 0), io.Discard)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			tb.Error("Run did not return after cancel")
		}
	})
	testwait.Until(tb, "the app to be ready", 10*time.Second, func() bool { return len(a.ready.Pending()) == 0 })
	testwait.Until(tb, "the app's HTTP listeners to park", 10*time.Second, func() bool {
		return leakcheck.Matching("net/http.(*Server).Serve(") == 0
	})
	return &podRig{lab: l, zds: zds}
}

// add enrols n more pods and returns once the App acknowledged each.
func (r *podRig) add(tb testing.TB, n int) {
	tb.Helper()
	for range n {
		i := r.pods
		r.pods++
		ns := r.lab.Netns(fmt.Sprintf("p%d", i))
		err := r.zds.Add(zdstest.Pod{UID: fmt.Sprintf("uid-%d", i), Name: fmt.Sprintf("pod-%d", i),
			Namespace: "default", ServiceAccount: "sa", NetnsPath: ns.Path()})
		if err != nil {
			tb.Fatalf("enrol pod %d: %v", i, err)
		}
	}
}

// TestIdlePodsHoldNoGoroutine: a pod whose listeners are quiet costs the process no goroutine.
// Its three proxy listeners and four DNS sockets hold none (netutil.IdleLoop), nor does its byte
// flusher (a timer), nor its policy watch (callbacks of the store and the revocation lists that
// start a sweep when something changes). Each idle pod held nine goroutines before the
// listeners parked, and one, the policy watcher, until the watch became callbacks.
func TestIdlePodsHoldNoGoroutine(t *testing.T) {
	r := newPodRig(t)
	base := leakcheck.Count()
	const pods = 3
	r.add(t, pods)
	testwait.Until(t, fmt.Sprintf("%d idle pods to hold no goroutine", pods), 10*time.Second,
		func() bool { return leakcheck.Count() <= base })
}

// BenchmarkIdlePods enrols 100 pods in a shared-mode App and reports what each costs once its
// listeners are quiet: goroutines, goroutine stack bytes, live heap bytes (after a collection)
// and anonymous RSS; then how often the whole idle process wakes up. One iteration is the whole
// measure; run it with -benchtime 1x.
func BenchmarkIdlePods(b *testing.B) {
	const pods = 100
	for b.Loop() {
		r := newPodRig(b)
		before := footprint(b)
		r.add(b, pods)
		added := time.Now()
		// The listeners of the last pod park within a second or two of its start.
		time.Sleep(3 * time.Second)
		after := footprint(b)
		b.ReportMetric(float64(after.goroutines-before.goroutines)/pods, "goroutines/pod")
		b.ReportMetric(float64(after.stacks-before.stacks)/pods, "stack-B/pod")
		b.ReportMetric(float64(after.heap-before.heap)/pods, "heap-B/pod")
		b.ReportMetric(float64(after.anon-before.anon)/pods, "anon-RSS-B/pod")
		// How often the idle process runs (every time slice it is given follows a wake-up),
		// from after the byte flushers' first ticks (5 s after each pod's start), for 5 s.
		time.Sleep(time.Until(added.Add(6 * time.Second)))
		const quiet = 5 * time.Second
		cpu0, slices0 := schedstat(b)
		time.Sleep(quiet)
		cpu1, slices1 := schedstat(b)
		b.ReportMetric(float64(slices1-slices0)/quiet.Seconds(), "wakeups/s")
		b.ReportMetric(float64(cpu1-cpu0)/1e3/quiet.Seconds(), "CPU-us/s")
	}
}

// schedstat sums, over the process's threads, the time spent on a CPU (ns) and the time slices
// had there (the first and third fields of each thread's schedstat).
func schedstat(tb testing.TB) (cpu, slices int64) {
	tb.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/schedstat")
	if err != nil {
		tb.Fatal(err)
	}
	for _, path := range tasks {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the thread has exited
		}
		f := strings.Fields(string(b))
		if len(f) != 3 {
			tb.Fatalf("%s: %q: want three fields", path, b)
		}
		c, err1 := strconv.ParseInt(f[0], 10, 64)
		n, err2 := strconv.ParseInt(f[2], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
		cpu += c
		slices += n
	}
	return cpu, slices
}

type footprintReading struct {
	goroutines         int
	stacks, heap, anon int64
}

// footprint reads, after a collection, the process's goroutines, goroutine stack bytes, live
// heap and resident anonymous memory (RssAnon).
func footprint(tb testing.TB) footprintReading {
	tb.Helper()
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	anon, err := procfs.KBField(status, "/proc/self/status", "RssAnon:")
	if err != nil {
		tb.Fatal(err)
	}
	return footprintReading{goroutines: leakcheck.Count(), stacks: int64(s[0].Value.Uint64()),
		heap: int64(s[1].Value.Uint64()), anon: anon}
}
