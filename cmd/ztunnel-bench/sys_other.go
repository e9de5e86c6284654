//go:build !linux

package main

import (
	"errors"
	"os/exec"
)

func setChildAttrs(cmd *exec.Cmd) {}

func raiseNofile(n uint64) (uint64, error) { return 0, errors.New("ztunnel-bench needs Linux") }
