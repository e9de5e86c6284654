//go:build race

package rawio

// raceEnabled: built with the race detector. Under it, Read and Write go
// through the syscall package. That package tells the detector of the
// kernel's accesses to the buffer and of the order a write then a read of a
// descriptor put between goroutines, through a variable of its own; a raw
// read paired with a net.Conn write (an in-process peer, in tests) would have
// no such order, and the detector would report races between goroutines
// that the socket orders. Race builds check memory, not scheduling: the raw
// calls are tested without the detector (make test runs rawio's, netutil's
// and tls/record's tests both ways).
const raceEnabled = true
