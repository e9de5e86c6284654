package main

import (
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// setChildAttrs makes the kernel kill a child if the harness dies without cleaning up.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
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

// markControl returns a dialer Control that sets SO_MARK to mark on each socket (nil for 0).
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)) }); err != nil {
			return err
		}
		return serr
	}
}
