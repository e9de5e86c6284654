package rawio

import (
	"bytes"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWriteAll: a write larger than the socket can take stops at EAGAIN with what went in
// counted; once the peer reads, the rest goes in the same way, and the bytes come out whole
// and in order. An empty write is done at once; a bad descriptor returns its error and 0.
func TestWriteAll(t *testing.T) {
	a, b := nonblockingPair(t)
	msg := make([]byte, 4<<20) // more than a Unix socket pair buffers
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	var got bytes.Buffer
	buf := make([]byte, 64<<10)
	sent, fulls := 0, 0
	for sent < len(msg) {
		n, err := WriteAll(a, msg[sent:])
		sent += n
		switch {
		case err == unix.EAGAIN:
			if sent == len(msg) {
				t.Fatalf("EAGAIN with everything written")
			}
			fulls++
		case err != nil:
			t.Fatalf("WriteAll at %d: %d, %v", sent, n, err)
		case sent != len(msg):
			t.Fatalf("WriteAll returned nil at %d of %d bytes", sent, len(msg))
		}
		for { // drain what is there, as the peer would
			n, err := Read(b, buf)
			if err == unix.EAGAIN {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got.Write(buf[:n])
			if got.Len() > sent {
				t.Fatalf("read back %d bytes, more than the %d WriteAll counted", got.Len(), sent)
			}
		}
	}
	if fulls == 0 {
		t.Fatalf("the socket never filled: the test did not reach EAGAIN")
	}
	if !bytes.Equal(got.Bytes(), msg) {
		t.Fatalf("read back %d bytes, not the %d written in order", got.Len(), len(msg))
	}
	if n, err := WriteAll(a, nil); n != 0 || err != nil {
		t.Fatalf("empty WriteAll = %d, %v", n, err)
	}
	if n, err := WriteAll(-1, msg); n != 0 || err != syscall.EBADF {
		t.Fatalf("WriteAll to fd -1 = %d, %v; want 0, EBADF", n, err)
	}
}
