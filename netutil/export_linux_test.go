package netutil

import (
	"net"
	"time"
)

// StartParkLoop starts the epoll loop of parked directions now, so tests can
// take their goroutine and descriptor baselines with it running.
func StartParkLoop() { theLoop() }

// SetParkAfter sets how long a TCP source stays silent before its direction
// parks, and returns a function restoring the previous value.
func SetParkAfter(d time.Duration) (restore func()) {
	old := parkAfter
	parkAfter = d
	return func() { parkAfter = old }
}

// SetDetach turns the detaching of idle Links' sockets on or off, and
// returns a function restoring the previous setting.
func SetDetach(on bool) (restore func()) {
	old := detachIdle.Swap(on)
	return func() { detachIdle.Store(old) }
}

// Detached reports which of l's connections (a, b) it holds detached now.
func Detached(l *Link) (a, b bool) {
	l.dmu.Lock()
	defer l.dmu.Unlock()
	return l.aToB.bare != 0, l.bToA.bare != 0
}

// LinkConns returns l's connections as they are now: nil for one held
// detached.
func LinkConns(l *Link) (a, b net.Conn) {
	l.dmu.Lock()
	defer l.dmu.Unlock()
	return l.a, l.b
}

// Detaches is the number of sockets detached so far.
func Detaches() uint64 { return detaches.Load() }

// SetAttachHold sets how long a Link stays attached after an attach, and
// returns a function restoring the previous value.
func SetAttachHold(d time.Duration) (restore func()) {
	old := attachHold.Swap(int64(d))
	return func() { attachHold.Store(old) }
}

// Parked is the number of l's directions parked now (2 - linkInUse's count).
func Parked(l *Link) int {
	l.dmu.Lock()
	defer l.dmu.Unlock()
	return 2 - int(l.flags.Load()&linkInUseMask/linkInUse)
}
