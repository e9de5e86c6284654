package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// A /proc/<pid>/smaps_rollup of an idle ztunnel, as Linux 6.x writes it.
const rollup = `00400000-7ffe0ddf1000 ---p 00000000 00:00 0                              [rollup]
Rss:                8116 kB
Pss:                8010 kB
Pss_Dirty:          5904 kB
Pss_Anon:           5904 kB
Pss_File:           2106 kB
Pss_Shmem:             0 kB
Shared_Clean:        212 kB
Shared_Dirty:          0 kB
Private_Clean:      2000 kB
Private_Dirty:      5904 kB
Referenced:         8116 kB
Anonymous:          5904 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
`

func TestParseRollup(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want memSplit
		ok   bool
	}{
		{"ztunnel", rollup, memSplit{anon: 5904 << 10, file: (8116 - 5904) << 10}, true},
		{"all anonymous", "Rss: 10 kB\nAnonymous: 10 kB\n", memSplit{anon: 10 << 10}, true},
		{"no Anonymous line", "Rss: 10 kB\nPss: 9 kB\n", memSplit{}, false},
		{"no Rss line", "Anonymous: 10 kB\n", memSplit{}, false},
		{"Pss_Anon is not Anonymous", "Rss: 10 kB\nPss_Anon: 4 kB\n", memSplit{}, false},
		{"anonymous above rss", "Rss: 10 kB\nAnonymous: 11 kB\n", memSplit{}, false},
		{"bad unit", "Rss: 10 MB\nAnonymous: 1 kB\n", memSplit{}, false},
		{"empty", "", memSplit{}, false},
	}
	for _, c := range cases {
		got, err := parseRollup([]byte(c.in))
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("%s: got %+v, %v; want %+v, ok=%v", c.name, got, err, c.want, c.ok)
		}
	}
}

func FuzzParseRollup(f *testing.F) {
	f.Add([]byte(rollup))
	f.Add([]byte("Rss: 1 kB\nAnonymous: 1 kB"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseRollup(b)
		if err == nil && (s.anon < 0 || s.file < 0) {
			t.Errorf("negative split %+v", s)
		}
	})
}

// TestProcMemSplitSelf reads the test's own split: both parts are resident (the test binary's
// code is file-backed, its heap anonymous) and they add up to at most VmRSS plus some slack.
func TestProcMemSplitSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/smaps_rollup"); err != nil {
		t.Skip("no /proc/self/smaps_rollup (Linux 4.14+)")
	}
	s, err := procMemSplit(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	rss, err := procRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.anon <= 0 || s.file <= 0 {
		t.Errorf("split %+v: want both parts > 0", s)
	}
	// VmRSS is kept by per-thread counters and may lag the page walk by a little.
	if sum := s.anon + s.file; sum > rss+4<<20 || sum < rss-4<<20 {
		t.Errorf("anon+file = %d B, VmRSS = %d B: want within 4 MiB", sum, rss)
	}
}

// TestSameExecutable starts two processes of one executable and one of another: each of the
// pair finds the other and only it.
func TestSameExecutable(t *testing.T) {
	if _, err := os.Stat("/proc/self/exe"); err != nil {
		t.Skip("no /proc")
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep executable")
	}
	var pids []int
	for _, bin := range []string{sleep, sleep, os.Args[0]} {
		cmd := exec.Command(bin, "30")
		if bin == os.Args[0] {
			cmd = exec.Command(bin, "-test.run", "^$") // the test binary doing nothing, briefly
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		pids = append(pids, cmd.Process.Pid)
	}
	got, err := sameExecutable(pids[0])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, pids[1]) || slices.Contains(got, pids[0]) || slices.Contains(got, pids[2]) {
		t.Errorf("sameExecutable(%d) = %v; want it to hold %d, not %d nor %d", pids[0], got, pids[1], pids[0], pids[2])
	}
}

// TestIdleAlone runs two repetitions of S4 and the idle scenario on the ztunnel paths: the
// idle ztunnel is measured with no other process of its executable alive (no note says
// otherwise), the path ztunnels come back for the second repetition, and the split is
// reported beside VmRSS, as is VmRSS after a scrape of the metrics.
func TestIdleAlone(t *testing.T) {
	needRoot(t)
	before := benchNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"-quick", "-json", "-reps", "2", "-scenarios", "s4,idle", "-paths", "passthrough,hbone",
		"-rr-duration", "100ms", "-idle-workloads", "200", "-settle", "100ms"}, &stdout, &stderr)
	t.Logf("progress:\n%s", stderr.String())
	if code != 0 {
		t.Fatalf("exit status %d", code)
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, stdout.String())
	}
	for _, w := range []struct{ scenario, metric, path string }{
		{scenS4, metP50, pathPassthrough}, {scenS4, metP50, pathHBONE},
		{scenIdle, metRSS, "ztunnel"}, {scenIdle, metAnon, "ztunnel"}, {scenIdle, metFile, "ztunnel"},
		{scenIdle, metScraped, "ztunnel"}, {scenIdle, metScrapedFile, "ztunnel"},
	} {
		s := rep.find(w.scenario, w.metric, w.path)
		if s == nil || len(s.Values) != 2 || !(s.Min > 0) {
			t.Errorf("%s %s %s = %+v, want two values > 0", w.scenario, w.metric, w.path, s)
		}
	}
	rss, anon, file := rep.find(scenIdle, metRSS, "ztunnel"), rep.find(scenIdle, metAnon, "ztunnel"), rep.find(scenIdle, metFile, "ztunnel")
	if rss != nil && anon != nil && file != nil {
		for i := range rss.Values {
			if sum := anon.Values[i] + file.Values[i]; sum > rss.Values[i]+4 || sum < rss.Values[i]-4 {
				t.Errorf("repetition %d: anon %.1f + file %.1f MiB vs VmRSS %.1f MiB", i+1, anon.Values[i], file.Values[i], rss.Values[i])
			}
		}
	}
	for _, n := range rep.Notes {
		if strings.Contains(n, "same ztunnel executable") || strings.Contains(n, "failed") {
			t.Errorf("note: %s", n)
		}
	}
	if !strings.Contains(stderr.String(), "stopping the ztunnels of pods a and b") {
		t.Error("the path ztunnels were not stopped around the idle measurement")
	}
	if after := benchNetns(t); !slices.Equal(after, before) {
		t.Errorf("namespaces left behind: before %v, after %v", before, after)
	}
}
