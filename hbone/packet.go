package hbone

import "net"

// How writes meet TCP packets. Linux sends what one write(2) gives a TCP socket in packets of
// whole segments (its MSS) up to a size goal: the device's GSO limit (64 KiB) less room for
// headers, a few hundred bytes (at an MSS of 1448 it sends 65,160 bytes, 45 segments, per
// packet, here). A write that ends past the goal sends its tail as a packet of its own. A bulk
// transfer relayed in 64 KiB reads then costs two packets a read, the second a few hundred
// bytes, and each packet pays the pod's netfilter rules and the receiver's TCP work in full
// (measured in benchmarks/README.md, "One packet per relayed read"). A connection computes
// how much a Write may carry to leave as one packet (Stream.WriteSizeHint), and the relay
// reads its source in pieces of that size.

// frameHeaderLen is the length of an HTTP/2 frame header.
const frameHeaderLen = 9

// gsoRoom is the room we assume for a TCP packet's payload: 64 KiB less 1 KiB for the
// kernel's header room. The kernel's own figure leaves room for one more segment at some
// MSS values; assuming less costs at most one segment a packet, assuming more would cost a
// second packet a write, so we stay on the safe side of whatever the kernel's build keeps.
const gsoRoom = 64<<10 - 1<<10

// packetGoal returns how many bytes a TCP socket with this MSS sends as one packet: whole
// segments within gsoRoom, or one segment when a segment is larger (loopback's MSS);
// 0 for an unknown MSS.
func packetGoal(mss int) int {
	switch {
	case mss <= 0:
		return 0
	case mss >= gsoRoom:
		return mss
	}
	return gsoRoom / mss * mss
}

// writeHint returns Stream.WriteSizeHint for a connection over nc: the most DATA one frame
// may carry so that the frame, sealed into TLS records by nc and flushed alone, fits the
// packet goal of the socket under nc. 0 when nc does not say how its records grow (crypto/tls)
// or the socket is unknown.
func writeHint(nc net.Conn) int {
	rc, ok := nc.(interface{ PlaintextWithin(wire int) int })
	if !ok {
		return 0
	}
	goal := packetGoal(socketMSS(nc))
	if goal == 0 {
		return 0
	}
	return min(max(rc.PlaintextWithin(goal)-frameHeaderLen, 0), maxDataFrame)
}
