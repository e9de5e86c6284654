//go:build !linux

package main

import (
	"errors"
	"os/exec"
	"syscall"
	"time"
)

func setChildAttrs(cmd *exec.Cmd) {}

func procCPU(pid int) (time.Duration, error) { return 0, errors.New("ztunnel-bench needs Linux") }

func raiseNofile(n uint64) (uint64, error) { return 0, errors.New("ztunnel-bench needs Linux") }

// sockOpts are the socket options a relay sets on the sockets it opens (Linux only).
type sockOpts struct {
	mark uint32
	mss  int
}

func (o sockOpts) control(dial bool) func(network, address string, c syscall.RawConn) error {
	if o.mss == 0 && (o.mark == 0 || !dial) {
		return nil
	}
	return func(string, string, syscall.RawConn) error { return errors.New("SO_MARK and TCP_MAXSEG need Linux") }
}
