package main

import (
	"cmp"
	"fmt"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// setChildAttrs makes the kernel kill a child if the harness dies without cleaning up.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// procCPU returns the CPU time of process pid, all its threads, live and exited, to the
// nanosecond. It reads the process's CPU clock (clock_gettime on the clock id the kernel derives
// from the pid: CPUCLOCK_SCHED of the whole thread group), which any process may read. The
// utime+stime of /proc/<pid>/stat comes in 10 ms ticks, coarser than what a light proxy spends
// accepting fifty connections (HAProxy read as 0 in a quick run).
func procCPU(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, fmt.Errorf("cpu clock: pid %d", pid)
	}
	const cpuclockSched = 2 // the scheduler's runtime, in ns (include/linux/posix-timers.h)
	id := int32(^uint32(pid)<<3 | cpuclockSched)
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		return 0, fmt.Errorf("cpu clock of pid %d: %w", pid, err)
	}
	return time.Duration(ts.Nano()), nil
}

// raiseNofile raises RLIMIT_NOFILE to n for the harness and, by inheritance, every process it
// starts: S5 holds 10,000 connections, 20,000 descriptors in the harness and in a plain relay.
// Raising the hard limit needs CAP_SYS_RESOURCE; without it the soft limit goes up to the hard
// one. It returns the soft limit in force afterwards.
func raiseNofile(n uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= n {
		return lim.Cur, nil
	}
	want := syscall.Rlimit{Cur: n, Max: max(lim.Max, n)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
		return n, nil
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return lim.Cur, nil
}

// sockOpts are the socket options a relay sets on the sockets it opens.
type sockOpts struct {
	mark uint32 // SO_MARK of the connections it dials (0: none)
	mss  int    // TCP_MAXSEG of every socket, listeners and dials (0: what the route gives)
}

// control returns the Control function of a dialer (dial) or a listener: SO_MARK on dialed
// sockets, TCP_MAXSEG on both (an accepted socket inherits its listener's). nil when there is
// nothing to set.
func (o sockOpts) control(dial bool) func(network, address string, c syscall.RawConn) error {
	mark := o.mark
	if !dial {
		mark = 0
	}
	if mark == 0 && o.mss == 0 {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if mark != 0 {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
			}
			if serr == nil && o.mss != 0 {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, o.mss)
			}
		})
		return cmp.Or(err, serr)
	}
}
