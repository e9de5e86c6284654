package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"maps"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ztunnel-go/ztunnel/workload"
	"github.com/ztunnel-go/ztunnel/xds"
)

func TestParseStatusRSS(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want int64
		ok   bool
	}{
		{"ztunnel", "Name:\tztunnel\nVmPeak:\t 1300000 kB\nVmRSS:\t   24576 kB\nRssAnon:\t 12000 kB\n", 24576 << 10, true},
		{"missing", "Name:\tx\nVmSize:\t 1 kB\n", 0, false},
		{"kernel thread has no VmRSS", "Name:\tkthreadd\nState:\tS\n", 0, false},
		{"bad unit", "VmRSS:\t 5 MB\n", 0, false},
		{"bad number", "VmRSS:\t x kB\n", 0, false},
		{"negative", "VmRSS:\t -5 kB\n", 0, false},
	}
	for _, c := range cases {
		got, err := parseStatusRSS([]byte(c.in))
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("%s: got %v, %v; want %v, ok=%v", c.name, got, err, c.want, c.ok)
		}
	}
}

func TestParseStatusHWM(t *testing.T) {
	got, err := parseStatusHWM([]byte("Name:\tztunnel\nVmPeak:\t 1300000 kB\nVmHWM:\t   30000 kB\nVmRSS:\t   24576 kB\n"))
	if err != nil || got != 30000<<10 {
		t.Errorf("VmHWM = %d, %v; want %d", got, err, 30000<<10)
	}
	if _, err := parseStatusHWM([]byte("Name:\tkthreadd\nVmRSS:\t 5 kB\n")); err == nil {
		t.Error("a status without VmHWM parsed")
	}
}

