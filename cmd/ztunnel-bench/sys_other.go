//go:build !linux

package main

import (
	"errors"
	"os/exec"
	"syscall"
)

func setChildAttrs(cmd *exec.Cmd) {}

func raiseNofile(n uint64) (uint64, error) { return 0, errors.New("ztunnel-bench needs Linux") }

func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(string, string, syscall.RawConn) error { return errors.New("SO_MARK needs Linux") }
}
