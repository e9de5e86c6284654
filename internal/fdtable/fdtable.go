// Package fdtable sizes the process's descriptor table before the connections that fill it arrive.
//
// Linux grows a process's descriptor table by doubling it when a new descriptor does not fit (256,
// 512, 1,024, ... slots). In a process with more than one thread, each growth waits for an RCU
// grace period (synchronize_rcu in the kernel's expand_fdtable), and every other thread that opens
// a descriptor meanwhile (accept4, socket, F_DUPFD) waits for the growth: 5-23 ms per doubling on
// the benchmark host. Go's scheduler sees those threads stuck in system calls and hands their
// processors to new threads, which the process keeps afterwards, each with 48 KiB of stacks (its g0
// and signal stacks). A proxy that opens thousands of connections paid that at every power of two:
// stalled accepts and dials, and, holding ten thousand idle connections, 19-24 threads where 11-15
// do (benchmarks/README.md, "The descriptor table, sized at start-up (thirty-sixth session)").
//
// Reserve grows the table once, at start-up. The kernel never shrinks it, so a reservation costs
// what the table would hold anyway once that many descriptors were open: 8 bytes a slot (128 KiB at
// 16,384 slots) of kernel memory, charged to the process's memory cgroup, not to its resident set.
package fdtable
