//go:build !linux

package netutil

import "syscall"

// ReadPark has no epoll loop to park in off Linux: Park always reports false,
// so readers keep their goroutine.
type ReadPark struct{}

// Park reports false: the caller keeps reading on its own goroutine.
func (p *ReadPark) Park(rc syscall.RawConn, resume func()) bool { return false }

// Cancel reports false: nothing is ever parked.
func (p *ReadPark) Cancel() bool { return false }
