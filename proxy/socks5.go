package proxy

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"time"
)

// SOCKS5 (RFC 1928), CONNECT only, no authentication: a way to send traffic through the proxy
// without kernel redirection (development, `make run`). Names are resolved against the mesh's
// service hostnames first, then the system resolver.

const (
	socksVersion        = 5
	socksMethodNone     = 0    // no authentication required
	socksMethodNoneFits = 0xff // none of the client's methods is acceptable
	socksCmdConnect     = 1
	socksAtypIPv4       = 1
	socksAtypDomain     = 3
	socksAtypIPv6       = 4
	socksRepOK          = 0
	socksRepHost        = 4 // host unreachable: the name did not resolve
	socksRepCmd         = 7
	socksRepAddrType    = 8

	// socksHandshakeTimeout bounds the whole negotiation, name resolution included.
	socksHandshakeTimeout = 10 * time.Second
)

// handleSOCKS5 negotiates one SOCKS5 CONNECT and hands the connection to the outbound path.
func (p *Proxy) handleSOCKS5(c net.Conn, st *connState) {
	deadline := time.Now().Add(socksHandshakeTimeout)
	c.SetDeadline(deadline)
	dst, err := socksHandshake(deadline, c, p.resolveName)
	if err != nil {
		p.log.Debug("socks5: handshake failed", "src", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	p.outbound(c, addrPort(c.RemoteAddr()), dst, st)
}

// socksHandshake reads a client's greeting and CONNECT request from rw, answers both, and returns
// the destination. It reads exactly the two messages, never past them, so that what a client
// pipelined behind its request stays for the relay. A name is mapped to an address by resolve,
// under a context that ends at deadline (made only then: most requests carry an address). On an
// error, rw may have a failure reply written to it; the caller closes it.
func socksHandshake(deadline time.Time, rw io.ReadWriter, resolve func(context.Context, string) netip.Addr) (netip.AddrPort, error) {
	// The greeting: version, the number of methods, the methods.
	var hdr [2]byte
	if _, err := io.ReadFull(rw, hdr[:]); err != nil {
		return netip.AddrPort{}, err
	}
	if hdr[0] != socksVersion {
		return netip.AddrPort{}, errSOCKS("unsupported version")
	}
	var methods [255]byte
	if _, err := io.ReadFull(rw, methods[:hdr[1]]); err != nil {
		return netip.AddrPort{}, err
	}
	if !offersNoAuth(methods[:hdr[1]]) {
		// RFC 1928 section 3: no acceptable method, and the client must close.
		rw.Write([]byte{socksVersion, socksMethodNoneFits})
		return netip.AddrPort{}, errSOCKS("the client offers no unauthenticated method")
	}
	if _, err := rw.Write([]byte{socksVersion, socksMethodNone}); err != nil {
		return netip.AddrPort{}, err
	}

	// The request: version, command, reserved, address type, address, port.
	var req [4]byte
	if _, err := io.ReadFull(rw, req[:]); err != nil {
		return netip.AddrPort{}, err
	}
	if req[0] != socksVersion || req[1] != socksCmdConnect {
		socksReply(rw, socksRepCmd)
		return netip.AddrPort{}, errSOCKS("only CONNECT is supported")
	}
	var ip netip.Addr
	var name []byte // the name to resolve, once the port is read too
	switch req[3] {
	case socksAtypIPv4:
		var b [4]byte
		if _, err := io.ReadFull(rw, b[:]); err != nil {
			return netip.AddrPort{}, err
		}
		ip = netip.AddrFrom4(b)
	case socksAtypIPv6:
		var b [16]byte
		if _, err := io.ReadFull(rw, b[:]); err != nil {
			return netip.AddrPort{}, err
		}
		ip = netip.AddrFrom16(b).Unmap()
	case socksAtypDomain:
		var n [1]byte
		if _, err := io.ReadFull(rw, n[:]); err != nil {
			return netip.AddrPort{}, err
		}
		name = make([]byte, n[0])
		if _, err := io.ReadFull(rw, name); err != nil {
			return netip.AddrPort{}, err
		}
	default:
		socksReply(rw, socksRepAddrType)
		return netip.AddrPort{}, errSOCKS("unsupported address type")
	}
	var port [2]byte
	if _, err := io.ReadFull(rw, port[:]); err != nil {
		return netip.AddrPort{}, err
	}
	if name != nil {
		// Looked up once the request is read whole, so that a failure answers all of it.
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		ip = resolve(ctx, string(name))
		cancel()
		if !ip.IsValid() {
			socksReply(rw, socksRepHost)
			return netip.AddrPort{}, errSOCKS("cannot resolve " + string(name))
		}
	}
	if err := socksReply(rw, socksRepOK); err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(port[:])), nil
}

// offersNoAuth reports whether a greeting's methods include "no authentication".
func offersNoAuth(methods []byte) bool {
	for _, m := range methods {
		if m == socksMethodNone {
			return true
		}
	}
	return false
}

// resolveName maps a mesh service hostname to its VIP, else asks the system resolver within ctx.
// It returns the zero Addr when the name does not resolve.
func (p *Proxy) resolveName(ctx context.Context, name string) netip.Addr {
	for _, svc := range p.cfg.Store.Snapshot().ServicesByHostname(name) {
		for _, vip := range svc.VIPs {
			if vip.Network == p.cfg.Network {
				return vip.Address
			}
		}
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
	if err != nil || len(addrs) == 0 {
		return netip.Addr{}
	}
	return addrs[0].Unmap()
}

// socksReply writes a reply with code rep. The bound address is always 0.0.0.0:0: the outbound
// connection is made after the reply, as the Rust ztunnel does.
func socksReply(w io.Writer, rep byte) error {
	_, err := w.Write([]byte{socksVersion, rep, 0, socksAtypIPv4, 0, 0, 0, 0, 0, 0})
	return err
}

type errSOCKS string

func (e errSOCKS) Error() string { return "socks5: " + string(e) }
