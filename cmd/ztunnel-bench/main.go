// Command ztunnel-bench is the standalone performance harness of issue 6. As root it builds its
// own network namespaces (a node bridge and four pods, two of them with istio-cni's in-pod
// redirection), starts two dedicated-mode ztunnels sharing a LOCAL_CA_DIR, a plain Go TLS 1.3
// relay pair and HAProxy (when installed), and runs each scenario over every path side by side:
//
//	direct       client -> server, no proxy
//	passthrough  client -> ztunnel (plain TCP relay) -> server outside the mesh
//	hbone        client -> ztunnel =HBONE/mTLS= ztunnel -> server
//	hbone-svc    the same, addressed to the server's service VIP (ztunnel picks the endpoint)
//	tls-relay    client -> Go relay =TLS 1.3, mutual certificates= Go relay -> server
//	haproxy      client -> HAProxy (TCP mode, splice) -> server
//
// Scenarios: S1 one bulk stream (throughput, proxy CPU seconds per GiB), S2 eight bulk streams,
// S3 new connections per second (TCP_CRR), S4 1-byte round-trip latency (TCP_RR), both with the
// proxies' CPU per connection or round trip, S5 RSS per idle connection, S6 S4 under an S1
// stream on the same path, and the idle RSS of one ztunnel with 1,000 workloads. Each figure is
// the median of -reps repetitions with min and max. Progress goes to stderr; stdout gets one
// table, or JSON (-json), or markdown (-markdown). Everything it made is removed at the end, on
// error and on Ctrl-C.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ztunnel-go/ztunnel/tls/aesgcm"
)

