package jail

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// EgressRule is one entry of a tenant's egress allow or deny list
// (EnvSpec.Egress): a destination prefix and, optionally, a port range
// that applies to TCP and UDP. Without ports it covers every port and
// protocol to the prefix. IPv4 only: nat offers no IPv6 yet.
type EgressRule struct {
	Prefix netip.Prefix
	PortLo uint16 // 0 with PortHi 0: every port and protocol
	PortHi uint16
}

// Egress is a tenant's egress policy in nat mode, evaluated allow before
// deny, both before the default deny list (DefaultDeny).
type Egress struct {
	Allow []EgressRule
	Deny  []EgressRule
}

// AnyPort reports whether r covers every port and protocol.
func (r EgressRule) AnyPort() bool { return r.PortLo == 0 && r.PortHi == 0 }

// String is r as ParseEgressRule reads it: CIDR[:PORT[-PORT]].
func (r EgressRule) String() string {
	s := r.Prefix.String()
	switch {
	case r.AnyPort():
		return s
	case r.PortLo == r.PortHi:
		return fmt.Sprintf("%s:%d", s, r.PortLo)
	}
	return fmt.Sprintf("%s:%d-%d", s, r.PortLo, r.PortHi)
}

// Covers reports whether r matches everything o matches.
func (r EgressRule) Covers(o EgressRule) bool {
	if r.Prefix.Bits() > o.Prefix.Bits() || !r.Prefix.Contains(o.Prefix.Addr()) {
		return false
	}
	return r.AnyPort() || (!o.AnyPort() && r.PortLo <= o.PortLo && o.PortHi <= r.PortHi)
}

// minimal drops the rules another rule of the list covers (the kernel
// refuses overlapping elements of an interval set).
func minimal(rules []EgressRule) []EgressRule {
	var out []EgressRule
	for i, r := range rules {
		covered := false
		for j, o := range rules {
			if i != j && o.Covers(r) && (!r.Covers(o) || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, r)
		}
	}
	return out
}

// ParseEgressRule reads CIDR[:PORT[-PORT]]: "10.1.2.3:5432",
// "192.168.0.0/16", "203.0.113.0/24:8000-8999". A bare address is a /32.
func ParseEgressRule(s string) (EgressRule, error) {
	if strings.Count(s, ":") > 1 || strings.Contains(s, "[") {
		return EgressRule{}, fmt.Errorf("%q: IPv6 destinations are not offered (nat is IPv4 only)", s)
	}
	addr, ports, hasPort := strings.Cut(s, ":")
	var r EgressRule
	var err error
	if strings.Contains(addr, "/") {
		r.Prefix, err = netip.ParsePrefix(addr)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(addr); err == nil {
			r.Prefix = netip.PrefixFrom(a, a.BitLen())
		}
	}
	switch {
	case err != nil:
		return EgressRule{}, fmt.Errorf("%q is not CIDR[:PORT[-PORT]]: bad address or prefix", s)
	case !r.Prefix.Addr().Is4():
		return EgressRule{}, fmt.Errorf("%q: IPv6 destinations are not offered (nat is IPv4 only)", s)
	case r.Prefix.Masked() != r.Prefix:
		return EgressRule{}, fmt.Errorf("%q has host bits set (want %s)", s, r.Prefix.Masked())
	}
	if !hasPort {
		return r, nil
	}
	lo, hi, isRange := strings.Cut(ports, "-")
	if !isRange {
		hi = lo
	}
	pl, err1 := strconv.ParseUint(lo, 10, 16)
	ph, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || pl == 0 || ph < pl {
		return EgressRule{}, fmt.Errorf("%q: bad port range %q (want PORT or LOW-HIGH, 1-65535)", s, ports)
	}
	r.PortLo, r.PortHi = uint16(pl), uint16(ph)
	return r, nil
}

// DefaultDeny are the destinations a nat tenant never reaches unless her
// egress.allow names them: private (RFC 1918), shared (RFC 6598, CGNAT),
// link-local (RFC 3927; 169.254.169.254 is the cloud metadata service),
// loopback, "this network", multicast and reserved space. The host's own
// addresses and the network pool (no tenant to tenant) are added at run time.
var DefaultDeny = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// DefaultPools are the network pools tried, in order, when none is
// configured: the first that overlaps no route or address of the host is
// used. They lie in the CGNAT range (RFC 6598), which a host rarely routes.
var DefaultPools = []netip.Prefix{
	netip.MustParsePrefix("100.96.0.0/16"),
	netip.MustParsePrefix("100.97.0.0/16"),
	netip.MustParsePrefix("100.98.0.0/16"),
	netip.MustParsePrefix("100.99.0.0/16"),
}
