package netutil_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/netutil"
)

// refusingConn stands for a tunnel opened before its answer: its Read fails once the relay
// has written the client's first bytes to it and counted them (at once when wrote is nil),
// and Refused says whether it was refused. A real refusal comes a round trip after the
// write, long after the relay counted it; Read waits for the count so that the test does
// not fail it between the Write's return and the count's update.
type refusingConn struct {
	refused bool
	wrote   chan struct{} // closed by the first Write; nil: Read does not wait
	counted *atomic.Int64 // the relay's count of bytes written to this conn
	once    sync.Once
}

var errTunnelFailed = errors.New("tunnel failed")

func (c *refusingConn) Read([]byte) (int, error) {
	if c.wrote != nil {
		<-c.wrote
		for c.counted.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	return 0, errTunnelFailed
}

func (c *refusingConn) Write(p []byte) (int, error) {
	c.once.Do(func() { close(c.wrote) })
	return len(p), nil
}

func (c *refusingConn) Close() error                     { return nil }
func (c *refusingConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *refusingConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *refusingConn) SetDeadline(time.Time) error      { return nil }
func (c *refusingConn) SetReadDeadline(time.Time) error  { return nil }
func (c *refusingConn) SetWriteDeadline(time.Time) error { return nil }
func (c *refusingConn) Refused() bool                    { return c.refused }

var _ netutil.Refuser = (*refusingConn)(nil)

// TestLinkResetsClientOfRefusedTunnel: a relay whose other side turns out to be a tunnel
// refused after the relay wrote the client's bytes to it closes the client with a reset, as a
// proxy that waited for the answer would have closed it with those bytes unread; a refusal
// before any byte, or the failure of a tunnel that was established, ends with an orderly
// close.
func TestLinkResetsClientOfRefusedTunnel(t *testing.T) {
	for _, tt := range []struct {
		name          string
		refused, sent bool
		reset         bool
	}{
		{"refused after bytes", true, true, true},
		{"refused before bytes", true, false, false},
		{"established", false, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, accepted := tcpPair(t)
			var toTunnel atomic.Int64
			tunnel := &refusingConn{refused: tt.refused, counted: &toTunnel}
			if tt.sent {
				tunnel.wrote = make(chan struct{})
				if _, err := client.Write([]byte("request")); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			l := netutil.NewLink(accepted, tunnel, &toTunnel, nil, netutil.EndFunc(func(_, _ int64, err error) { done <- err }))
			go l.Run()
			select {
			case err := <-done:
				if !errors.Is(err, errTunnelFailed) {
					t.Fatalf("relay ended with %v, want the tunnel's failure", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the relay did not end")
			}
			client.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := io.ReadAll(client)
			switch {
			case tt.reset && !errors.Is(err, syscall.ECONNRESET):
				t.Fatalf("client read %v, want a reset", err)
			case !tt.reset && err != nil:
				t.Fatalf("client read %v, want an orderly end", err)
			}
		})
	}
}
