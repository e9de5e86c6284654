package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary play the relay roles, as the harness re-executes itself.
func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRelay(role, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("SKIPPED: the harness needs root on Linux (network namespaces, iptables); run go test as root to include it")
	}
	for _, tool := range []string{"ip", "ss", "iptables-restore", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED: %s is not installed", tool)
		}
	}
}

// benchNetns lists the namespaces harness runs create (prefix "zb").
func benchNetns(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	var names []string
	for line := range strings.SplitSeq(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "zb") {
			names = append(names, f[0])
		}
	}
	return names
}

// TestQuickRun runs the whole harness in -quick mode with tiny durations, every path and every
// scenario, and checks the JSON report and that nothing is left behind.
func TestQuickRun(t *testing.T) {
	needRoot(t)
	before := benchNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(ctx, []string{"-quick", "-json", "-duration", "200ms", "-rr-duration", "100ms",
		"-idle-conns", "50", "-idle-workloads", "1000", "-settle", "100ms", "-rest", "300ms",
		"-tcp-cc", "reno", "-log-stall", "50ms/100ms"}, &stdout, &stderr)
	t.Logf("harness took %v; progress:\n%s", time.Since(start).Round(time.Millisecond), stderr.String())
	if code != 0 {
		t.Fatalf("exit status %d", code)
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, stdout.String())
	}
	// reno is built into every kernel and is neither Linux's default nor this project's hosts':
	// the namespaces run it because -tcp-cc set it.
	if rep.Settings.TCPCC != "reno" || rep.Machine.TCPCC != "reno" {
		t.Errorf("-tcp-cc reno: settings record %q, the namespaces ran %q", rep.Settings.TCPCC, rep.Machine.TCPCC)
	}
	if want := cpuIdle(os.DirFS("/sys")); rep.Machine.CPUIdle != want {
		t.Errorf("the report records the idle states %q, sysfs says %q", rep.Machine.CPUIdle, want)
	}
	// The ztunnels logged through a pipe that stalled (-log-stall), and still ran every scenario.
	if rep.Settings.LogStall != "50ms/100ms" {
		t.Errorf("settings record log stall %q, want the 50ms/100ms asked for", rep.Settings.LogStall)
	}
	if rep.Settings.Settle != "100ms" || rep.Settings.Rest != "300ms" {
		t.Errorf("settings record settle %q and rest %q, want the 100ms and 300ms asked for", rep.Settings.Settle, rep.Settings.Rest)
	}
	paths := []string{pathDirect, pathPassthrough, pathHBONE, pathHBONEService, pathTLSRelay, pathTLSRelayInpod}
	if _, err := exec.LookPath("haproxy"); err == nil {
		paths = append(paths, pathHAProxy)
	}
	// S6 is left out on purpose: it measures head-of-line blocking, which may legitimately fail
	// a repetition (it becomes a note).
	want := []struct {
		scenario, metric string
		paths            []string
	}{
		{scenS1, metThroughput, paths},
		{scenS1, metCPU, paths[1:]},
		{scenS2, metThroughput, paths},
		{scenS3, metRate, paths},
		{scenS3, metCPUOp, paths[1:]},
		{scenS3, metPeakRSS, paths[1:]},
		{scenS4, metP50, paths},
		{scenS4, metCPUOp, paths[1:]},
		{scenS4, metP99, paths},
		{scenS5, metPerConn, paths[1:]},
		{scenS5, metCPUOp, paths[1:]},
		{scenS5, metPerConnRest, paths[1:]},
		{scenIdle, metRSS, []string{"ztunnel"}},
	}
	for _, w := range want {
		for _, p := range w.paths {
			s := rep.find(w.scenario, w.metric, p)
			if s == nil {
				t.Errorf("%s %s %s: missing from the report", w.scenario, w.metric, p)
				continue
			}
			if len(s.Values) != 1 || s.Median != s.Values[0] {
				t.Errorf("%s %s %s: values %v median %v, want one value and its median", w.scenario, w.metric, p, s.Values, s.Median)
			}
			if w.metric != metPerConn && w.metric != metPerConnRest && !(s.Median > 0) {
				t.Errorf("%s %s %s = %v, want > 0", w.scenario, w.metric, p, s.Median)
			}
		}
	}
	// The host's idle share during each bulk run: present for every path, a percentage.
	for _, scen := range []string{scenS1, scenS2} {
		for _, p := range paths {
			s := rep.find(scen, metIdle, p)
			if s == nil || len(s.Values) != 1 || s.Median < 0 || s.Median > 100 || s.Unit != "%" {
				t.Errorf("%s %s %s: %+v, want one percentage", scen, metIdle, p, s)
			}
		}
	}
	if len(rep.PathOrder) != 1 || !slices.Equal(rep.PathOrder[0], paths) {
		t.Errorf("path order %v, want one repetition in the table's order %v", rep.PathOrder, paths)
	}
	if rep.Settings.Reps != 1 || rep.Settings.IdleConns != 50 || rep.Machine.CPUs < 1 {
		t.Errorf("settings %+v machine %+v", rep.Settings, rep.Machine)
	}
	if len(rep.Targets) == 0 {
		t.Error("no targets evaluated")
	}
	// Every S3 run starts from drained namespaces (drain.go).
	if got := strings.Count(stderr.String(), "conn/s (reset first in "); got != len(paths) {
		t.Errorf("%d S3 runs reported their reset, want %d", got, len(paths))
	}
	for _, n := range rep.Notes {
		if strings.Contains(n, "without drained namespaces") {
			t.Errorf("note: %s", n)
		}
	}
	if after := benchNetns(t); !slices.Equal(after, before) {
		t.Errorf("namespaces left behind: before %v, after %v", before, after)
	}
}

