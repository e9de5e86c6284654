//go:build !linux

package netutil

// rawLink and rawDir are empty where the relay has no raw-socket path.
type (
	rawLink struct{}
	rawDir  struct{}
)

// Offer takes nothing off Linux: setupDeliver never enables direct writes.
func (d *dirState) Offer(b []byte) int { return 0 }

// setupRaw is not handled off Linux: every direction uses copyConn.
func (d *dirState) setupRaw() bool { return false }

func (d *dirState) splice() (error, bool) { return nil, false }

func (d *dirState) readCopy() error { return nil }

// parkInLoop has no epoll loop to park in off Linux.
func (d *dirState) parkInLoop() bool { return false }

func unparkFromLoop(d *dirState) bool { return false }

func (d *dirState) setupDeliver() {}

// deliver has no raw sockets to write to off Linux: a goroutine does it.
func (d *dirState) deliver() bool { return false }

// writeDst writes through the destination's Write off Linux.
func (d *dirState) writeDst(b []byte) (int, error) { return d.dst().Write(b) }

// Sockets are never detached off Linux.
func (l *Link) detach()                           {}
func (l *Link) attach() error                     { return nil }
func (l *Link) closeDetached(resetA, resetB bool) {}
