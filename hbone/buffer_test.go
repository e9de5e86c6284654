package hbone

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestRecvBufLen: the buffered length follows a byte count through writes and reads that cross chunk boundaries, and the bytes come
// out in order.
func TestRecvBufLen(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var b recvBuf
	var model []byte
	next := byte(0)
	for i := range 2000 {
		if rng.IntN(2) == 0 {
			p := make([]byte, rng.IntN(3*chunkSize))
			for j := range p {
				p[j] = next
				next++
			}
			b.write(p)
			model = append(model, p...)
		} else {
			p := make([]byte, rng.IntN(3*chunkSize))
			n := b.read(p)
			want := min(len(p), len(model))
			if n != want || !bytes.Equal(p[:n], model[:n]) {
				t.Fatalf("step %d: read %d bytes (want %d), in order %v", i, n, want, bytes.Equal(p[:n], model[:n]))
			}
			model = model[n:]
		}
		if got := b.len(); int(got) != len(model) {
			t.Fatalf("step %d: len %d, want %d", i, got, len(model))
		}
		if len(model) == 0 && (b.head != nil || b.tail != nil) {
			t.Fatalf("step %d: empty buffer keeps chunks", i)
		}
	}
	b.release()
	if b.len() != 0 || b.head != nil || b.tail != nil {
		t.Fatalf("after release: len %d, chunks kept %v", b.len(), b.head != nil || b.tail != nil)
	}
}