// TestParseHostCPU: the aggregate line of /proc/stat gives the total (user to steal, guest
// time not twice) and the idle part (idle and iowait); anything else is refused.
func TestParseHostCPU(t *testing.T) {
	const stat = "cpu  100 2 30 400 5 6 70 8 1000 2000\ncpu0 50 1 15 200 2 3 35 4 0 0\nintr 12345\n"
	got, err := parseHostCPU([]byte(stat))
	if want := (hostCPU{total: 100 + 2 + 30 + 400 + 5 + 6 + 70 + 8, idle: 405}); err != nil || got != want {
		t.Errorf("parseHostCPU = %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{
		"",
		"cpu0 1 2 3 4 5 6 7 8\n",         // a single CPU's line first
		"cpu  1 2 3 4 5 6 7\n",           // too few counters
		"cpu  1 2 3 x 5 6 7 8 0 0\n",     // not a number
		"cpu  1 2 3 -4 5 6 7 8 0 0\n",    // negative
		"intr 1\ncpu  1 2 3 4 5 6 7 8\n", // not the first line
	} {
		if h, err := parseHostCPU([]byte(bad)); err == nil {
			t.Errorf("parseHostCPU(%q) = %+v, want an error", bad, h)
		}
	}
	// This host's own file parses, and its idle part is within its total.
	h, err := readHostCPU()
	if err != nil || h.total == 0 || h.idle > h.total {
		t.Errorf("readHostCPU = %+v, %v", h, err)
	}
}

// TestIdlePercent: the idle share of the ticks between two readings.
func TestIdlePercent(t *testing.T) {
	a := hostCPU{total: 1000, idle: 300}
	for _, c := range []struct {
		b    hostCPU
		want float64
	}{
		{hostCPU{total: 1200, idle: 350}, 25},
		{hostCPU{total: 1200, idle: 300}, 0},
		{hostCPU{total: 1200, idle: 500}, 100},
		{hostCPU{total: 1000, idle: 300}, 0}, // no tick passed
		{hostCPU{total: 900, idle: 200}, 0},  // readings in the wrong order
	} {
		if got := idlePercent(a, c.b); got != c.want {
			t.Errorf("idlePercent(%+v, %+v) = %v, want %v", a, c.b, got, c.want)
		}
	}
}

// TestParseStall: -log-stall takes STALL/PERIOD with the stall shorter than the period.
func TestParseStall(t *testing.T) {
	for _, c := range []struct {
		in            string
		stall, period time.Duration
		ok            bool
	}{
		{"500ms/2s", 500 * time.Millisecond, 2 * time.Second, true},
		{"1s/1m", time.Second, time.Minute, true},
		{"2s/2s", 0, 0, false},
		{"3s/2s", 0, 0, false},
		{"0s/2s", 0, 0, false},
		{"-1s/2s", 0, 0, false},
		{"1s/2m", 0, 0, false},
		{"500ms", 0, 0, false},
		{"500ms/x", 0, 0, false},
		{"", 0, 0, false},
	} {
		stall, period, err := parseStall(c.in)
		if (err == nil) != c.ok || stall != c.stall || period != c.period {
			t.Errorf("parseStall(%q) = %v, %v, %v; want %v, %v, ok=%v", c.in, stall, period, err, c.stall, c.period, c.ok)
		}
	}
}

// TestCPUIdentity reads the first processor of a two-processor cpuinfo, and
// leaves the identity out when the family or the model is missing (as on
// arm64, whose cpuinfo has neither).
func TestCPUIdentity(t *testing.T) {
	two := "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n" +
		"model name\t: AMD EPYC\nstepping\t: 1\n\nprocessor\t: 1\ncpu family\t: 6\nmodel\t\t: 143\n" +
		"model name\t: Other\nstepping\t: 8\n"
	if name, id := cpuIdentity([]byte(two)); name != "AMD EPYC" || id != "family 25 model 17 stepping 1" {
		t.Errorf("got %q, %q", name, id)
	}
	arm := "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n"
	if name, id := cpuIdentity([]byte(arm)); name != "" || id != "" {
		t.Errorf("arm64: got %q, %q", name, id)
	}
	m := Machine{CPUModel: "AMD EPYC", CPUID: "family 25 model 17 stepping 1", AESGCM: "vaes-avx512"}
	if got, want := m.cpu(), "AMD EPYC, family 25 model 17 stepping 1; ztunnel's AES-GCM: vaes-avx512"; got != want {
		t.Errorf("cpu() = %q, want %q", got, want)
	}
	if got := (Machine{CPUModel: "AMD EPYC"}).cpu(); got != "AMD EPYC" {
		t.Errorf("an older report's cpu() = %q", got)
	}
	for _, c := range []struct {
		set, ran, want string
	}{
		{"", "", "6.18"},
		{"", "bbr", "6.18 with TCP congestion control bbr (the host's)"},
		{"cubic", "cubic", "6.18 with TCP congestion control cubic (-tcp-cc)"},
	} {
		r := &Report{Machine: Machine{Kernel: "6.18", TCPCC: c.ran}, Settings: Settings{TCPCC: c.set}}
		if got := r.kernel(); got != c.want {
			t.Errorf("kernel() with -tcp-cc %q, ran %q: %q, want %q", c.set, c.ran, got, c.want)
		}
	}
	r := &Report{Machine: Machine{Kernel: "6.18", TCPCC: "bbr", CPUIdle: "haltpoll (guest_halt_poll_ns 0)"}}
	if got, want := r.kernel(), "6.18 with TCP congestion control bbr (the host's); cpuidle haltpoll (guest_halt_poll_ns 0)"; got != want {
		t.Errorf("kernel() with the idle states: %q, want %q", got, want)
	}
}

// TestCPUIdle reads the cpuidle driver and governor from a sysfs tree, and the
// guest's halt polling only under the haltpoll driver.
func TestCPUIdle(t *testing.T) {
	const dir = "devices/system/cpu/cpuidle/"
	const poll = "module/haltpoll/parameters/guest_halt_poll_ns"
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s + "\n")} }
	for _, c := range []struct {
		name string
		sys  fstest.MapFS
		want string
	}{
		{"haltpoll guest", fstest.MapFS{dir + "current_driver": file("haltpoll"),
			dir + "current_governor": file("haltpoll"), poll: file("0")}, "haltpoll (guest_halt_poll_ns 0)"},
		{"haltpoll polling", fstest.MapFS{dir + "current_driver": file("haltpoll"),
			dir + "current_governor": file("haltpoll"), poll: file("200000")}, "haltpoll (guest_halt_poll_ns 200000)"},
		{"bare metal", fstest.MapFS{dir + "current_driver": file("intel_idle"),
			dir + "current_governor": file("menu"), poll: file("0")}, "intel_idle (governor menu)"},
		{"acpi without a governor file", fstest.MapFS{dir + "current_driver": file("acpi_idle")}, "acpi_idle"},
		{"no driver", fstest.MapFS{dir + "current_driver": file("none")}, ""},
		{"no cpuidle", fstest.MapFS{}, ""},
	} {
		if got := cpuIdle(c.sys); got != c.want {
			t.Errorf("%s: cpuIdle = %q, want %q", c.name, got, c.want)
		}
	}
}

