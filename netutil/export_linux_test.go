package netutil

import "time"

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
