package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/procfs"
)

// parseStatusRSS returns VmRSS in bytes from the contents of /proc/<pid>/status.
func parseStatusRSS(b []byte) (int64, error) {
	return procfs.KBField(b, "proc status", "VmRSS:")
}

// parseStatusHWM returns VmHWM, the peak resident set size since the process started or its
// peak was last reset (resetPeak), in bytes, from the contents of /proc/<pid>/status.
func parseStatusHWM(b []byte) (int64, error) {
	return procfs.KBField(b, "proc status", "VmHWM:")
}

// resetPeak resets the peak resident set size (VmHWM) of each process to its current RSS
// (proc(5), clear_refs: "5").
func resetPeak(pids []int) error {
	for _, p := range pids {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p), []byte("5"), 0); err != nil {
			return err
		}
	}
	return nil
}

// sumPeak adds VmHWM over pids.
func sumPeak(pids []int) (int64, error) {
	var total int64
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			return 0, err
		}
		v, err := parseStatusHWM(b)
		if err != nil {
			return 0, err
		}
		total += v
	}
	return total, nil
}

// memSplit is a process's resident memory from /proc/<pid>/smaps_rollup, in bytes: anonymous
// pages (heap, stacks, runtime metadata, written data) and file-backed pages (the executable's
// code and read-only data, shared libraries), which is Rss minus Anonymous.
type memSplit struct {
	anon, file int64
}

// parseRollup returns the split from the contents of /proc/<pid>/smaps_rollup.
func parseRollup(b []byte) (memSplit, error) {
	rss, err := procfs.KBField(b, "smaps_rollup", "Rss:")
	if err != nil {
		return memSplit{}, err
	}
	anon, err := procfs.KBField(b, "smaps_rollup", "Anonymous:")
	if err != nil {
		return memSplit{}, err
	}
	if anon > rss {
		return memSplit{}, fmt.Errorf("smaps_rollup: Anonymous %d kB above Rss %d kB", anon>>10, rss>>10)
	}
	return memSplit{anon: anon, file: rss - anon}, nil
}

// procMemSplit returns the resident split of process pid.
func procMemSplit(pid int) (memSplit, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return memSplit{}, err
	}
	return parseRollup(b)
}

// procRSS returns the resident set size of process pid in bytes.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusRSS(b)
}

// sumCPU and sumRSS add the figure over several processes (both proxies of a path).
func sumCPU(pids []int) (time.Duration, error) {
	var total time.Duration
	for _, p := range pids {
		d, err := procCPU(p)
		if err != nil {
			return 0, err
		}
		total += d
	}
	return total, nil
}

func sumRSS(pids []int) (int64, error) {
	var total int64
	for _, p := range pids {
		r, err := procRSS(p)
		if err != nil {
			return 0, err
		}
		total += r
	}
	return total, nil
}

// sumSplit returns the resident split summed over pids.
func sumSplit(pids []int) (memSplit, error) {
	var total memSplit
	for _, p := range pids {
		s, err := procMemSplit(p)
		if err != nil {
			return memSplit{}, err
		}
		total.anon += s.anon
		total.file += s.file
	}
	return total, nil
}

// hostCPU is the host's CPU time from the first line of /proc/stat, in clock ticks: all of it,
// and the part no task used (idle and iowait).
type hostCPU struct {
	total, idle uint64
}

// parseHostCPU reads the aggregate "cpu" line of /proc/stat (proc(5)): user, nice, system, idle,
// iowait, irq, softirq and steal add up to the total. Guest time is already counted in user
// and nice, so it is not added again. Kernels before 2.6.11 wrote fewer fields; they are
// refused, like a line that does not parse.
func parseHostCPU(b []byte) (hostCPU, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return hostCPU{}, fmt.Errorf("proc stat: first line %q is not the aggregate cpu line with 8 counters", line)
	}
	var v [8]uint64
	for i := range v {
		n, err := strconv.ParseUint(string(f[1+i]), 10, 64)
		if err != nil {
			return hostCPU{}, fmt.Errorf("proc stat: cpu counter %d: %w", i+1, err)
		}
		v[i] = n
	}
	var h hostCPU
	for _, n := range v {
		h.total += n
	}
	h.idle = v[3] + v[4]
	return h, nil
}

// readHostCPU reads the host's CPU time now.
func readHostCPU() (hostCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return hostCPU{}, err
	}
	return parseHostCPU(b)
}

// idlePercent is the share of the host's CPU time that stayed idle between two readings, in
// percent; 0 when no tick passed between them.
func idlePercent(a, b hostCPU) float64 {
	if b.total <= a.total || b.idle < a.idle {
		return 0
	}
	return 100 * float64(b.idle-a.idle) / float64(b.total-a.total)
}
