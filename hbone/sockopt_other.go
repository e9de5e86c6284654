//go:build !linux

package hbone

import "net"

// limitUnsent is a no-op where TCP_NOTSENT_LOWAT is not supported.
func limitUnsent(net.Conn, int) {}

// socketMSS returns 0: the packet goal (packet.go) is Linux's.
func socketMSS(net.Conn) int { return 0 }
