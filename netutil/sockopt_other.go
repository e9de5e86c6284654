//go:build !linux

package netutil

import (
	"net"
	"net/netip"
	"syscall"
)

// keepaliveOnListener is false: accepted connections get their keepalive
// settings from Go, one by one.
const keepaliveOnListener = false

func (o SocketOptions) apply(fd int, network string, listener bool) error {
	if o.Mark != 0 || o.Transparent || o.Freebind || o.ReusePort {
		return ErrUnsupported
	}
	return nil
}

// Mark returns ErrUnsupported: SO_MARK is Linux-only.
func Mark(c syscall.Conn) (uint32, error) { return 0, ErrUnsupported }

// OriginalDst returns ErrUnsupported: SO_ORIGINAL_DST is Linux-only.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) { return netip.AddrPort{}, ErrUnsupported }

// ReadReady reads nothing: without a raw read that never waits, early data
// is not used.
func ReadReady(c *net.TCPConn, p []byte) (int, error) { return 0, nil }

// CurrentNetns returns ErrUnsupported: network namespaces are Linux-only.
func CurrentNetns() (fd int, err error) { return -1, ErrUnsupported }

// InNetns returns ErrUnsupported without running fn: network namespaces are
// Linux-only.
func InNetns(netnsFD int, fn func() error) error { return ErrUnsupported }
