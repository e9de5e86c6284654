package main

import (
	"bytes"
	"io"
	"os"
	"testing"
	"time"
)

// recorder is an io.WriteCloser that keeps what was written and whether it was closed.
type recorder struct {
	bytes.Buffer
	closed chan struct{}
}

func (r *recorder) Close() error { close(r.closed); return nil }

// TestStallCopy: the copier passes every byte on, in order, and closes both ends at EOF; and a
// writer with more to say than the pipe holds waits out the stall that starts every period.
func TestStallCopy(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	dst := &recorder{closed: make(chan struct{})}
	const stall, period = 200 * time.Millisecond, 400 * time.Millisecond
	start := time.Now()
	go stallCopy(dst, pr, stall, period)
	want := make([]byte, 1<<20) // far more than a pipe's 64 KiB
	for i := range want {
		want[i] = byte(i * 7)
	}
	if _, err := pw.Write(want); err != nil {
		t.Fatal(err)
	}
	// The first stall opens the copy: the write cannot have finished before it ended. (A lower
	// bound only; a slow machine makes the write take longer, never shorter.)
	if d := time.Since(start); d < stall {
		t.Errorf("a 1 MiB write into the pipe returned after %v, within the %v stall", d, stall)
	}
	pw.Close()
	select {
	case <-dst.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the copier did not close its destination after EOF")
	}
	if !bytes.Equal(dst.Bytes(), want) {
		t.Errorf("copied %d bytes, not the %d written in order", dst.Len(), len(want))
	}
	if _, err := pr.Read(make([]byte, 1)); err == nil || err == io.EOF {
		t.Errorf("the copier left the pipe's read end open (read: %v)", err)
	}
}
