package config

import (
	"fmt"
	"net/netip"

	"gopkg.in/yaml.v3"

	"github.com/jailgate/jailgate/jail"
)

// network_forwarding values: whether serve may turn net.ipv4.ip_forward on.
const (
	ForwardingOff  = "off"  // leave it to the operator (default): nat tenants need it on already
	ForwardingAuto = "auto" // turn it on at serve start, and log it
)

// unusablePool are ranges a network pool cannot lie in: its addresses
// would never be routed to her veth.
var unusablePool = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this network"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
}

// networkPool decodes network_pool: an IPv4 CIDR of /8 to /30, outside
// the ranges nothing can be routed in. Whether it overlaps the host's
// routes is for serve to check (config does not look at the system).
func (p *parser) networkPool(c *Config, n *yaml.Node) {
	const field = "network_pool"
	s := p.str(n, field)
	pool, err := netip.ParsePrefix(s)
	switch {
	case err != nil || !pool.Addr().Is4():
		p.add(p.at(n), field, "%q is not an IPv4 CIDR, e.g. 100.96.0.0/16", s)
		return
	case pool.Masked() != pool:
		p.add(p.at(n), field, "%q has host bits set (want %s)", s, pool.Masked())
		return
	case pool.Bits() < 8 || pool.Bits() > 30:
		p.add(p.at(n), field, "%q: want a prefix length from /8 to /30 (each environment takes a /31)", s)
		return
	}
	for _, u := range unusablePool {
		if u.prefix.Overlaps(pool) {
			p.add(p.at(n), field, "%s overlaps %s (%s)", s, u.prefix, u.what)
			return
		}
	}
	c.NetworkPool, c.NetworkPoolPos = pool, p.at(n)
}

// egress decodes egress: {allow: [...], deny: [...]}, each entry
// CIDR[:PORT[-PORT]]; entries of one list must not overlap.
func (p *parser) egress(u *User, n *yaml.Node, field string) {
	u.Egress = jail.Egress{}
	p.mapping(n, field, []string{"allow", "deny"}, func(key string, v *yaml.Node) {
		f := join(field, key)
		p.pos[f] = p.at(v)
		if v.Kind != yaml.SequenceNode {
			p.add(p.at(v), f, "must be a list of CIDR[:PORT[-PORT]], e.g. [10.1.2.3:5432]")
			return
		}
		var rules []jail.EgressRule
		for i, item := range v.Content {
			fi := fmt.Sprintf("%s[%d]", f, i)
			r, err := jail.ParseEgressRule(p.str(item, fi))
			if err != nil {
				p.add(p.at(item), fi, "%v", err)
				continue
			}
			for j, o := range rules {
				if overlaps(r, o) {
					p.add(p.at(item), fi, "%s overlaps %s[%d] (%s); merge them", r, f, j, o)
				}
			}
			rules = append(rules, r)
		}
		if key == "allow" {
			u.Egress.Allow = rules
		} else {
			u.Egress.Deny = rules
		}
	})
}

// overlaps reports whether two egress entries match a packet in common.
func overlaps(a, b jail.EgressRule) bool {
	if !a.Prefix.Overlaps(b.Prefix) {
		return false
	}
	return a.AnyPort() || b.AnyPort() || a.PortLo <= b.PortHi && b.PortLo <= a.PortHi
}

// dns decodes dns: a list of IPv4 resolver addresses.
func (p *parser) dns(u *User, n *yaml.Node, field string) {
	if n.Kind != yaml.SequenceNode {
		p.add(p.at(n), field, "must be a list of resolver addresses, e.g. [9.9.9.9]")
		return
	}
	u.DNS = []netip.Addr{}
	for i, item := range n.Content {
		fi := fmt.Sprintf("%s[%d]", field, i)
		a, err := netip.ParseAddr(p.str(item, fi))
		if err != nil || !a.Is4() || a.IsLoopback() || a.IsUnspecified() {
			p.add(p.at(item), fi, "%q is not a resolver address (IPv4, not loopback: her loopback is her own)", item.Value)
			continue
		}
		u.DNS = append(u.DNS, a)
	}
}

// checkNetwork checks the network settings of tenant u.
func (p *parser) checkNetwork(u *User, path string) {
	if u.Network != jail.NetworkNone && u.Network != jail.NetworkNAT {
		f := path + ".network"
		p.add(p.fieldPos(f), f, "%q is not one of none, nat", u.Network)
	}
}

// NetworkText is the tenant's network policy in one line, for check and
// explain.
func NetworkText(u *User) string {
	if u.Network != jail.NetworkNAT {
		return u.Network
	}
	s := "nat"
	for _, l := range []struct {
		name  string
		rules []jail.EgressRule
	}{{"allow", u.Egress.Allow}, {"deny", u.Egress.Deny}} {
		for _, r := range l.rules {
			s += " " + l.name + " " + r.String()
		}
	}
	if len(u.DNS) > 0 {
		s += fmt.Sprintf(" dns %v", u.DNS)
	}
	return s
}
