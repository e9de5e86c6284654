package hbone

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// limitUnsent sets TCP_NOTSENT_LOWAT on the TCP socket under nc (looking
// through *tls.Conn and any wrapper with a NetConn method), so the kernel
// keeps at most about n bytes queued but unsent. Bytes beyond stay in our
// hands, where the write lock's FIFO order lets a small stream's frame go
// before a bulk stream's next one, instead of queueing behind megabytes in
// the socket. Errors are ignored: the option only tunes latency.
func limitUnsent(nc net.Conn, n int) {
	if n <= 0 {
		return
	}
	rc := socketUnder(nc)
	if rc == nil {
		return
	}
	rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, n)
	})
}

// socketMSS returns the MSS of the TCP socket under nc (TCP_MAXSEG: the size of the segments
// it sends now), or 0 when there is none or the kernel does not say.
func socketMSS(nc net.Conn) int {
	rc := socketUnder(nc)
	if rc == nil {
		return 0
	}
	mss := 0
	rc.Control(func(fd uintptr) {
		if v, err := syscall.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG); err == nil {
			mss = v
		}
	})
	return mss
}

// socketUnder returns the RawConn of the TCP socket under nc, looking through *tls.Conn and
// any wrapper with a NetConn method; nil when there is none.
func socketUnder(nc net.Conn) syscall.RawConn {
	for {
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		inner := u.NetConn()
		if inner == nil || inner == nc {
			break
		}
		nc = inner
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
