package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Ping sends one ICMP echo request from n to dst and waits up to timeout for
// the matching reply (raw ICMP socket; the image has no ping binary).
func (n *Netns) Ping(dst netip.Addr, timeout time.Duration) error {
	network, laddr, proto := "ip4:icmp", "0.0.0.0", 1
	var typ, replyTyp icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() && !dst.Is4In6() {
		network, laddr, proto = "ip6:ipv6-icmp", "::", 58
		typ, replyTyp = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	dst = dst.Unmap()
	var pc *icmp.PacketConn
	if err := n.Do(func() error {
		var err error
		pc, err = icmp.ListenPacket(network, laddr)
		return err
	}); err != nil {
		return fmt.Errorf("lab: ping %s from %s: %w", dst, n.name, err)
	}
	defer pc.Close()

	id := os.Getpid() & 0xffff
	deadline := time.Now().Add(timeout)
	rb := make([]byte, 1500)
	// One request per resend interval until a reply arrives: the first may
	// be lost while a fresh link resolves its neighbours.
	const resend = 200 * time.Millisecond
	for seq := 1; time.Now().Before(deadline); seq++ {
		msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("ztunnel-go lab")}}
		wb, err := msg.Marshal(nil)
		if err != nil {
			return fmt.Errorf("lab: ping: %w", err)
		}
		if _, err := pc.WriteTo(wb, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return fmt.Errorf("lab: ping %s from %s: %w", dst, n.name, err)
		}
		next := time.Now().Add(resend)
		if next.After(deadline) {
			next = deadline
		}
		pc.SetReadDeadline(next)
		for {
			nr, peer, err := pc.ReadFrom(rb)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return fmt.Errorf("lab: ping %s from %s: %w", dst, n.name, err)
			}
			rm, err := icmp.ParseMessage(proto, rb[:nr])
			if err != nil || rm.Type != replyTyp {
				continue // other ICMP traffic
			}
			if echo, ok := rm.Body.(*icmp.Echo); !ok || echo.ID != id {
				continue
			}
			if pa, ok := peer.(*net.IPAddr); !ok || !pa.IP.Equal(dst.AsSlice()) {
				continue
			}
			return nil
		}
	}
	return fmt.Errorf("lab: ping %s from %s: no reply within %v", dst, n.name, timeout)
}
