package proxy

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/ztunnel-go/ztunnel/config"
	"github.com/ztunnel-go/ztunnel/logging"
)

// BenchmarkCRR is the harness's S3 in one process: per iteration a new
// SOCKS5 connection through the outbound side, a new stream on the pooled
// HBONE connection to the inbound side, a new app connection, one byte each
// way and the teardown (TCP_CRR style through two proxy legs). The access log
// goes through the production handler (to io.Discard), so the allocations
// reported are the proxy's as it runs, plus the test client's.
func BenchmarkCRR(b *testing.B) {
	e := newEnvConfig(b, func(c *Config) {
		c.AccessLog = logging.NewOutput(io.Discard, logging.Text, config.LogLevel{Default: slog.LevelInfo}).Logger("access")
	})
	dst := netip.AddrPortFrom(serverIP, e.appPort)
	one := []byte{'x'}
	buf := make([]byte, 64)
	crr := func() {
		c := e.socksDial(b, dst)
		if _, err := c.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:1]); err != nil {
			b.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		for { // drain to EOF without io.Copy's 32 KiB buffer
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		c.Close()
	}
	crr() // the pooled connection and certificates
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		crr()
	}
}