func main() {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRelay(role, os.Args[1:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed flags.
type options struct {
	ztunnel       string
	duration      time.Duration // S1, S2 and the bulk stream of S6
	rrDuration    time.Duration // S3, S4 and the round trips of S6
	reps          int
	idleConns     int
	idleWorkloads int
	settle        time.Duration // wait before reading RSS (S5, idle)
	rest          time.Duration // S5's second reading, this long after the connections settled (0: none)
	scenarios     map[string]bool
	paths         map[string]bool
	json          bool
	markdown      bool
	abrupt        bool     // end bulk streams by closing with data in flight instead of draining
	render        string   // a saved -json report to print instead of running
	keep          bool     // keep the temporary directory (process logs, configs)
	ztunnelEnv    []string // NAME=VALUE pairs added to every ztunnel's environment (-ztunnel-env)
	tcpCC         string   // TCP congestion control of every namespace (-tcp-cc; "": the host's)
	order         string   // orderAlternate or orderFixed (-order)
	// -log-stall: every ztunnel writes its log to a pipe that the harness stops reading for
	// logStall at the start of every logPeriod (both 0: a file, never slow).
	logStall, logPeriod time.Duration
}

// set parses a comma-separated selection of allowed names ("all" for every one).
func parseSet(s string, allowed []string) (map[string]bool, error) {
	out := map[string]bool{}
	for name := range strings.SplitSeq(s, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		switch {
		case name == "all":
			for _, a := range allowed {
				out[a] = true
			}
		case slices.Contains(allowed, name):
			out[name] = true
		default:
			return nil, fmt.Errorf("unknown name %q (want some of %s, or all)", name, strings.Join(allowed, ","))
		}
	}
	return out, nil
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	flags := flag.NewFlagSet("ztunnel-bench", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.StringVar(&o.ztunnel, "ztunnel", "", "ztunnel binary (default: go build the module's cmd/ztunnel)")
	flags.DurationVar(&o.duration, "duration", 10*time.Second, "length of each bulk run (S1, S2, S6)")
	flags.DurationVar(&o.rrDuration, "rr-duration", 5*time.Second, "length of each CRR/RR run (S3, S4, S6)")
	flags.IntVar(&o.reps, "reps", 3, "repetitions of every figure (median, min, max)")
	flags.IntVar(&o.idleConns, "idle-conns", 10000, "idle connections held through each path (S5)")
	flags.IntVar(&o.idleWorkloads, "idle-workloads", 1000, "workloads in the config of the idle-RSS ztunnel")
	flags.DurationVar(&o.settle, "settle", time.Second, "wait before reading RSS (S5, idle)")
	flags.DurationVar(&o.rest, "rest", 0, "S5 reads RSS a second time this long after the connections settled, "+
		"at rest (more than twice ZTUNNEL_MEMORY_TRIM_INTERVAL lets the idle trim run first; 0: no second reading)")
	scen := flags.String("scenarios", "all", "scenarios to run: "+strings.Join(allScenarios, ","))
	paths := flags.String("paths", "all", "paths to measure: "+strings.Join(allPaths, ","))
	flags.BoolVar(&o.json, "json", false, "write the report as JSON on stdout instead of the table")
	flags.BoolVar(&o.markdown, "markdown", false, "write a markdown summary on stdout instead of the table")
	flags.BoolVar(&o.abrupt, "abrupt", false, "end bulk streams by closing them with data in flight (as an aborted download does) instead of half-closing and draining")
	flags.StringVar(&o.render, "render", "", "print a report saved with -json (as table, or -markdown) instead of measuring")
	flags.BoolVar(&o.keep, "keep", false, "keep the temporary directory with the processes' logs and configs")
	flags.Func("ztunnel-env", "NAME=VALUE added to the environment of every ztunnel (repeatable), e.g. HTTP2_STREAM_WINDOW_SIZE=262144", func(v string) error {
		name, _, ok := strings.Cut(v, "=")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return fmt.Errorf("%q: want NAME=VALUE", v)
		}
		o.ztunnelEnv = append(o.ztunnelEnv, v)
		return nil
	})
	flags.StringVar(&o.tcpCC, "tcp-cc", "", "TCP congestion control of every namespace the harness builds, e.g. cubic "+
		"(default: what they inherit, the host's net.ipv4.tcp_congestion_control)")
	flags.StringVar(&o.order, "order", orderAlternate, "order of the paths within a repetition: "+orderAlternate+
		" (the table's order in odd repetitions, reversed in even ones, so that no path always runs first or last) or "+
		orderFixed+" (the table's order every time)")
	flags.Func("log-stall", "STALL/PERIOD, e.g. 500ms/2s: every ztunnel logs to a pipe that the harness stops reading for STALL "+
		"at the start of every PERIOD, as a container runtime that falls behind does (default: a file)", func(v string) error {
		var err error
		o.logStall, o.logPeriod, err = parseStall(v)
		return err
	})
	quick := flags.Bool("quick", false, "smoke run: tiny durations, 1 repetition, 200 idle connections (explicit flags win)")
	if err := flags.Parse(args); err != nil {
		return o, err
	}
	if flags.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", flags.Args())
	}
	if *quick {
		set := map[string]bool{}
		flags.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]any{
			"duration": 300 * time.Millisecond, "rr-duration": 200 * time.Millisecond,
			"reps": 1, "idle-conns": 200, "settle": 200 * time.Millisecond,
		} {
			if set[name] {
				continue
			}
			switch p := v.(type) {
			case time.Duration:
				flags.Lookup(name).Value.Set(p.String())
			case int:
				flags.Lookup(name).Value.Set(fmt.Sprint(p))
			}
		}
	}
	var err error
	if o.scenarios, err = parseSet(*scen, allScenarios); err != nil {
		return o, fmt.Errorf("-scenarios: %w", err)
	}
	if o.paths, err = parseSet(*paths, allPaths); err != nil {
		return o, fmt.Errorf("-paths: %w", err)
	}
	switch {
	case o.reps < 1 || o.reps > 100:
		return o, fmt.Errorf("-reps %d: want 1..100", o.reps)
	case o.duration <= 0 || o.duration > 10*time.Minute, o.rrDuration <= 0 || o.rrDuration > 10*time.Minute:
		return o, fmt.Errorf("durations must be in (0, 10m]")
	case o.idleConns < 1 || o.idleConns > 50000:
		return o, fmt.Errorf("-idle-conns %d: want 1..50000", o.idleConns)
	case o.idleWorkloads < 1 || o.idleWorkloads > 60000:
		return o, fmt.Errorf("-idle-workloads %d: want 1..60000", o.idleWorkloads)
	case o.rest != 0 && o.rest <= o.settle:
		return o, fmt.Errorf("-rest %v: want 0 or longer than -settle (%v)", o.rest, o.settle)
	case o.json && o.markdown:
		return o, fmt.Errorf("-json and -markdown are exclusive")
	case strings.ContainsAny(o.tcpCC, " \t/="):
		return o, fmt.Errorf("-tcp-cc %q: want the name of a congestion control, such as cubic", o.tcpCC)
	case o.order != orderAlternate && o.order != orderFixed:
		return o, fmt.Errorf("-order %q: want %s or %s", o.order, orderAlternate, orderFixed)
	}
	return o, nil
}

// mib converts bytes to MiB.
func mib(b int64) float64 { return float64(b) / (1 << 20) }

// parseStall parses -log-stall's STALL/PERIOD: two durations, 0 < STALL < PERIOD <= 1m.
func parseStall(v string) (stall, period time.Duration, err error) {
	a, b, ok := strings.Cut(v, "/")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want STALL/PERIOD, e.g. 500ms/2s", v)
	}
	if stall, err = time.ParseDuration(a); err == nil {
		period, err = time.ParseDuration(b)
	}
	switch {
	case err != nil:
		return 0, 0, fmt.Errorf("%q: %w", v, err)
	case stall <= 0 || stall >= period || period > time.Minute:
		return 0, 0, fmt.Errorf("%q: want 0 < STALL < PERIOD <= 1m", v)
	}
	return stall, period, nil
}

