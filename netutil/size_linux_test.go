package netutil

import (
	"testing"
	"unsafe"
)

// TestLinkSize keeps a Link (one per relayed connection, idle or not) in
// Go's 208-byte allocation class. It was 792 bytes (an 896-byte allocation)
// before its directions stopped keeping copies of the Link's connections and
// flags, then 576 until what a copy needs only while bytes move (the pipe or
// buffer, the bound RawConn callbacks and their results) went to a pooled
// rawOp, the two directions shared their sockets' RawConns, and the
// notification callbacks became the direction itself (ReadWaiter), 256
// until the directions stopped keeping a pointer back to their Link, and 240
// while a sync.Once guarded closeBoth and the count of directions in use had
// a word of its own (both are in the flags word now), and 224 while each
// direction kept its idle deadline in Unix nanoseconds and its pending
// bytes' bounds in 32 bits.
func TestLinkSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("SKIPPED: the size budget is for 64-bit platforms")
	}
	if got := unsafe.Sizeof(Link{}); got > 208 {
		t.Errorf("Link is %d bytes, want at most 208 (64-bit)", got)
	}
}

// TestDirStateLink: each direction finds its own Link from its address.
func TestDirStateLink(t *testing.T) {
	l := NewLink(nil, nil, nil, nil, nil)
	if l.aToB.link() != l || l.bToA.link() != l {
		t.Fatalf("link() = %p, %p; want %p", l.aToB.link(), l.bToA.link(), l)
	}
}
