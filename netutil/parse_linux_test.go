package netutil

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// sockaddr encodes ap the way the kernel fills a sockaddr_in / sockaddr_in6.
func sockaddr(ap netip.AddrPort) []byte {
	if ap.Addr().Is4() {
		b := make([]byte, 16)
		binary.NativeEndian.PutUint16(b, unix.AF_INET)
		binary.BigEndian.PutUint16(b[2:], ap.Port())
		a := ap.Addr().As4()
		copy(b[4:], a[:])
		return b
	}
	b := make([]byte, 28)
	binary.NativeEndian.PutUint16(b, unix.AF_INET6)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	a := ap.Addr().As16()
	copy(b[8:], a[:])
	return b
}

func TestParseSockaddr(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    string
		wantErr bool
	}{
		{"v4", sockaddr(netip.MustParseAddrPort("10.1.2.3:80")), "10.1.2.3:80", false},
		{"v4 high port", sockaddr(netip.MustParseAddrPort("192.168.0.1:65535")), "192.168.0.1:65535", false},
		{"v6", sockaddr(netip.MustParseAddrPort("[fd00::1]:15001")), "[fd00::1]:15001", false},
		{"v4-mapped v6 is unmapped", sockaddr(netip.MustParseAddrPort("[::ffff:10.0.0.1]:443")), "10.0.0.1:443", false},
		{"empty", nil, "", true},
		{"short v4", sockaddr(netip.MustParseAddrPort("10.1.2.3:80"))[:7], "", true},
		{"short v6", sockaddr(netip.MustParseAddrPort("[fd00::1]:80"))[:23], "", true},
		{"unix family", []byte{1, 0, 0, 0, 0, 0, 0, 0}, "", true},
	}
	for _, tt := range tests {
		got, err := parseSockaddr(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v, wantErr %v", tt.name, err, tt.wantErr)
			continue
		}
		if err == nil && got.String() != tt.want {
			t.Errorf("%s: got %v, want %s", tt.name, got, tt.want)
		}
	}
}

func FuzzParseSockaddr(f *testing.F) {
	f.Add(sockaddr(netip.MustParseAddrPort("10.1.2.3:80")))
	f.Add(sockaddr(netip.MustParseAddrPort("[fd00::1]:15001")))
	f.Add(sockaddr(netip.MustParseAddrPort("[::ffff:10.0.0.1]:443")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ap, err := parseSockaddr(b)
		if err != nil {
			return
		}
		if !ap.IsValid() || ap.Addr().Is4In6() || ap.Addr().Zone() != "" {
			t.Fatalf("parseSockaddr(%x) = %v: invalid, mapped or zoned", b, ap)
		}
		// Re-encoding gives back the address bytes and port of the input.
		again, err := parseSockaddr(sockaddr(ap))
		if err != nil || again != ap {
			t.Fatalf("round trip of %v = %v, %v", ap, again, err)
		}
		if got := binary.BigEndian.Uint16(b[2:4]); got != ap.Port() {
			t.Fatalf("port %d, input says %d", ap.Port(), got)
		}
	})
}