// run is the harness; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintln(stderr, "ztunnel-bench:", err)
		return 2
	}
	if opts.render != "" {
		return render(opts, stdout, stderr)
	}
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "ztunnel-bench: SKIPPED: needs root on Linux (network namespaces, iptables, "+
			"processes in pods); run it as root, e.g. `sudo make bench`")
		return 0
	}
	nofile, err := raiseNofile(1 << 17)
	if err != nil {
		fmt.Fprintln(stderr, "ztunnel-bench: raise RLIMIT_NOFILE:", err)
		return 1
	}
	// S5 costs two descriptors per connection in the harness (client and server ends) and in a
	// plain relay (downstream and upstream); keep a margin for everything else.
	var notes []string
	if limit := (int(nofile) - 1200) / 2; opts.idleConns > limit {
		notes = append(notes, fmt.Sprintf("S5 held %d idle connections, not %d: RLIMIT_NOFILE is %d and "+
			"could not be raised (no CAP_SYS_RESOURCE)", limit, opts.idleConns, nofile))
		opts.idleConns = limit
	}
	rep := &Report{Machine: machineInfo(), Settings: Settings{
		Duration: opts.duration.String(), RRDuration: opts.rrDuration.String(), Reps: opts.reps,
		IdleConns: opts.idleConns, IdleWorkloads: opts.idleWorkloads, Settle: opts.settle.String(),
		Rest:      restString(opts.rest),
		Scenarios: selected(allScenarios, opts.scenarios), Paths: selected(allPaths, opts.paths),
		ZtunnelEnv: opts.ztunnelEnv, TCPCC: opts.tcpCC, Order: opts.order,
	}}
	if opts.logStall > 0 {
		rep.Settings.LogStall = opts.logStall.String() + "/" + opts.logPeriod.String()
	}
	h := &harness{opts: opts, progress: stderr}
	for _, n := range notes {
		h.note(n)
	}
	err = h.setup(ctx)
	if err == nil {
		err = h.measure(ctx, rep)
	}
	if cerr := h.close(); cerr != nil {
		fmt.Fprintln(stderr, "ztunnel-bench: cleanup:", cerr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "ztunnel-bench:", err)
		return 1
	}
	rep.Notes = append(rep.Notes, h.notes...)
	rep.Machine.TCPCC = h.tcpCC
	rep.Machine.LoadAtEnd = loadavg()
	rep.summarize()
	if err = rep.write(opts, stdout); err != nil {
		fmt.Fprintln(stderr, "ztunnel-bench:", err)
		return 1
	}
	return 0
}

