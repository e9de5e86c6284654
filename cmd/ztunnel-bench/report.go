package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// Path names, in table column order.
const (
	pathDirect      = "direct"
	pathPassthrough = "passthrough"
	pathHBONE       = "hbone"
	// pathHBONEService is the hbone path addressed to the server's service VIP: ztunnel picks
	// the endpoint and maps the service port to its target port (harness.go, meshConfig).
	pathHBONEService = "hbone-svc"
	pathTLSRelay     = "tls-relay"
	// pathTLSRelayInpod is the same relay in two pods that carry the in-pod rules, as the
	// ztunnels' pods do (harness.go, startTLSRelayInpod).
	pathTLSRelayInpod = "tls-relay-inpod"
	pathHAProxy       = "haproxy"
)

var allPaths = []string{pathDirect, pathPassthrough, pathHBONE, pathHBONEService, pathTLSRelay, pathTLSRelayInpod, pathHAProxy}

// Scenario names.
const (
	scenS1   = "s1"
	scenS2   = "s2"
	scenS3   = "s3"
	scenS4   = "s4"
	scenS5   = "s5"
	scenS6   = "s6"
	scenIdle = "idle"
)

var allScenarios = []string{scenS1, scenS2, scenS3, scenS4, scenS5, scenS6, scenIdle}

// Metric names and their units.
const (
	metThroughput  = "throughput" // Gbit/s
	metCPU         = "cpu"        // proxy CPU seconds per GiB
	metIdle        = "host idle"  // percent of the host's CPU time idle during a bulk run (S1, S2)
	metCPUOp       = "cpu/op"     // proxy CPU µs per connection (S3, S5 opening) or round trip (S4)
	metRate        = "rate"       // connections per second
	metP50         = "p50"        // microseconds
	metP99         = "p99"
	metP999        = "p99.9"
	metPerConn     = "per-conn"      // bytes of RSS per idle connection
	metConnAnon    = "per-conn anon" // its anonymous part (smaps_rollup)
	metConnFile    = "per-conn file" // its file-backed part: executable pages faulted in
	metPerConnRest = "per-conn rest" // per-conn read again at rest (-rest)
	metRSS         = "rss"           // MiB
	metPeakRSS     = "peak rss"      // MiB, the proxies' peak RSS during a run (S3), summed
	metAnon        = "anon"          // MiB, anonymous part of the idle ztunnel's RSS (smaps_rollup)
	metFile        = "file"          // MiB, file-backed part (Rss - Anonymous)
	metScraped     = "rss scraped"   // MiB, the idle ztunnel's VmRSS after one scrape of its metrics
	metScrapedFile = "file scraped"  // MiB, its file-backed part
)

var units = map[string]string{
	metThroughput: "Gbit/s", metCPU: "CPU s/GiB", metIdle: "%", metCPUOp: "CPU us/op", metRate: "conn/s",
	metP50: "us", metP99: "us", metP999: "us", metPerConn: "B/conn", metRSS: "MiB",
	metConnAnon: "B/conn", metConnFile: "B/conn", metPerConnRest: "B/conn",
	metAnon: "MiB", metFile: "MiB", metPeakRSS: "MiB", metScraped: "MiB", metScrapedFile: "MiB",
}