// TestProcSelf reads the test's own process: CPU and RSS are positive and CPU grows with work,
// to better than the 10 ms ticks of /proc/<pid>/stat.
func TestProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	pid := os.Getpid()
	rss, err := procRSS(pid)
	if err != nil || rss <= 0 {
		t.Fatalf("procRSS = %d, %v", rss, err)
	}
	spin := func(d time.Duration) time.Duration {
		t.Helper()
		c0, err := procCPU(pid)
		if err != nil {
			t.Fatal(err)
		}
		for end := time.Now().Add(d); time.Now().Before(end); {
		}
		c1, err := procCPU(pid)
		if err != nil {
			t.Fatal(err)
		}
		return c1 - c0
	}
	if got := spin(150 * time.Millisecond); got < 50*time.Millisecond {
		t.Errorf("CPU grew by %v over 150 ms of spinning, want >= 50 ms", got)
	}
	// 3 ms of spinning: tick accounting reads 0 or 10 ms; the CPU clock reads about 3 ms (less
	// when the host takes the CPU away, never more than wall time plus the other goroutines).
	// Several tries, since a shared host can hold the spinner off the CPU for a whole try.
	var got []time.Duration
	for range 5 {
		d := spin(3 * time.Millisecond)
		got = append(got, d)
		if d > 0 && d%(10*time.Millisecond) != 0 && d < 9*time.Millisecond {
			return
		}
	}
	t.Errorf("CPU grew by %v over 3 ms spins, want one reading in (0, 9 ms) off the 10 ms grid", got)
}

