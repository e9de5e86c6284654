package proxy

import (
	"io"
	"net"
	"net/netip"
	"testing"
)

// BenchmarkCRR is the harness's S3 in one process: per iteration a new
// SOCKS5 connection through the outbound side, a new stream on the pooled
// HBONE connection to the inbound side, a new app connection, one byte each
// way and the teardown (TCP_CRR style through two proxy legs).
func BenchmarkCRR(b *testing.B) {
	e := newEnv(b)
	dst := netip.AddrPortFrom(serverIP, e.appPort)
	one := []byte{'x'}
	buf := make([]byte, 1)
	crr := func() {
		c := e.socksDial(b, dst)
		if _, err := c.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
		c.Close()
	}
	crr() // the pooled connection and certificates
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		crr()
	}
}
