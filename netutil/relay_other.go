//go:build !linux

package netutil

import "net"

// rawDir is empty where the relay has no raw-socket path.
type rawDir struct{}

// copyRaw is not handled off Linux: every direction uses copyConn.
func (d *dirState) copyRaw(dst, src net.Conn) (int64, error, bool) { return 0, nil, false }