// TestProcCPUOther reads another process's CPU clock, and fails for one that is gone.
func TestProcCPUOther(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SKIPPED: process CPU clocks are read on Linux only")
	}
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Skipf("SKIPPED: cannot start sleep: %v", err)
	}
	pid := cmd.Process.Pid
	d, err := procCPU(pid)
	if err != nil || d < 0 || d > time.Second {
		t.Errorf("procCPU(sleep) = %v, %v; want a small non-negative time", d, err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if d, err := procCPU(pid); err == nil {
		t.Errorf("procCPU of the reaped pid %d = %v, want an error", pid, d)
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 1000; i++ {
		s = append(s, time.Duration(i))
	}
	cases := []struct {
		q    float64
		want time.Duration
	}{{0.5, 500}, {0.99, 990}, {0.999, 999}, {1, 1000}, {0, 1}}
	for _, c := range cases {
		if got := percentile(s, c.q); got != c.want {
			t.Errorf("percentile(1..1000, %v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
	if got := percentile([]time.Duration{7}, 0.999); got != 7 {
		t.Errorf("percentile([7], 0.999) = %v, want 7", got)
	}
}

func TestMedian(t *testing.T) {
	cases := []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{5}, 5}}
	for _, c := range cases {
		in := append([]float64(nil), c.in...)
		if got := median(in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
		if !equalFloats(in, c.in) {
			t.Errorf("median modified its input: %v", in)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseFlags(t *testing.T) {
	cases := []struct {
		args    []string
		ok      bool
		dur, rr time.Duration
		reps    int
		paths   int
	}{
		{nil, true, 10 * time.Second, 5 * time.Second, 3, len(allPaths)},
		{[]string{"-quick"}, true, 300 * time.Millisecond, 200 * time.Millisecond, 1, len(allPaths)},
		{[]string{"-quick", "-reps", "3", "-duration", "1s"}, true, time.Second, 200 * time.Millisecond, 3, len(allPaths)},
		{[]string{"-paths", "hbone,tls-relay"}, true, 10 * time.Second, 5 * time.Second, 3, 2},
		{[]string{"-paths", "hbone,nginx"}, false, 0, 0, 0, 0},
		{[]string{"-scenarios", "s7"}, false, 0, 0, 0, 0},
		{[]string{"-reps", "0"}, false, 0, 0, 0, 0},
		{[]string{"-duration", "-1s"}, false, 0, 0, 0, 0},
		{[]string{"-json", "-markdown"}, false, 0, 0, 0, 0},
		{[]string{"extra"}, false, 0, 0, 0, 0},
		{[]string{"-ztunnel-env", "HTTP2_STREAM_WINDOW_SIZE=262144", "-ztunnel-env", "GOGC=50"}, true, 10 * time.Second, 5 * time.Second, 3, len(allPaths)},
		{[]string{"-ztunnel-env", "NOVALUE"}, false, 0, 0, 0, 0},
		{[]string{"-ztunnel-env", "=1"}, false, 0, 0, 0, 0},
		{[]string{"-rest", "25s"}, true, 10 * time.Second, 5 * time.Second, 3, len(allPaths)},
		{[]string{"-rest", "1s"}, false, 0, 0, 0, 0}, // not after the settle reading (1s)
		{[]string{"-settle", "2s", "-rest", "1500ms"}, false, 0, 0, 0, 0},
		{[]string{"-tcp-cc", "cubic"}, true, 10 * time.Second, 5 * time.Second, 3, len(allPaths)},
		{[]string{"-tcp-cc", "cubic bbr"}, false, 0, 0, 0, 0},
		{[]string{"-tcp-cc", "../x"}, false, 0, 0, 0, 0},
		{[]string{"-quick", "-rest", "500ms"}, true, 300 * time.Millisecond, 200 * time.Millisecond, 1, len(allPaths)}, // after -quick's 200ms settle
		{[]string{"-order", "fixed"}, true, 10 * time.Second, 5 * time.Second, 3, len(allPaths)},
		{[]string{"-order", "random"}, false, 0, 0, 0, 0},
		{[]string{"-order", ""}, false, 0, 0, 0, 0},
		{[]string{"-log-stall", "500ms/2s"}, true, 10 * time.Second, 5 * time.Second, 3, len(allPaths)},
		{[]string{"-log-stall", "2s/500ms"}, false, 0, 0, 0, 0},
	}
	for _, c := range cases {
		o, err := parseFlags(c.args, io.Discard)
		if (err == nil) != c.ok {
			t.Errorf("%q: err = %v, want ok=%v", c.args, err, c.ok)
			continue
		}
		if !c.ok {
			continue
		}
		if o.duration != c.dur || o.rrDuration != c.rr || o.reps != c.reps || len(o.paths) != c.paths {
			t.Errorf("%q: duration %v rr %v reps %d paths %v; want %v %v %d %d paths",
				c.args, o.duration, o.rrDuration, o.reps, o.paths, c.dur, c.rr, c.reps, c.paths)
		}
	}
}

// TestParseOrder: the paths alternate unless -order fixed says otherwise.
func TestParseOrder(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, orderAlternate},
		{[]string{"-quick"}, orderAlternate},
		{[]string{"-order", "fixed"}, orderFixed},
		{[]string{"-order", "alternate"}, orderAlternate},
	} {
		o, err := parseFlags(c.args, io.Discard)
		if err != nil || o.order != c.want {
			t.Errorf("%q: order %q, err %v; want %q", c.args, o.order, err, c.want)
		}
	}
}

// TestPathOrder: under -order alternate every path runs first and last equally often over an
// even number of repetitions; -order fixed keeps the table's order; the harness's list is
// never reordered in place.
func TestPathOrder(t *testing.T) {
	table := []string{pathDirect, pathPassthrough, pathHBONE, pathHAProxy}
	reversed := []string{pathHAProxy, pathHBONE, pathPassthrough, pathDirect}
	first, last := map[string]int{}, map[string]int{}
	for i := 1; i <= 4; i++ {
		got := pathOrder(table, i, orderAlternate)
		want := table
		if i%2 == 0 {
			want = reversed
		}
		if !slices.Equal(got, want) {
			t.Errorf("alternate, repetition %d: %v, want %v", i, got, want)
		}
		first[got[0]]++
		last[got[len(got)-1]]++
		if got := pathOrder(table, i, orderFixed); !slices.Equal(got, table) {
			t.Errorf("fixed, repetition %d: %v, want %v", i, got, table)
		}
	}
	if first[pathDirect] != 2 || first[pathHAProxy] != 2 || last[pathDirect] != 2 || last[pathHAProxy] != 2 {
		t.Errorf("over four repetitions: first %v, last %v; want direct and haproxy twice each", first, last)
	}
	if table[0] != pathDirect || table[3] != pathHAProxy {
		t.Errorf("the harness's own list was reordered: %v", table)
	}
}

// TestOrderNote: the table and the markdown say when the paths alternated, and only then.
func TestOrderNote(t *testing.T) {
	const said = "reversed in even ones"
	r := &Report{Settings: Settings{Reps: 3, Order: orderAlternate, Paths: []string{pathDirect, pathHBONE}}}
	r.add(scenS4, metP50, pathHBONE, 50)
	r.summarize()
	checkRendered(t, r, said)
	for _, s := range []Settings{
		{Reps: 3, Order: orderFixed, Paths: []string{pathDirect, pathHBONE}},
		{Reps: 3, Paths: []string{pathDirect, pathHBONE}}, // a report from before -order
		{Reps: 1, Order: orderAlternate, Paths: []string{pathDirect, pathHBONE}},
		{Reps: 3, Order: orderAlternate, Paths: []string{pathHBONE}},
	} {
		r.Settings = s
		var table bytes.Buffer
		if err := r.writeTable(&table); err != nil {
			t.Fatal(err)
		}
		if md := checkRendered(t, r); strings.Contains(md, said) || strings.Contains(table.String(), said) {
			t.Errorf("settings %+v: the report says the paths alternated:\n%s\n%s", s, table.String(), md)
		}
	}
}

// TestParseZtunnelEnv: -ztunnel-env accumulates in order (the harness appends them after its
// own variables, so the last value of a name wins).
func TestParseZtunnelEnv(t *testing.T) {
	o, err := parseFlags([]string{"-ztunnel-env", "A=1", "-ztunnel-env", "B=x=y", "-ztunnel-env", "A=2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"A=1", "B=x=y", "A=2"}; !slices.Equal(o.ztunnelEnv, want) {
		t.Errorf("ztunnelEnv = %q, want %q", o.ztunnelEnv, want)
	}
	h := &harness{opts: o}
	env := h.ztunnelEnv("ns/w/sa", "/cfg.yaml")
	if got := env[len(env)-3:]; !slices.Equal(got, o.ztunnelEnv) {
		t.Errorf("ztunnel environment ends with %q, want the -ztunnel-env pairs %q", got, o.ztunnelEnv)
	}
}

func TestParseMappings(t *testing.T) {
	got, err := parseMappings("127.0.0.1:1=10.0.0.1:2,0.0.0.0:3=127.0.0.1:4@app1")
	want := []relayMapping{{"127.0.0.1:1", "10.0.0.1:2", ""}, {"0.0.0.0:3", "127.0.0.1:4", "app1"}}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("parseMappings = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"", "a", "a=", "=b", "a=b,", "a=b@", "a=@p"} {
		if _, err := parseMappings(bad); err == nil {
			t.Errorf("parseMappings(%q) accepted", bad)
		}
	}
}

func TestGroupMappings(t *testing.T) {
	cfg := &tls.Config{}
	m := func(s string) []relayMapping {
		t.Helper()
		maps, err := parseMappings(s)
		if err != nil {
			t.Fatal(err)
		}
		return maps
	}
	// A server side with two protocols on one address, and a plain address.
	lns, err := groupMappings(m(":15008=10.0.0.7:1@app1,:9=10.0.0.7:9,:15008=10.0.0.7:2@app2"), cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(lns) != 2 || lns[0].addr != ":15008" || lns[1].addr != ":9" {
		t.Fatalf("listeners %+v, want :15008 then :9", lns)
	}
	if lns[0].upstream != "" || len(lns[0].byProto) != 2 || lns[0].byProto["app2"] != "10.0.0.7:2" ||
		!slices.Equal(lns[0].cfg.NextProtos, []string{"app1", "app2"}) {
		t.Errorf("protocol listener %+v (protocols %v)", lns[0], lns[0].cfg.NextProtos)
	}
	if lns[1].upstream != "10.0.0.7:9" || lns[1].byProto != nil || lns[1].cfg.NextProtos != nil {
		t.Errorf("plain listener %+v", lns[1])
	}
	if cfg.NextProtos != nil {
		t.Errorf("the shared config was changed: %v", cfg.NextProtos)
	}
	// A client side offers its one protocol.
	lns, err = groupMappings(m("127.0.0.1:1=10.0.0.7:15008@app2"), cfg, false)
	if err != nil || len(lns) != 1 || lns[0].upstream != "10.0.0.7:15008" || !slices.Equal(lns[0].cfg.NextProtos, []string{"app2"}) {
		t.Errorf("client listener %+v, %v", lns, err)
	}
	for _, bad := range []struct {
		maps   string
		server bool
	}{
		{":1=a:1,:1=a:2", true},      // two upstreams, no protocols
		{":1=a:1@p,:1=a:2", true},    // one without a protocol
		{":1=a:1,:1=a:2@p", true},    // the same, the other way round
		{":1=a:1@p,:1=a:2@p", true},  // a protocol twice
		{":1=a:1@p,:1=a:2@q", false}, // a client address twice
	} {
		if _, err := groupMappings(m(bad.maps), cfg, bad.server); err == nil {
			t.Errorf("groupMappings(%q, server %v) accepted", bad.maps, bad.server)
		}
	}
}

// TestTargets checks the ratios and differences the report derives from medians.
func TestTargets(t *testing.T) {
	r := &Report{}
	for _, v := range []float64{4, 5, 6} { // median 5
		r.add(scenS1, metThroughput, pathHBONE, v)
	}
	r.add(scenS1, metThroughput, pathTLSRelay, 4)
	r.add(scenS1, metCPU, pathHBONE, 1)
	r.add(scenS1, metCPU, pathTLSRelay, 2)
	r.add(scenS1, metThroughput, pathTLSRelayInpod, 5)
	r.add(scenS1, metCPU, pathTLSRelayInpod, 1.25)
	r.add(scenS4, metP50, pathHBONE, 50)
	r.add(scenS4, metP50, pathDirect, 20)
	r.add(scenS5, metPerConn, pathHBONE, 3000)
	r.add(scenIdle, metRSS, "ztunnel", 12)
	r.add(scenIdle, metScraped, "ztunnel", 17)
	r.summarize()
	want := map[string]struct {
		v   float64
		met bool
	}{
		"S1 throughput, HBONE / Go TLS relay":                         {1.25, true},
		"S1 CPU per GiB, HBONE / Go TLS relay":                        {0.5, true},
		"S1 throughput, HBONE / Go TLS relay under the in-pod rules":  {1, false},
		"S1 CPU per GiB, HBONE / Go TLS relay under the in-pod rules": {0.8, true},
		"S4 p50 added by HBONE over direct":                           {30, false},
		"S5 RSS per idle connection, HBONE (both proxies)":            {3000, false},
		"Idle RSS, one ztunnel with the idle workloads":               {12, true},
		"Idle RSS after one scrape of its metrics":                    {17, false},
	}
	if len(r.Targets) != len(want) {
		t.Errorf("got %d targets, want %d: %+v", len(r.Targets), len(want), r.Targets)
	}
	for _, tg := range r.Targets {
		w, ok := want[tg.Name]
		if !ok {
			t.Errorf("unexpected target %q", tg.Name)
			continue
		}
		if math.Abs(tg.Measured-w.v) > 1e-9 || tg.Met != w.met {
			t.Errorf("%s: measured %v met %v, want %v %v", tg.Name, tg.Measured, tg.Met, w.v, w.met)
		}
	}
	if s := r.find(scenS1, metThroughput, pathHBONE); s.Median != 5 || s.Min != 4 || s.Max != 6 {
		t.Errorf("S1 hbone summary = %v [%v-%v], want 5 [4-6]", s.Median, s.Min, s.Max)
	}
	md := checkRendered(t, r, "5.00 [4.00-6.00]", "MISSED", "met")
	if !strings.HasPrefix(md, "| scenario | metric | unit | direct | hbone | tls-relay | tls-relay-inpod | ztunnel |\n") {
		t.Errorf("markdown header:\n%s", md)
	}
}

// TestTargetsPaired checks that a comparison is made within each repetition: the machine's
// speed moves between repetitions, and a ratio of two medians mixes repetitions.
func TestTargetsPaired(t *testing.T) {
	r := &Report{}
	// S3: HBONE and passthrough are 0.5x each other in every repetition while the machine
	// speeds up 4x; the medians' ratio would read 1x. Repetition 2's passthrough run failed,
	// so its HBONE value has no partner.
	hbone := map[int]float64{1: 100, 2: 150, 3: 400, 4: 800}
	pass := map[int]float64{1: 200, 3: 800, 4: 1600}
	for i := 1; i <= 4; i++ {
		r.startRep(i)
		r.add(scenS3, metRate, pathHBONE, hbone[i])
		if v, ok := pass[i]; ok {
			r.add(scenS3, metRate, pathPassthrough, v)
		}
		r.add(scenS4, metP50, pathHBONE, []float64{50, 90, 60, 70}[i-1])
		r.add(scenS4, metP50, pathDirect, []float64{20, 30, 40, 10}[i-1]) // differences 30, 60, 20, 60
	}
	r.summarize()
	got := map[string]Target{}
	for _, tg := range r.Targets {
		got[tg.Name] = tg
	}
	s3 := got["S3 connection rate, HBONE / passthrough"]
	if s3.Pairs != 3 || s3.Measured != 0.5 || s3.Min != 0.5 || s3.Max != 0.5 || s3.Met {
		t.Errorf("S3 target = %+v, want 0.5 from 3 pairs, missed", s3)
	}
	if m := median([]float64{100, 150, 400, 800}) / median([]float64{200, 800, 1600}); math.Abs(m-0.34375) > 1e-9 {
		t.Fatalf("the medians' ratio is %v: the case no longer tells the two apart", m)
	}
	s4 := got["S4 p50 added by HBONE over direct"]
	if s4.Pairs != 4 || s4.Measured != 45 || s4.Min != 20 || s4.Max != 60 || s4.Met {
		t.Errorf("S4 target = %+v, want 45 [20-60] from 4 pairs, missed", s4)
	}
	checkRendered(t, r, "0.500 [0.500-0.500] x", "45.0 [20.0-60.0] us", "median [min-max] of its value in each repetition")

	// A report saved before values carried their repetition compares the medians.
	var old Report
	if err := json.Unmarshal([]byte(`{"results": [
		{"scenario": "s3", "metric": "rate", "path": "hbone", "values": [100, 150, 400, 800]},
		{"scenario": "s3", "metric": "rate", "path": "passthrough", "values": [200, 800, 1600]}]}`), &old); err != nil {
		t.Fatal(err)
	}
	old.summarize()
	if len(old.Targets) != 1 || old.Targets[0].Pairs != 0 || math.Abs(old.Targets[0].Measured-0.34375) > 1e-9 {
		t.Errorf("old report's targets = %+v, want the medians' ratio 0.34375", old.Targets)
	}
	if md := checkRendered(t, &old, "0.344 x", "from the medians above"); strings.Contains(md, "each repetition") {
		t.Errorf("an old report's targets are said to be per repetition:\n%s", md)
	}
}

// checkRendered renders r as the table and as markdown, checks that both contain every
// string of want, and returns the markdown.
func checkRendered(t *testing.T, r *Report, want ...string) string {
	t.Helper()
	var table, md bytes.Buffer
	if err := r.writeTable(&table); err != nil {
		t.Fatal(err)
	}
	if err := r.writeMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, sub := range want {
		if !strings.Contains(table.String(), sub) || !strings.Contains(md.String(), sub) {
			t.Errorf("table or markdown lacks %q:\n%s\n%s", sub, table.String(), md.String())
		}
	}
	return md.String()
}

func TestIdleConfig(t *testing.T) {
	cfg := idleConfig(1000)
	if n := strings.Count(cfg, "- uid: "); n != 1000 {
		t.Errorf("idleConfig(1000) has %d workloads", n)
	}
	for _, sub := range []string{`workloadIps: ["10.250.0.1"]`, `workloadIps: ["10.250.3.250"]`, "name: w0\n  namespace: ns0\n  serviceAccount: sa0"} {
		if !strings.Contains(cfg, sub) {
			t.Errorf("idleConfig lacks %q", sub)
		}
	}
}

func FuzzParseStatusRSS(f *testing.F) {
	f.Add([]byte("Name:\tztunnel\nVmRSS:\t   24576 kB\n"))
	f.Add([]byte("VmRSS: 1 kB"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseStatusRSS(b)
		if err == nil && n < 0 {
			t.Errorf("negative RSS %d", n)
		}
	})
}

func FuzzParseMappings(f *testing.F) {
	f.Add("127.0.0.1:7201=10.244.0.4:7301,127.0.0.1:7202=10.244.0.4:7302")
	f.Add("a=b")
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := parseMappings(s)
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.listen == "" || m.upstream == "" || strings.Contains(m.listen, ",") {
				t.Errorf("bad mapping %+v from %q", m, s)
			}
		}
	})
}

// TestMeshConfigService: the ztunnels' local config loads, and its service is what the
// hbone-svc path dials: the VIP, on the default network, with ports 80, 81 and 82 mapped to
// the echo, source and one-shot applications, and the server pod as its one endpoint.
func TestMeshConfigService(t *testing.T) {
	store := workload.NewStore()
	if err := xds.LoadLocal(store, []byte(meshConfig)); err != nil {
		t.Fatalf("meshConfig does not load: %v\n%s", err, meshConfig)
	}
	svc := store.Snapshot().ServiceByVIP("", netip.MustParseAddr(ipSvc))
	if svc == nil || svc.Hostname != svcHost {
		t.Fatalf("VIP %s: service %+v, want %s", ipSvc, svc, svcHost)
	}
	want := map[uint16]uint16{80: portEcho, 81: portSource, 82: portOneShot}
	if !maps.Equal(svc.Ports, want) {
		t.Errorf("service ports %v, want %v", svc.Ports, want)
	}
	if len(svc.Endpoints) != 1 || svc.Endpoints["bench//v1/Pod/default/server"] == nil {
		t.Errorf("service endpoints %v, want the server pod alone", svc.Endpoints)
	}
}

// TestCheckTCPCC: -tcp-cc names an algorithm that the namespaces can take, or the harness says
// which host list stops it and what to do, before it builds anything.
func TestCheckTCPCC(t *testing.T) {
	dir := t.TempDir()
	write := func(name, v string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("tcp_available_congestion_control", "reno bbr cubic")
	write("tcp_allowed_congestion_control", "reno bbr")
	if err := checkTCPCC("bbr", dir); err != nil {
		t.Errorf("bbr, allowed: %v", err)
	}
	err := checkTCPCC("cubic", dir)
	if err == nil || !strings.Contains(err.Error(), "tcp_allowed_congestion_control: reno bbr") ||
		!strings.Contains(err.Error(), `sysctl -w net.ipv4.tcp_allowed_congestion_control="reno bbr cubic"`) {
		t.Errorf("cubic, loaded but not allowed: %v", err)
	}
	if err := checkTCPCC("vegas", dir); err == nil || !strings.Contains(err.Error(), "modprobe tcp_vegas") {
		t.Errorf("vegas, not loaded: %v", err)
	}
	if err := checkTCPCC("bbr", filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "-tcp-cc bbr") {
		t.Errorf("without the lists: %v", err)
	}
}

// TestRowsOrder: rows go by scenario in the order their figures were first recorded, except a
// bulk scenario's host-idle row, which follows its CPU row although the direct path (no proxy,
// no CPU figure) records it first.
func TestRowsOrder(t *testing.T) {
	var r Report
	r.startRep(1)
	r.add(scenIdle, metRSS, "ztunnel", 10)
	r.add(scenS2, metThroughput, pathDirect, 30)
	r.add(scenS2, metIdle, pathDirect, 1)
	r.add(scenS1, metThroughput, pathDirect, 20)
	r.add(scenS1, metIdle, pathDirect, 30)
	r.add(scenS1, metThroughput, pathHBONE, 7)
	r.add(scenS1, metIdle, pathHBONE, 20)
	r.add(scenS1, metCPU, pathHBONE, 1.4)
	rows, paths := r.rows()
	want := [][2]string{
		{scenS1, metThroughput}, {scenS1, metCPU}, {scenS1, metIdle},
		{scenS2, metThroughput}, {scenS2, metIdle},
		{scenIdle, metRSS},
	}
	if !slices.Equal(rows, want) {
		t.Errorf("rows %v, want %v", rows, want)
	}
	if wantPaths := []string{pathDirect, pathHBONE, "ztunnel"}; !slices.Equal(paths, wantPaths) {
		t.Errorf("paths %v, want %v", paths, wantPaths)
	}
}
