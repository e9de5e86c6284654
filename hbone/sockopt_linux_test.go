package hbone

import (
	"context"
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNotSentLowat: a connection over TLS over TCP gets TCP_NOTSENT_LOWAT
// on its socket, found through the *tls.Conn.
func TestNotSentLowat(t *testing.T) {
	ts := startServer(t, true, Config{}, hold)
	nc, err := ts.dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cc, err := NewClientConn(nc, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var under net.Conn = nc
	for {
		u, ok := under.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		under = u.NetConn()
	}
	raw := under.(*net.TCPConn)
	rc, err := raw.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	rc.Control(func(fd uintptr) {
		got, gerr = syscall.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT)
	})
	if gerr != nil {
		t.Fatal(gerr)
	}
	if got != notSentLowat {
		t.Errorf("TCP_NOTSENT_LOWAT: got %d, want %d", got, notSentLowat)
	}
}