// TestPathOrderAlternates runs two repetitions and checks that the second ran the paths in the
// reverse order, as the report and the progress lines say, and that each path's figures are
// filed under their own repetition.
func TestPathOrderAlternates(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"-quick", "-json", "-reps", "2", "-scenarios", "s4", "-paths", "direct,tls-relay",
		"-rr-duration", "100ms"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit status %d; progress:\n%s", code, stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, stdout.String())
	}
	want := [][]string{{pathDirect, pathTLSRelay}, {pathTLSRelay, pathDirect}}
	if len(rep.PathOrder) != 2 || !slices.Equal(rep.PathOrder[0], want[0]) || !slices.Equal(rep.PathOrder[1], want[1]) {
		t.Errorf("path order %v, want %v", rep.PathOrder, want)
	}
	if rep.Settings.Order != orderAlternate {
		t.Errorf("settings record order %q, want %q", rep.Settings.Order, orderAlternate)
	}
	// The progress lines, in the order they were written.
	var ran []string
	for line := range strings.Lines(stderr.String()) {
		for _, p := range []string{pathDirect, pathTLSRelay} {
			for i := 1; i <= 2; i++ {
				if strings.Contains(line, fmt.Sprintf("[%d/2] S4 %-15s p50", i, p)) {
					ran = append(ran, fmt.Sprintf("%d %s", i, p))
				}
			}
		}
	}
	if wantRan := []string{"1 direct", "1 tls-relay", "2 tls-relay", "2 direct"}; !slices.Equal(ran, wantRan) {
		t.Errorf("progress shows the runs %q, want %q; progress:\n%s", ran, wantRan, stderr.String())
	}
	for _, p := range []string{pathDirect, pathTLSRelay} {
		if s := rep.find(scenS4, metP50, p); s == nil || !slices.Equal(s.Reps, []int{1, 2}) {
			t.Errorf("S4 p50 on %s: %+v, want a value from each repetition", p, s)
		}
	}
}

// TestCancelCleansUp cancels a run in the middle of its measurements (what Ctrl-C does) and
// checks it stops promptly and removes its namespaces.
func TestCancelCleansUp(t *testing.T) {
	needRoot(t)
	before := benchNetns(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// Cancel as soon as the first figure is reported on stderr.
	go func() {
		buf := make([]byte, 4096)
		var seen []byte
		for {
			n, err := pr.Read(buf)
			seen = append(seen, buf[:n]...)
			if bytes.Contains(seen, []byte("[1/1]")) {
				cancel()
			}
			if err != nil {
				return
			}
		}
	}()
	var stdout bytes.Buffer
	done := make(chan int, 1)
	start := time.Now()
	go func() {
		done <- run(ctx, []string{"-quick", "-paths", "direct,hbone", "-duration", "5s"}, &stdout, pw)
	}()
	var code int
	select {
	case code = <-done:
	case <-time.After(90 * time.Second):
		t.Fatal("harness did not stop within 90 s of being cancelled")
	}
	pw.Close()
	if code == 0 {
		t.Errorf("exit status 0 after cancellation, want failure")
	}
	if stdout.Len() != 0 {
		t.Errorf("cancelled run printed a report:\n%s", stdout.String())
	}
	t.Logf("stopped after %v", time.Since(start).Round(time.Millisecond))
	if after := benchNetns(t); !slices.Equal(after, before) {
		t.Errorf("namespaces left behind: before %v, after %v", before, after)
	}
}
