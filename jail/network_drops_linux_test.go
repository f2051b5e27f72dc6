package jail

import (
	"net/netip"
	"testing"
)

// TestParseDrop reads the source, destination and protocol of the IPv4
// headers NFLOG hands over (snaplen 64), and refuses what is not IPv4.
func TestParseDrop(t *testing.T) {
	tcp := []byte{0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0, 100, 96, 0, 1, 169, 254, 169, 254, // IPv4, TCP
		0xc3, 0x50, 0, 80} // source port 50000, destination port 80
	src, dst, proto, ok := parseDrop(tcp)
	if !ok || src != netip.MustParseAddr("100.96.0.1") || dst != netip.MustParseAddrPort("169.254.169.254:80") || proto != "tcp" {
		t.Errorf("tcp: %v %v %q %v", src, dst, proto, ok)
	}
	icmp := append([]byte{}, tcp[:20]...)
	icmp[9] = 1
	if _, dst, proto, ok := parseDrop(icmp); !ok || dst.Port() != 0 || proto != "icmp" {
		t.Errorf("icmp: %v %q %v", dst, proto, ok)
	}
	if _, _, _, ok := parseDrop([]byte{0x60, 0, 0, 0}); ok {
		t.Error("an IPv6 header parsed")
	}
	if _, _, _, ok := parseDrop(tcp[:12]); ok {
		t.Error("a short header parsed")
	}
}
