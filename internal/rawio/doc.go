// Package rawio makes the data path's large read, write and splice system
// calls on non-blocking sockets without telling Go's scheduler about them, and
// its small ones as the syscall package does.
//
// syscall.Read and unix.Write enter the system call through the runtime's
// entersyscall and exitsyscall, which let another thread take the goroutine's
// P if the call blocks. A call on a non-blocking socket never blocks, but one
// that moves tens of kilobytes runs long enough in the kernel (copies, the
// TCP stack, the loopback or veth peer's receive path) that, by our reading of
// the runtime, Go's monitor thread takes its P away and wakes another thread
// to run it, and the caller then waits to get a P back. A bulk transfer pays that over and over: with
// the relay's and the record layer's bulk calls made this way, the ztunnels
// used 12% less CPU per GiB, on HBONE and on the plain relay alike ("Bulk
// system calls without the scheduler" in benchmarks/README.md).
//
// Small calls keep the bookkeeping. Their entersyscall wakes the monitor when
// it sleeps, and on the host measured the round trips of an interactive
// connection were slower without those wake-ups (S4's p50 worse in five
// comparisons of six), for reasons not traced; a later host measured the
// opposite ("Raw small calls, measured on this host" in benchmarks/README.md),
// and the choice is open. So a call goes raw only when
// it moves at least Bulk bytes, or, for reads and splices out of a socket,
// where the size is known only afterwards, when the caller says the previous
// call on that source did.
//
// A raw call keeps its P for the length of the call, as it would for the same
// time spent in Go code; on a blocking descriptor a call that waits would hold
// its P and delay stop-the-world phases of the collector until it returned, so
// the functions here are for descriptors in non-blocking mode only (every
// socket from the net package is).
//
// Results follow golang.org/x/sys/unix: an error is a syscall.Errno (compare
// with unix.EAGAIN and friends), and the count is 0 with it.
package rawio

// Bulk is the size from which a call is made raw: 16 KiB, four pages. A 1-byte
// round trip's calls stay far below it and a bulk transfer's (64 KiB reads,
// TLS records of up to 16 KiB coalesced into writes of many) far above.
const Bulk = 16 << 10
