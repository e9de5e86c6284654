package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/procfs"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 on every Linux
// architecture Go supports (the kernel fixes it for the user ABI whatever CONFIG_HZ is).
const clockTicks = 100

// parseStatCPU returns utime+stime from the contents of /proc/<pid>/stat. The command name
// (field 2) is in parentheses and may itself contain spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("proc stat: no ')' after the command name")
	}
	// After ") " come fields 3 (state) onwards; utime and stime are fields 14 and 15.
	fields := bytes.Fields(b[i+1:])
	const utimeIdx = 14 - 3
	if len(fields) <= utimeIdx+1 {
		return 0, fmt.Errorf("proc stat: %d fields after the command name, want at least %d", len(fields), utimeIdx+2)
	}
	var ticks uint64
	for _, f := range fields[utimeIdx : utimeIdx+2] {
		v, err := strconv.ParseUint(string(f), 10, 63)
		if err != nil {
			return 0, fmt.Errorf("proc stat: utime/stime: %w", err)
		}
		// 2^38 ticks is 87 years of CPU; two of them still fit a Duration in nanoseconds.
		if v > 1<<38 {
			return 0, errors.New("proc stat: cpu time out of range")
		}
		ticks += v
	}
	return time.Duration(ticks) * (time.Second / clockTicks), nil
}

// parseStatusRSS returns VmRSS in bytes from the contents of /proc/<pid>/status.
func parseStatusRSS(b []byte) (int64, error) {
	return procfs.KBField(b, "proc status", "VmRSS:")
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

// procCPU returns the user+system CPU time of process pid (all its threads).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
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