// render prints a saved JSON report in the format the flags ask for.
func render(opts options, stdout, stderr io.Writer) int {
	b, err := os.ReadFile(opts.render)
	var rep Report
	if err == nil {
		err = json.Unmarshal(b, &rep)
	}
	if err == nil {
		err = rep.write(opts, stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "ztunnel-bench: -render:", err)
		return 1
	}
	return 0
}

func selected(all []string, set map[string]bool) []string {
	var out []string
	for _, n := range all {
		if set[n] {
			out = append(out, n)
		}
	}
	return out
}

// The orders of the paths within a repetition (-order).
const (
	orderAlternate = "alternate"
	orderFixed     = "fixed"
)

// pathOrder returns the paths in the order repetition i (1-based) runs them: the table's order,
// or under orderAlternate its reverse in even repetitions. A path's figures can depend on its
// place (the caches and the CPU frequency the path before it left, a machine that slows down
// or speeds up over a repetition); alternating puts every path first and last equally often
// over an even number of repetitions, and within one of each other over an odd number.
func pathOrder[T any](paths []T, i int, order string) []T {
	out := slices.Clone(paths)
	if order == orderAlternate && i%2 == 0 {
		slices.Reverse(out)
	}
	return out
}

// measure runs every selected scenario on every path, repetition by repetition, so that drift
// of a shared machine spreads over all paths alike. A failed run is noted and skipped; the
// context ending stops everything.
func (h *harness) measure(ctx context.Context, rep *Report) error {
	for i := 1; i <= h.opts.reps; i++ {
		rep.startRep(i)
		paths := pathOrder(h.paths, i, h.opts.order)
		names := make([]string, len(paths))
		for j, p := range paths {
			names[j] = p.name
		}
		rep.PathOrder = append(rep.PathOrder, names)
		for _, scen := range allScenarios {
			if !h.opts.scenarios[scen] {
				continue
			}
			if scen == scenIdle {
				r, err := h.idleRSS(ctx, h.opts.settle)
				if err := h.outcome(ctx, err, i, scen, "ztunnel"); err != nil {
					return err
				}
				if err == nil {
					h.addIdle(rep, i, r)
				}
				continue
			}
			for _, p := range paths {
				if scen == scenS5 && p.group == nil {
					continue // no proxy, no RSS to attribute
				}
				if p.group != nil && p.group == h.ztunnels {
					if err := h.ensureZtunnels(ctx); err != nil {
						return err
					}
				}
				err := h.runOne(ctx, rep, i, scen, p)
				if err := h.outcome(ctx, err, i, scen, p.name); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// addIdle records one idle-RSS measurement: VmRSS (the target's figure) and its split, then
// VmRSS and its file-backed part after one scrape.
func (h *harness) addIdle(rep *Report, i int, r idleResult) {
	rep.add(scenIdle, metRSS, "ztunnel", mib(r.rss))
	rep.add(scenIdle, metAnon, "ztunnel", mib(r.split.anon))
	rep.add(scenIdle, metFile, "ztunnel", mib(r.split.file))
	rep.add(scenIdle, metScraped, "ztunnel", mib(r.scraped))
	rep.add(scenIdle, metScrapedFile, "ztunnel", mib(r.scrapedSplit.file))
	h.logf("[%d/%d] idle RSS, %d workloads: %.1f MiB (anonymous %.1f, file-backed %.1f); after a scrape %.1f MiB (anonymous %.1f, file-backed %.1f)",
		i, h.opts.reps, h.opts.idleWorkloads, mib(r.rss), mib(r.split.anon), mib(r.split.file),
		mib(r.scraped), mib(r.scrapedSplit.anon), mib(r.scrapedSplit.file))
	if len(r.others) > 0 {
		h.note(fmt.Sprintf("idle RSS repetition %d: %d other processes ran the same ztunnel executable "+
			"(PIDs %v); the code pages they use stay resident in the measured one too", i, len(r.others), r.others))
	}
}

// outcome turns a run's error into the harness's: the context's end stops the harness, a
// proxy that died stops it, anything else becomes a note.
func (h *harness) outcome(ctx context.Context, err error, i int, scen, path string) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, p := range h.procs {
		if p.exited() {
			return fmt.Errorf("%s %s: %s exited (%v):\n%s", scen, path, p.name, p.err, p.tail())
		}
	}
	h.note(fmt.Sprintf("repetition %d of %s on %s failed: %v", i, scen, path, err))
	return nil
}

// runOne runs scenario scen once on p and records its figures.
func (h *harness) runOne(ctx context.Context, rep *Report, i int, scen string, p *path) error {
	progress := func(format string, args ...any) {
		h.logf("[%d/%d] %s %-15s "+format, append([]any{i, h.opts.reps, strings.ToUpper(scen), p.name}, args...)...)
	}
	gbps := func(r bulkResult) float64 { return float64(r.bytes) * 8 / r.elapsed.Seconds() / 1e9 }
	switch scen {
	case scenS1, scenS2:
		streams := 1
		if scen == scenS2 {
			streams = 8
		}
		r, err := bulk(ctx, p, streams, h.opts.duration, h.opts.abrupt)
		if err != nil {
			return err
		}
		rep.add(scen, metThroughput, p.name, gbps(r))
		rep.add(scen, metIdle, p.name, r.idle)
		if scen == scenS1 && p.group != nil && r.bytes > 0 {
			perGiB := r.cpu.Seconds() / (float64(r.bytes) / (1 << 30))
			rep.add(scen, metCPU, p.name, perGiB)
			progress("%.2f Gbit/s, %.3f CPU s/GiB, host idle %.1f%%", gbps(r), perGiB, r.idle)
		} else {
			progress("%.2f Gbit/s, host idle %.1f%%", gbps(r), r.idle)
		}
	case scenS3:
		// Every run starts from namespaces without the TIME_WAIT sockets and conntrack entries
		// that the runs before it left (see drain.go).
		t0 := time.Now()
		tw, ct, err := h.resetConnState(ctx, s3Limits)
		if err != nil {
			return err
		}
		reset := time.Since(t0).Round(time.Millisecond)
		// The proxies' peak RSS during the run: what connection churn costs in memory, and
		// what a log reader that falls behind adds to it (-log-stall).
		if p.group != nil {
			if err := resetPeak(p.pids()); err != nil {
				return err
			}
		}
		r, err := crr(ctx, p, h.opts.rrDuration)
		if err != nil {
			return err
		}
		rate := float64(r.done) / r.elapsed.Seconds()
		rep.add(scen, metRate, p.name, rate)
		cpu := h.addCPUPerOp(rep, scen, p, r.cpu, r.done)
		if p.group != nil {
			peak, err := sumPeak(p.pids())
			if err != nil {
				return err
			}
			rep.add(scen, metPeakRSS, p.name, mib(peak))
			cpu += fmt.Sprintf(", peak RSS %.1f MiB", mib(peak))
		}
		progress("%.0f conn/s (reset first in %v: %d TIME_WAIT sockets, %d conntrack entries)%s", rate, reset, tw, ct, cpu)
	case scenS4:
		samples, cpu, err := rr(ctx, p, h.opts.rrDuration)
		if err != nil {
			return err
		}
		h.addLatency(rep, scen, p.name, samples)
		progress("p50 %v p99 %v p99.9 %v (%d round trips%s)", percentile(samples, 0.5), percentile(samples, 0.99), percentile(samples, 0.999), len(samples),
			h.addCPUPerOp(rep, scen, p, cpu, len(samples)))
	case scenS5:
		return h.runIdle(ctx, rep, p, progress)
	case scenS6:
		// The bulk stream starts first and outlasts the round trips on both sides.
		warm := min(500*time.Millisecond, h.opts.rrDuration)
		type result struct {
			r   bulkResult
			err error
		}
		bulkDone := make(chan result, 1)
		go func() {
			r, err := bulk(ctx, p, 1, h.opts.rrDuration+2*warm, h.opts.abrupt)
			bulkDone <- result{r, err}
		}()
		select {
		case <-ctx.Done():
		case <-time.After(warm):
		}
		samples, _, err := rr(ctx, p, h.opts.rrDuration)
		b := <-bulkDone
		if err != nil {
			return fmt.Errorf("round trips beside the bulk stream: %w", err)
		}
		if b.err != nil {
			return b.err
		}
		h.addLatency(rep, scen, p.name, samples)
		rep.add(scen, metThroughput, p.name, gbps(b.r))
		progress("p50 %v p99 %v p99.9 %v under %.2f Gbit/s", percentile(samples, 0.5), percentile(samples, 0.99), percentile(samples, 0.999), gbps(b.r))
	}
	return nil
}

// addCPUPerOp records the proxies' CPU per operation (a connection in S3, a round trip in S4, an
// idle connection opened in S5) for a path with proxies, and returns it for the progress line
// ("" when not recorded). The CPU comes from each proxy's CPU clock (procCPU), to the
// nanosecond; a run still needs many operations for the figure to be more than noise.
func (h *harness) addCPUPerOp(rep *Report, scen string, p *path, cpu time.Duration, ops int) string {
	if p.group == nil || ops == 0 {
		return ""
	}
	us := float64(cpu) / float64(time.Microsecond) / float64(ops)
	rep.add(scen, metCPUOp, p.name, us)
	return fmt.Sprintf(", %.0f CPU us/op", us)
}

func (h *harness) addLatency(rep *Report, scen, path string, samples []time.Duration) {
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	rep.add(scen, metP50, path, us(percentile(samples, 0.5)))
	rep.add(scen, metP99, path, us(percentile(samples, 0.99)))
	rep.add(scen, metP999, path, us(percentile(samples, 0.999)))
}

// restString is a -rest value as the report's settings record it: empty for none.
func restString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// runIdle is S5: the path's proxies are restarted, so that memory left resident by earlier
// scenarios (Go's heap, HAProxy's pools) does not absorb the new connections; one connection
// warms the path up (certificates, the pooled HBONE connection); then the RSS of the proxies is
// read before and after opening the idle connections.
func (h *harness) runIdle(ctx context.Context, rep *Report, p *path, progress func(string, ...any)) error {
	if err := h.restart(ctx, p.group); err != nil {
		return err
	}
	wait := func() error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(h.opts.settle):
			return nil
		}
	}
	warm, err := holdIdle(ctx, p, 1, time.Minute)
	if err != nil {
		return err
	}
	defer closeAll(warm)
	if err := wait(); err != nil {
		return err
	}
	before, err := sumRSS(p.pids())
	if err != nil {
		return err
	}
	splitBefore, err := sumSplit(p.pids())
	if err != nil {
		return err
	}
	cpuBefore, err := sumCPU(p.pids())
	if err != nil {
		return err
	}
	conns, err := holdIdle(ctx, p, h.opts.idleConns, 3*time.Minute)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	cpuAfter, err := sumCPU(p.pids())
	if err != nil {
		return err
	}
	if err := wait(); err != nil {
		return err
	}
	after, err := sumRSS(p.pids())
	if err != nil {
		return err
	}
	splitAfter, err := sumSplit(p.pids())
	if err != nil {
		return err
	}
	n := float64(len(conns))
	per := float64(after-before) / n
	anon := float64(splitAfter.anon-splitBefore.anon) / n
	file := float64(splitAfter.file-splitBefore.file) / n
	rep.add(scenS5, metPerConn, p.name, per)
	rep.add(scenS5, metConnAnon, p.name, anon)
	rep.add(scenS5, metConnFile, p.name, file)
	cpu := h.addCPUPerOp(rep, scenS5, p, cpuAfter-cpuBefore, len(conns))
	progress("%d idle conns: RSS %.1f -> %.1f MiB, %.0f B/conn (anonymous %.0f, file-backed %.0f)%s",
		len(conns), float64(before)/(1<<20), float64(after)/(1<<20), per, anon, file, cpu)
	if h.opts.rest == 0 {
		return nil
	}
	// The second reading, at rest: the same connections, still idle, after the proxies had the
	// time to give back what opening them left behind (the ztunnel's idle trim).
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(h.opts.rest - h.opts.settle):
	}
	rest, err := sumRSS(p.pids())
	if err != nil {
		return err
	}
	restPer := float64(rest-before) / n
	rep.add(scenS5, metPerConnRest, p.name, restPer)
	progress("at rest (%v after they settled): RSS %.1f MiB, %.0f B/conn", h.opts.rest, float64(rest)/(1<<20), restPer)
	return nil
}

