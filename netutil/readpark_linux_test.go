package netutil_test

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/netutil"
)

// parkRig is a loopback TCP pair whose a end is to be parked: its RawConn,
// and a resume func that signals woke.
func parkRig(t *testing.T) (a, b *net.TCPConn, rc syscall.RawConn, woke chan struct{}, resume func()) {
	t.Helper()
	a, b = dialAccept(t)
	t.Cleanup(func() { b.Close() })
	rc, err := a.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	woke = make(chan struct{}, 1)
	return a, b, rc, woke, func() { woke <- struct{}{} }
}

// TestReadPark parks the reader of an idle socket: resume runs once the peer
// writes, not before, and the same ReadPark parks again (its descriptor is
// then modified in the epoll set, not added).
func TestReadPark(t *testing.T) {
	a, b, rc, woke, resume := parkRig(t)
	defer a.Close()
	var p netutil.ReadPark
	buf := make([]byte, 8)
	for round := range 3 {
		if !p.Park(rc, resume) {
			t.Fatalf("round %d: Park refused an idle TCP socket", round)
		}
		select {
		case <-woke:
			t.Fatalf("round %d: resumed before the peer wrote", round)
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := b.Write([]byte{byte(round)}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-woke:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: not resumed after the peer wrote", round)
		}
		if p.Cancel() {
			t.Fatalf("round %d: Cancel took back a ReadPark its event had resumed", round)
		}
		a.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := a.Read(buf); err != nil || n != 1 || buf[0] != byte(round) {
			t.Fatalf("round %d: read %d %v %v", round, n, buf[:n], err)
		}
	}

	// Parked on bytes that are already there: the event fires at once.
	b.Write([]byte{9})
	time.Sleep(20 * time.Millisecond)
	if !p.Park(rc, resume) {
		t.Fatal("Park refused")
	}
	select {
	case <-woke:
	case <-time.After(5 * time.Second):
		t.Fatal("not resumed for bytes that arrived before Park")
	}
	a.Read(buf)

	// The peer's close wakes the reader too.
	if !p.Park(rc, resume) {
		t.Fatal("Park refused")
	}
	b.Close()
	select {
	case <-woke:
	case <-time.After(5 * time.Second):
		t.Fatal("not resumed when the peer closed")
	}
}

// TestReadParkCancel takes a parked reader back: the caller owns it again and
// resume does not run when bytes come later. A closed socket cannot park.
func TestReadParkCancel(t *testing.T) {
	a, b, rc, woke, resume := parkRig(t)
	var p netutil.ReadPark
	if !p.Park(rc, resume) {
		t.Fatal("Park refused an idle TCP socket")
	}
	if !p.Cancel() {
		t.Fatal("Cancel did not take back a parked reader")
	}
	if p.Cancel() {
		t.Fatal("a second Cancel took it back again")
	}
	b.Write([]byte{1})
	select {
	case <-woke:
		t.Fatal("resumed after Cancel")
	case <-time.After(100 * time.Millisecond):
	}
	a.Close()
	if p.Park(rc, resume) {
		t.Fatal("Park took a closed socket")
	}
	if p.Cancel() {
		t.Fatal("Cancel found a refused Park parked")
	}
}
