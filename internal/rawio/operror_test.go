package rawio

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

// TestWriteError: the error has net.Conn Write's shape, an *net.OpError for
// "write" with both addresses, and still matches its errno.
func TestWriteError(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	err := WriteError(a, syscall.EPIPE)
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "write" || op.Source != a.LocalAddr() || op.Addr != a.RemoteAddr() {
		t.Fatalf("WriteError = %#v, want a write *net.OpError with a's addresses", err)
	}
	if !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("WriteError = %v, does not match EPIPE", err)
	}
}
