package netutil

import (
	"testing"
	"unsafe"
)

// TestLinkSize keeps a Link (one per relayed connection, idle or not) in
// Go's 576-byte allocation class: the next class up is 640 bytes, and the
// Link was 792 (an 896-byte allocation) before its directions stopped
// keeping copies of the Link's connections and flags.
func TestLinkSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("SKIPPED: the size budget is for 64-bit platforms")
	}
	if got := unsafe.Sizeof(Link{}); got > 576 {
		t.Errorf("Link is %d bytes, want at most 576 (64-bit)", got)
	}
}
