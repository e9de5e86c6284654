// Package rawio makes the data path's read, write and splice system calls on
// non-blocking sockets without telling Go's scheduler about them.
//
// syscall.Read and unix.Write enter the system call through the runtime's
// entersyscall and exitsyscall, which let another thread take the goroutine's
// P if the call blocks. A call on a non-blocking socket never blocks, and the
// bookkeeping costs twice over. A call that moves tens of kilobytes runs long
// enough in the kernel (copies, the TCP stack, the loopback or veth peer's
// receive path) that, by our reading of the runtime, Go's monitor thread
// (sysmon) takes its P away and wakes another thread to run it, and the
// caller then waits to get a P back ("Bulk system calls without the
// scheduler" in benchmarks/README.md: 12% less CPU per GiB without it). And
// a small call wakes sysmon when that sleeps because every P was idle, as
// it does between the round trips of an interactive connection; woken,
// sysmon looks again 20 µs later, so each round trip paid two wake-ups of
// a thread that had nothing to do ("Every data-path call raw" in
// benchmarks/README.md: a third less CPU per round trip over HBONE).
//
// A raw call keeps its P for the length of the call, as it would for the same
// time spent in Go code; on a blocking descriptor a call that waits would hold
// its P and delay stop-the-world phases of the collector until it returned, so
// the functions here are for descriptors in non-blocking mode only (every
// socket from the net package is).
//
// Built with the race detector, Read and Write go through the syscall
// package instead, so the detector sees the order a socket puts between a
// writer and a reader in the same process (see race.go).
//
// Results follow golang.org/x/sys/unix: an error is a syscall.Errno (compare
// with unix.EAGAIN and friends), and the count is 0 with it.
package rawio