// Series is every repetition of one figure.
type Series struct {
	Scenario string    `json:"scenario"`
	Metric   string    `json:"metric"`
	Unit     string    `json:"unit"`
	Path     string    `json:"path"` // "ztunnel" for the idle-RSS check
	Values   []float64 `json:"values"`
	// Reps is the repetition each value was measured in (1-based), beside Values: a failed run
	// leaves a gap, so the n-th values of two series need not come from the same repetition.
	// Reports saved before it was recorded have none.
	Reps   []int   `json:"reps,omitempty"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Target is one goal of issue 6, checked against this run. A goal that compares two figures is
// measured in each repetition that has both, since the two ran minutes apart at most and share
// that repetition's state of the machine; Measured is the median of those per-repetition
// ratios or differences, Min and Max their range, and Pairs their count. Without repetition
// numbers (an older report), Measured compares the two medians and Pairs is 0.
type Target struct {
	Name     string  `json:"name"`
	Measured float64 `json:"measured"`
	Min      float64 `json:"min,omitempty"`
	Max      float64 `json:"max,omitempty"`
	Pairs    int     `json:"pairs,omitempty"`
	Op       string  `json:"op"` // ">=" or "<="
	Goal     float64 `json:"goal"`
	Unit     string  `json:"unit"`
	Met      bool    `json:"met"`
}

// Machine describes where the run happened, load included.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	// CPUID is the CPU's family, model and stepping (absent in reports made
	// before it was recorded): hosts that share a model name differ here.
	CPUID string `json:"cpu_id,omitempty"`
	// AESGCM is the AES-GCM the ztunnels' record layer runs on this CPU
	// (aesgcm.Implementation; absent in older reports).
	AESGCM string `json:"aes_gcm,omitempty"`
	// TCPCC is the TCP congestion control the harness's namespaces ran, read
	// in them (absent in older reports, which ran the host's without
	// recording it).
	TCPCC string `json:"tcp_cc,omitempty"`
	// CPUIdle is how an idle CPU waits (cpuIdle: the cpuidle driver, its
	// governor, the guest's halt polling; absent in older reports). A
	// proxy's round trip wakes sleeping threads, and what such a wake-up
	// costs depends on it (S4).
	CPUIdle     string `json:"cpu_idle,omitempty"`
	Kernel      string `json:"kernel"`
	GoVersion   string `json:"go_version"`
	HAProxy     string `json:"haproxy,omitempty"`
	LoadAtStart string `json:"loadavg_start"`
	LoadAtEnd   string `json:"loadavg_end"`
}

// cpu describes the CPU for the machine line: its model name, then what
// the report recorded of its identity and of the AES-GCM run on it.
func (m Machine) cpu() string {
	s := m.CPUModel
	if m.CPUID != "" {
		s += ", " + m.CPUID
	}
	if m.AESGCM != "" {
		s += "; ztunnel's AES-GCM: " + m.AESGCM
	}
	return s
}

// kernel describes the kernel for the machine line, with the TCP congestion
// control the namespaces ran and the CPUs' idle states when the report
// recorded them.
func (r *Report) kernel() string {
	s := r.Machine.Kernel
	switch {
	case r.Machine.TCPCC == "":
	case r.Settings.TCPCC != "":
		s += " with TCP congestion control " + r.Machine.TCPCC + " (-tcp-cc)"
	default:
		s += " with TCP congestion control " + r.Machine.TCPCC + " (the host's)"
	}
	if r.Machine.CPUIdle != "" {
		s += "; cpuidle " + r.Machine.CPUIdle
	}
	return s
}

// Settings are the knobs the run used.
type Settings struct {
	Duration      string `json:"duration"`
	RRDuration    string `json:"rr_duration"`
	Reps          int    `json:"reps"`
	IdleConns     int    `json:"idle_conns"`
	IdleWorkloads int    `json:"idle_workloads"`
	// Settle is the wait before RSS is read (S5, idle RSS); absent in reports made before it
	// was recorded (the default was then 1s too).
	Settle string `json:"settle,omitempty"`
	// Rest is when S5 read RSS a second time (-rest), after the connections settled; absent
	// when it did not.
	Rest      string   `json:"rest,omitempty"`
	Scenarios []string `json:"scenarios"`
	Paths     []string `json:"paths"`
	// TCPCC is what -tcp-cc set in every namespace (absent: the host's default).
	TCPCC string `json:"tcp_cc,omitempty"`
	// ZtunnelEnv is what -ztunnel-env added to the ztunnels' environment (none: the defaults).
	ZtunnelEnv []string `json:"ztunnel_env,omitempty"`
	// Order is -order: how the paths were ordered within each repetition (absent in reports
	// made before it existed, which all ran the table's order every time).
	Order string `json:"order,omitempty"`
	// LogStall is -log-stall, STALL/PERIOD: the ztunnels logged to a pipe the harness stopped
	// reading for STALL every PERIOD (absent: to a file).
	LogStall string `json:"log_stall,omitempty"`
}

// orderNote says how the paths were ordered within the repetitions, when that was not the
// table's order every time ("" then).
func (r *Report) orderNote() string {
	if r.Settings.Order == orderAlternate && r.Settings.Reps > 1 && len(r.Settings.Paths) > 1 {
		return ", the paths in the table's order in odd ones and reversed in even ones"
	}
	return ""
}

// Report is the whole result of a run, the -json output.
type Report struct {
	Machine  Machine   `json:"machine"`
	Settings Settings  `json:"settings"`
	Results  []*Series `json:"results"`
	Targets  []Target  `json:"targets"`
	Notes    []string  `json:"notes,omitempty"`
	// PathOrder lists, for each repetition, the paths in the order it ran them.
	PathOrder [][]string `json:"path_order,omitempty"`

	rep int // the repetition add records values for (set by the harness; 0 before the first)
}

// add records one value of the current repetition.
func (r *Report) add(scenario, metric, path string, v float64) {
	for _, s := range r.Results {
		if s.Scenario == scenario && s.Metric == metric && s.Path == path {
			s.Values = append(s.Values, v)
			s.Reps = append(s.Reps, r.rep)
			return
		}
	}
	r.Results = append(r.Results, &Series{Scenario: scenario, Metric: metric, Unit: units[metric], Path: path,
		Values: []float64{v}, Reps: []int{r.rep}})
}

// startRep makes the values that add records from now on those of repetition i (1-based).
func (r *Report) startRep(i int) { r.rep = i }

// paired applies f to the values of a and b measured in the same repetition, in repetition
// order. ok is false when either series lacks repetition numbers (a report saved before they
// were recorded, or values added before the first repetition).
func paired(a, b *Series, f func(x, y float64) float64) (out []float64, ok bool) {
	if !numbered(a) || !numbered(b) {
		return nil, false
	}
	for i, ra := range a.Reps {
		if j := slices.Index(b.Reps, ra); j >= 0 {
			out = append(out, f(a.Values[i], b.Values[j]))
		}
	}
	return out, true
}

// numbered reports whether every value of s carries its repetition.
func numbered(s *Series) bool {
	return len(s.Reps) == len(s.Values) && !slices.Contains(s.Reps, 0)
}

// find returns the series or nil.
func (r *Report) find(scenario, metric, path string) *Series {
	for _, s := range r.Results {
		if s.Scenario == scenario && s.Metric == metric && s.Path == path {
			return s
		}
	}
	return nil
}

// summarize fills Median, Min and Max of every series and evaluates the targets.
func (r *Report) summarize() {
	for _, s := range r.Results {
		s.Median, s.Min, s.Max = median(s.Values), slices.Min(s.Values), slices.Max(s.Values)
	}
	r.Targets = r.Targets[:0]
	med := func(scen, met, path string) (float64, bool) {
		s := r.find(scen, met, path)
		if s == nil {
			return 0, false
		}
		return s.Median, true
	}
	// compare sets a target on f of two figures: per repetition when the values say which
	// repetition they are from, else on the medians.
	compare := func(name string, num, den [3]string, f func(x, y float64) float64, op string, goal float64, unit string) {
		a, b := r.find(num[0], num[1], num[2]), r.find(den[0], den[1], den[2])
		if a == nil || b == nil {
			return
		}
		vals, ok := paired(a, b, f)
		if !ok {
			if v := f(a.Median, b.Median); !math.IsNaN(v) && !math.IsInf(v, 0) {
				r.Targets = append(r.Targets, newTarget(name, v, op, goal, unit))
			}
			return
		}
		vals = slices.DeleteFunc(vals, func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) })
		if len(vals) == 0 {
			return
		}
		t := newTarget(name, median(vals), op, goal, unit)
		t.Min, t.Max, t.Pairs = slices.Min(vals), slices.Max(vals), len(vals)
		r.Targets = append(r.Targets, t)
	}
	ratio := func(name string, num, den [3]string, op string, goal float64) {
		compare(name, num, den, func(x, y float64) float64 { return x / y }, op, goal, "x")
	}
	diff := func(name string, a, b [3]string, op string, goal float64) {
		compare(name, a, b, func(x, y float64) float64 { return x - y }, op, goal, "us")
	}
	ratio("S1 throughput, HBONE / Go TLS relay",
		[3]string{scenS1, metThroughput, pathHBONE}, [3]string{scenS1, metThroughput, pathTLSRelay}, ">=", 1.25)
	ratio("S1 CPU per GiB, HBONE / Go TLS relay",
		[3]string{scenS1, metCPU, pathHBONE}, [3]string{scenS1, metCPU, pathTLSRelay}, "<=", 0.8)
	// The same two goals against the relay in pods with the in-pod rules: the floor with the
	// kernel's per-packet work of the HBONE path's pods.
	ratio("S1 throughput, HBONE / Go TLS relay under the in-pod rules",
		[3]string{scenS1, metThroughput, pathHBONE}, [3]string{scenS1, metThroughput, pathTLSRelayInpod}, ">=", 1.25)
	ratio("S1 CPU per GiB, HBONE / Go TLS relay under the in-pod rules",
		[3]string{scenS1, metCPU, pathHBONE}, [3]string{scenS1, metCPU, pathTLSRelayInpod}, "<=", 0.8)
	ratio("S1 throughput, passthrough / HAProxy splice",
		[3]string{scenS1, metThroughput, pathPassthrough}, [3]string{scenS1, metThroughput, pathHAProxy}, ">=", 1.0)
	ratio("S2 / S1 throughput, HBONE",
		[3]string{scenS2, metThroughput, pathHBONE}, [3]string{scenS1, metThroughput, pathHBONE}, ">=", 1.0)
	ratio("S3 connection rate, HBONE / passthrough",
		[3]string{scenS3, metRate, pathHBONE}, [3]string{scenS3, metRate, pathPassthrough}, ">=", 0.6)
	diff("S4 p50 added by HBONE over direct",
		[3]string{scenS4, metP50, pathHBONE}, [3]string{scenS4, metP50, pathDirect}, "<=", 25)
	diff("S4 p99 added by HBONE over direct",
		[3]string{scenS4, metP99, pathHBONE}, [3]string{scenS4, metP99, pathDirect}, "<=", 150)
	if v, ok := med(scenS5, metPerConn, pathHBONE); ok {
		r.Targets = append(r.Targets, newTarget("S5 RSS per idle connection, HBONE (both proxies)", v, "<=", 2048, "B"))
	}
	ratio("S6 p99 / S4 p99, HBONE",
		[3]string{scenS6, metP99, pathHBONE}, [3]string{scenS4, metP99, pathHBONE}, "<=", 2)
	if v, ok := med(scenIdle, metRSS, "ztunnel"); ok {
		r.Targets = append(r.Targets, newTarget("Idle RSS, one ztunnel with the idle workloads", v, "<=", 16, "MiB"))
	}
	// The same goal for the same ztunnel once scraped, as a node's ztunnel is: the scrape (its
	// garbage collection, which walks every goroutine's stack through the executable's tables)
	// faults back part of the image that start-up paged out. Reports saved before the
	// fifty-ninth session have no such reading.
	if v, ok := med(scenIdle, metScraped, "ztunnel"); ok {
		r.Targets = append(r.Targets, newTarget("Idle RSS after one scrape of its metrics", v, "<=", 16, "MiB"))
	}
}

// newTarget checks measured value v against goal.
func newTarget(name string, v float64, op string, goal float64, unit string) Target {
	met := v >= goal
	if op == "<=" {
		met = v <= goal
	}
	return Target{Name: name, Measured: v, Op: op, Goal: goal, Unit: unit, Met: met}
}

// measured formats a target's figure: with the range of its per-repetition values when it
// has more than one.
func (t Target) measured() string {
	if t.Pairs > 1 {
		return fmt.Sprintf("%s [%s-%s] %s", fmtNum(t.Measured), fmtNum(t.Min), fmtNum(t.Max), t.Unit)
	}
	return fmtNum(t.Measured) + " " + t.Unit
}

// median of values (not modified); NaN for none.
func median(values []float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	s := slices.Clone(values)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// rows returns the (scenario, metric) pairs by scenario, in the order they were first recorded
// within one except that a scenario's host-idle row comes last (the direct path records it
// before any path records CPU), with the idle-RSS rows last, and the paths present in column
// order.
func (r *Report) rows() (rows [][2]string, paths []string) {
	seen := map[[2]string]bool{}
	havePath := map[string]bool{}
	for _, s := range r.Results {
		k := [2]string{s.Scenario, s.Metric}
		if !seen[k] {
			seen[k] = true
			rows = append(rows, k)
		}
		havePath[s.Path] = true
	}
	idleLast := func(k [2]string) int {
		if k[1] == metIdle {
			return 1
		}
		return 0
	}
	slices.SortStableFunc(rows, func(a, b [2]string) int {
		if d := slices.Index(allScenarios, a[0]) - slices.Index(allScenarios, b[0]); d != 0 {
			return d
		}
		return idleLast(a) - idleLast(b)
	})
	for _, p := range append(slices.Clone(allPaths), "ztunnel") {
		if havePath[p] {
			paths = append(paths, p)
		}
	}
	return rows, paths
}

// cell formats a series as "median [min-max]", or "-" when absent.
func cell(s *Series, withRange bool) string {
	if s == nil {
		return "-"
	}
	if !withRange || len(s.Values) == 1 {
		return fmtNum(s.Median)
	}
	return fmt.Sprintf("%s [%s-%s]", fmtNum(s.Median), fmtNum(s.Min), fmtNum(s.Max))
}

// fmtNum prints three significant figures, without exponent for the ranges here.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return "NaN"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

var scenarioTitle = map[string]string{
	scenS1: "S1 bulk, 1 stream", scenS2: "S2 bulk, 8 streams", scenS3: "S3 TCP_CRR",
	scenS4: "S4 TCP_RR", scenS5: "S5 idle conns", scenS6: "S6 RR under bulk", scenIdle: "idle RSS",
}

// writeTable writes the human table: one row per figure, one column per path.
func (r *Report) writeTable(w io.Writer) error {
	rows, paths := r.rows()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "scenario\tmetric\tunit\t%s\n", strings.Join(paths, "\t"))
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s", scenarioTitle[row[0]], row[1], units[row[1]])
		for _, p := range paths {
			fmt.Fprintf(tw, "\t%s", cell(r.find(row[0], row[1], p), true))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nmedian [min-max] of %d repetitions%s; duration %s (S1, S2, S6 bulk), %s (S3, S4, S6 RR)\n",
		r.Settings.Reps, r.orderNote(), r.Settings.Duration, r.Settings.RRDuration)
	if r.Settings.LogStall != "" {
		fmt.Fprintf(w, "ztunnel logs to a pipe read with a stall of %s (-log-stall)\n", r.Settings.LogStall)
	}
	if len(r.Settings.ZtunnelEnv) > 0 {
		fmt.Fprintf(w, "ztunnel environment added: %s\n", strings.Join(r.Settings.ZtunnelEnv, " "))
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w, "\ntargets (issue 6); "+r.targetsNote())
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, t := range r.Targets {
			fmt.Fprintf(tw, "  %s\t%s\t%s %s %s\t%s\n", t.Name, t.measured(), t.Op, fmtNum(t.Goal), t.Unit, metWord(t.Met))
		}
		tw.Flush()
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	fmt.Fprintf(w, "machine: %d CPUs (%s), kernel %s, %s; load average at start %s, at end %s\n",
		r.Machine.CPUs, r.Machine.cpu(), r.kernel(), r.Machine.GoVersion, r.Machine.LoadAtStart, r.Machine.LoadAtEnd)
	return nil
}

// targetsNote says how the targets' figures were derived: per repetition, or (in a report
// saved before values carried their repetition) from the medians.
func (r *Report) targetsNote() string {
	for _, t := range r.Targets {
		if t.Pairs > 0 {
			return "a comparison of two figures is the median [min-max] of its value in each repetition (the two ran back to back there); a single figure is its median above"
		}
	}
	return "from the medians above"
}

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// writeMarkdown writes the summary benchmarks/README.md embeds.
func (r *Report) writeMarkdown(w io.Writer) error {
	rows, paths := r.rows()
	var b strings.Builder
	fmt.Fprintf(&b, "| scenario | metric | unit | %s |\n", strings.Join(paths, " | "))
	fmt.Fprintf(&b, "|---|---|---|%s\n", strings.Repeat("---|", len(paths)))
	for _, row := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s |", scenarioTitle[row[0]], row[1], units[row[1]])
		for _, p := range paths {
			fmt.Fprintf(&b, " %s |", cell(r.find(row[0], row[1], p), true))
		}
		b.WriteString("\n")
	}
	settle := ""
	if r.Settings.Settle != "" {
		settle = ", RSS read " + r.Settings.Settle + " after they settle"
		if r.Settings.Rest != "" {
			settle += " and again at rest, " + r.Settings.Rest + " after"
		}
	}
	fmt.Fprintf(&b, "\nMedian [min-max] of %d repetitions%s; bulk %s, RR/CRR %s; %d idle connections (S5%s); %d workloads (idle RSS).\n",
		r.Settings.Reps, r.orderNote(), r.Settings.Duration, r.Settings.RRDuration, r.Settings.IdleConns, settle, r.Settings.IdleWorkloads)
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), Linux %s, %s; load average %s at start, %s at end.\n",
		r.Machine.CPUs, r.Machine.cpu(), r.kernel(), r.Machine.GoVersion, r.Machine.LoadAtStart, r.Machine.LoadAtEnd)
	if r.Settings.LogStall != "" {
		fmt.Fprintf(&b, "ztunnel logs to a pipe read with a stall of `%s` (`-log-stall`).\n", r.Settings.LogStall)
	}
	if len(r.Settings.ZtunnelEnv) > 0 {
		fmt.Fprintf(&b, "ztunnel environment added: `%s`.\n", strings.Join(r.Settings.ZtunnelEnv, " "))
	}
	if len(r.Targets) > 0 {
		b.WriteString("\n| target | measured | goal | |\n|---|---|---|---|\n")
		for _, t := range r.Targets {
			fmt.Fprintf(&b, "| %s | %s | %s %s %s | %s |\n", t.Name, t.measured(), t.Op, fmtNum(t.Goal), t.Unit, metWord(t.Met))
		}
		b.WriteString("\nTargets: " + r.targetsNote() + ".\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\nNote: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
