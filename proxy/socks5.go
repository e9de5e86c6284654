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
	socksVersion     = 5
	socksCmdConnect  = 1
	socksAtypIPv4    = 1
	socksAtypDomain  = 3
	socksAtypIPv6    = 4
	socksRepOK       = 0
	socksRepFailure  = 1
	socksRepCmd      = 7
	socksRepAddrType = 8
)

// handleSOCKS5 negotiates one SOCKS5 CONNECT and hands the connection to the outbound path.
func (p *Proxy) handleSOCKS5(c net.Conn, st *connState) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	dst, err := p.socksHandshake(c)
	if err != nil {
		p.log.Debug("socks5: handshake failed", "src", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	p.outbound(c, addrPort(c.RemoteAddr()), dst, st)
}

func (p *Proxy) socksHandshake(c net.Conn) (netip.AddrPort, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return netip.AddrPort{}, err
	}
	if hdr[0] != socksVersion {
		return netip.AddrPort{}, errSOCKS("unsupported version")
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return netip.AddrPort{}, err
	}
	if _, err := c.Write([]byte{socksVersion, 0}); err != nil { // no authentication
		return netip.AddrPort{}, err
	}
	var req [4]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return netip.AddrPort{}, err
	}
	if req[0] != socksVersion || req[1] != socksCmdConnect {
		socksReply(c, socksRepCmd)
		return netip.AddrPort{}, errSOCKS("only CONNECT is supported")
	}
	var ip netip.Addr
	switch req[3] {
	case socksAtypIPv4:
		var b [4]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return netip.AddrPort{}, err
		}
		ip = netip.AddrFrom4(b)
	case socksAtypIPv6:
		var b [16]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return netip.AddrPort{}, err
		}
		ip = netip.AddrFrom16(b).Unmap()
	case socksAtypDomain:
		var n [1]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return netip.AddrPort{}, err
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(c, name); err != nil {
			return netip.AddrPort{}, err
		}
		ip = p.resolveName(string(name))
		if !ip.IsValid() {
			socksReply(c, socksRepFailure)
			return netip.AddrPort{}, errSOCKS("cannot resolve " + string(name))
		}
	default:
		socksReply(c, socksRepAddrType)
		return netip.AddrPort{}, errSOCKS("unsupported address type")
	}
	var port [2]byte
	if _, err := io.ReadFull(c, port[:]); err != nil {
		return netip.AddrPort{}, err
	}
	if err := socksReply(c, socksRepOK); err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(port[:])), nil
}

// resolveName maps a mesh service hostname to its VIP, else asks the system resolver.
func (p *Proxy) resolveName(name string) netip.Addr {
	for _, svc := range p.cfg.Store.Snapshot().ServicesByHostname(name) {
		for _, vip := range svc.VIPs {
			if vip.Network == p.cfg.Network {
				return vip.Address
			}
		}
	}
	addrs, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", name)
	if err != nil || len(addrs) == 0 {
		return netip.Addr{}
	}
	return addrs[0].Unmap()
}

func socksReply(c net.Conn, rep byte) error {
	_, err := c.Write([]byte{socksVersion, rep, 0, socksAtypIPv4, 0, 0, 0, 0, 0, 0})
	return err
}

type errSOCKS string

func (e errSOCKS) Error() string { return "socks5: " + string(e) }
