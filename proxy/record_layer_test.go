package proxy

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/hbone"
	"github.com/ztunnel-go/ztunnel/tls/identity"
	tlsrec "github.com/ztunnel-go/ztunnel/tls/record"
)

// TestHBONEUsesRecordLayer: both ends of the proxy's HBONE connections run
// tls/record after the handshake, not crypto/tls's records: the client
// (dialHBONE) and the server, whose Config is picked per local workload by
// GetConfigForClient (a Config of its own, which the record layer must
// still reach).
func TestHBONEUsesRecordLayer(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	nc, err := e.proxy.dialHBONE(ctx, hbone.Key{
		Source:   clientID.String(),
		Expected: serverID.String(),
		Addr:     netip.AddrPortFrom(serverIP, e.ports.InboundHBONE),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, ok := nc.(*tlsrec.Conn); !ok {
		t.Fatalf("dialHBONE returned a %T, want a *record.Conn", nc)
	}

	// The server side, with the proxy's own server Config, on an address of
	// the server workload.
	ln, err := net.Listen("tcp", netip.AddrPortFrom(serverIP, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		c   net.Conn
		err error
	}
	srv := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- result{nil, err}
			return
		}
		tc, _, err := tlsrec.Handshake(ctx, c, e.proxy.serverTLS(), true)
		srv <- result{tc, err}
	}()
	cfg, err := e.certs.ClientConfig(ctx, clientID, []identity.ID{serverID})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cc, _, err := tlsrec.Handshake(ctx, raw, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	r := <-srv
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.c.Close()
	if _, ok := r.c.(*tlsrec.Conn); !ok {
		t.Fatalf("the server handshake returned a %T, want a *record.Conn", r.c)
	}
}
