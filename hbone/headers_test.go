package hbone

import (
	"io"
	"reflect"
	"testing"
	"unsafe"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestDecoderKeepsNoReadBuffer: the HPACK decoder keeps a slice of the last
// bytes written to it (x/net's Decoder.buf, zero-length after a complete
// field). Those bytes must be the connection's own (hchunk), not the read
// buffer's: tls/record returns its read buffer to a pool once drained, and
// an idle connection's decoder would keep it alive.
func TestDecoderKeepsNoReadBuffer(t *testing.T) {
	block := encode(":method", "CONNECT", ":authority", "10.0.0.1:80", "forwarded", `for="10.0.0.2:1234"`)
	rb := &sliceReader{b: block}
	c := &conn{br: rb, server: true, maxBlock: 64 << 10}
	c.cfg.MaxHeaderListSize = 64 << 10
	c.hdec = hpack.NewDecoder(4096, c.onField)
	// No END_HEADERS: the block stays open, so nothing past decoding runs.
	if err := c.onHeaderFrame(http2.FrameHeader{Type: http2.FrameHeaders, StreamID: 1, Length: uint32(len(block))}); err != nil {
		t.Fatal(err)
	}
	if h := c.hdr; h.method != "CONNECT" || h.authority != "10.0.0.1:80" || h.header.Get("forwarded") != `for="10.0.0.2:1234"` {
		t.Fatalf("decoded %q %q %v", h.method, h.authority, h.header)
	}
	buf := reflect.ValueOf(c.hdec).Elem().FieldByName("buf")
	if !buf.IsValid() || buf.Kind() != reflect.Slice {
		t.Fatal("hpack.Decoder has no slice field buf: check what it keeps of the bytes written to it")
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(block)))
	if p := buf.Pointer(); p >= lo && p <= lo+uintptr(len(block)) {
		t.Errorf("the decoder keeps a slice of the read buffer (%#x, buffer at %#x)", p, lo)
	}
}

// sliceReader is a frameReader over one buffer, all of it buffered.
type sliceReader struct {
	b   []byte
	off int
}

func (r *sliceReader) Read(p []byte) (int, error) {
	if r.off == len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

func (r *sliceReader) ReadByte() (byte, error) {
	if r.off == len(r.b) {
		return 0, io.EOF
	}
	r.off++
	return r.b[r.off-1], nil
}

func (r *sliceReader) Buffered() int { return len(r.b) - r.off }

func (r *sliceReader) Peek(n int) ([]byte, error) {
	if n > r.Buffered() {
		return r.b[r.off:], io.EOF
	}
	return r.b[r.off : r.off+n], nil
}

func (r *sliceReader) Discard(n int) (int, error) {
	n = min(n, r.Buffered())
	r.off += n
	return n, nil
}
