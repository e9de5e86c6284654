//go:build !linux

package hbone

import "net"

// limitUnsent is a no-op where TCP_NOTSENT_LOWAT is not supported.
func limitUnsent(net.Conn, int) {}
