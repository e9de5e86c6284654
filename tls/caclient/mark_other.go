//go:build !linux

package caclient

import (
	"errors"
	"syscall"
)

// markControl fails: SO_MARK exists only on Linux.
func markControl(uint32) func(network, address string, c syscall.RawConn) error {
	return func(string, string, syscall.RawConn) error {
		return errors.New("SO_MARK is only supported on Linux")
	}
}
