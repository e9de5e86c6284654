package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// unansweredAddr returns a loopback address whose SYNs go unanswered: a listening socket with
// no room in its accept queue, filled by one connection that is never accepted. Linux drops
// the SYNs of further connects then, so they wait until their deadline.
func unansweredAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4(sa.(*unix.SockaddrInet4).Addr), uint16(sa.(*unix.SockaddrInet4).Port))
	// Fill the queue: connects that complete (the queue holds one more than the backlog) until
	// one does not within a short deadline.
	for i := range 8 {
		var d net.Dialer
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		c, err := d.DialTCP(ctx, "tcp", netip.AddrPort{}, addr)
		cancel()
		if err != nil {
			if i == 0 {
				t.Fatalf("the first connect to the queue: %v", err)
			}
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatalf("eight connects to a listener with a backlog of 0 completed: the queue never filled")
	return netip.AddrPort{}
}

// TestConnectCtxTimesOut: a connect given a connectCtx ends at its deadline with a timeout,
// though the context has no timer and its Done never closes.
func TestConnectCtxTimesOut(t *testing.T) {
	addr := unansweredAddr(t)
	var d net.Dialer
	const timeout = 200 * time.Millisecond
	start := time.Now()
	c, err := d.DialTCP(connectDeadline(timeout), "tcp", netip.AddrPort{}, addr)
	took := time.Since(start)
	if err == nil {
		c.Close()
		t.Fatalf("connect to %v completed, want it to time out", addr)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("connect error %v, want a timeout", err)
	}
	// Not a timing check: only that it ended at its deadline rather than after the kernel's
	// SYN retries (a minute and more) or at once.
	if took < timeout/2 || took > 20*timeout {
		t.Errorf("connect ended after %v, want about its %v deadline", took, timeout)
	}
}

// TestConnectCtxAllocs: a connect under connectCtx allocates less than one under a
// context.WithTimeout of a cancellable parent, which is what an inbound connect used (the
// HBONE connection's context).
func TestConnectCtxAllocs(t *testing.T) {
	// Nothing accepts: the kernel completes each connect into the listener's queue, which
	// holds them all (the 102 connects of the two runs and their warm-ups stay below the
	// backlog, somaxconn: 4096 by default, 128 on kernels before 5.4). An accepting goroutine
	// would allocate while the runs count, at times inside a run and at times after it, and
	// blur a difference of a few (ci on ba19b4e counted 29 against 27).
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	var d net.Dialer
	dial := func(ctx context.Context) {
		c, err := d.DialTCP(ctx, "tcp", netip.AddrPort{}, addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	withTimeout := testing.AllocsPerRun(50, func() {
		ctx, cancel := context.WithTimeout(parent, time.Minute)
		dial(ctx)
		cancel()
	})
	ours := testing.AllocsPerRun(50, func() { dial(connectDeadline(time.Minute)) })
	t.Logf("allocations per connect: %.1f under context.WithTimeout, %.1f under connectCtx", withTimeout, ours)
	if ours+3 > withTimeout {
		t.Errorf("a connect under connectCtx allocates %.1f times, want at least 3 fewer than the %.1f under context.WithTimeout",
			ours, withTimeout)
	}
}