// machineInfo describes the machine and its load now.
func machineInfo() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadAtStart: loadavg()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel, m.CPUID = cpuIdentity(b)
	}
	m.AESGCM = aesgcm.Implementation()
	m.CPUIdle = cpuIdle(os.DirFS("/sys"))
	if out, err := exec.Command("haproxy", "-v").Output(); err == nil {
		m.HAProxy, _, _ = strings.Cut(string(out), "\n")
	}
	return m
}

// cpuIdentity reads the first processor's model name and its family,
// model and stepping ("family 25 model 17 stepping 1") from /proc/cpuinfo.
func cpuIdentity(cpuinfo []byte) (name, id string) {
	var family, model, stepping string
	for line := range bytes.SplitSeq(cpuinfo, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			break // the end of the first processor's block
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		val := string(bytes.TrimSpace(v))
		switch string(bytes.TrimSpace(k)) {
		case "model name":
			name = val
		case "cpu family":
			family = val
		case "model":
			model = val
		case "stepping":
			stepping = val
		}
	}
	if family != "" && model != "" {
		id = "family " + family + " model " + model
		if stepping != "" {
			id += " stepping " + stepping
		}
	}
	return name, id
}

// cpuIdle describes how an idle CPU waits, from sysfs (sys is /sys): the
// cpuidle driver, then in parentheses its governor when that is named
// otherwise and, under the haltpoll driver, how long a guest polls before it
// halts (guest_halt_poll_ns; 0 halts at once, so every wake-up of an idle vCPU
// goes through the hypervisor). Empty when sysfs has no cpuidle (a container
// without it, or a kernel built without it).
func cpuIdle(sys fs.FS) string {
	read := func(name string) string {
		b, err := fs.ReadFile(sys, name)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	driver := read("devices/system/cpu/cpuidle/current_driver")
	if driver == "" || driver == "none" {
		return ""
	}
	var details []string
	if g := read("devices/system/cpu/cpuidle/current_governor"); g != "" && g != driver {
		details = append(details, "governor "+g)
	}
	if driver == "haltpoll" {
		if ns := read("module/haltpoll/parameters/guest_halt_poll_ns"); ns != "" {
			details = append(details, "guest_halt_poll_ns "+ns)
		}
	}
	if len(details) == 0 {
		return driver
	}
	return driver + " (" + strings.Join(details, ", ") + ")"
}

// loadavg returns the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// write prints the report in the format the flags ask for: JSON, markdown, or the table.
func (rep *Report) write(opts options, w io.Writer) error {
	switch {
	case opts.json:
		return rep.writeJSON(w)
	case opts.markdown:
		return rep.writeMarkdown(w)
	default:
		return rep.writeTable(w)
	}
}
