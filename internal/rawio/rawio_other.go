//go:build !linux

package rawio

import "syscall"

// Elsewhere the calls go through the syscall package, scheduler bookkeeping
// included: the data path's own tuning is for Linux.

// Read reads from the non-blocking descriptor fd into p.
func Read(fd int, p []byte) (int, error) {
	n, err := syscall.Read(fd, p)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Write writes p to the non-blocking descriptor fd.
func Write(fd int, p []byte) (int, error) {
	n, err := syscall.Write(fd, p)
	if err != nil {
		return 0, err
	}
	return n, nil
}
