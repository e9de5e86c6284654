package netutil_test

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/netutil"
)

// sizedSink is a relay destination with a WriteSizeHint (as an HBONE stream has) that
// passes the bytes on to a TCP socket and records its largest write.
type sizedSink struct {
	plainConn
	hint int
	mu   sync.Mutex
	max  int
}

func (s *sizedSink) WriteSizeHint() int { return s.hint }

func (s *sizedSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.max = max(s.max, len(p))
	s.mu.Unlock()
	return s.plainConn.Write(p)
}

// TestLinkReadsWriteSize: a direction that reads a TCP socket for a WriteSizer reads at most
// its hint at a time, so no write to it is larger; without a hint, or with one under half
// the buffer, it reads the whole 64 KiB buffer.
func TestLinkReadsWriteSize(t *testing.T) {
	for _, c := range []struct {
		name      string
		hint, max int
	}{
		{"hint", 63_615, 63_615},
		{"no hint", 0, 64 << 10},
		{"small hint ignored", 4096, 64 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			client, a := tcpPair(t)
			b, server := tcpPair(t)
			sink := &sizedSink{plainConn: plainConn{b}, hint: c.hint}
			done := make(chan error, 1)
			l := netutil.NewLink(a, sink, nil, nil, netutil.EndFunc(func(_, _ int64, err error) { done <- err }))
			go l.Run()
			defer l.Close()

			// Writes much larger than a read, so the socket holds more than a buffer's
			// worth at times and a read fills what it is given.
			const total = 8 << 20
			go func() {
				data := make([]byte, 1<<20)
				for range total / len(data) {
					if _, err := client.Write(data); err != nil {
						return
					}
				}
				client.CloseWrite()
			}()
			server.SetReadDeadline(time.Now().Add(20 * time.Second))
			n, err := io.Copy(io.Discard, server)
			if err != nil || n != total {
				t.Fatalf("relayed %d of %d bytes: %v", n, total, err)
			}
			sink.mu.Lock()
			got := sink.max
			sink.mu.Unlock()
			if got != c.max {
				t.Errorf("largest write to the destination %d bytes, want %d", got, c.max)
			}
		})
	}
}
