package jail

import "net/netip"

// NetNames exposes a gateway's table name and veth prefix to the
// external network tests (which use jailtest, so live in jail_test).
func NetNames(name string) (table, veth string) {
	n := namesFor(name)
	return n.table, n.veth
}

// LeasedPairs counts the pool's pairs in use.
func (n *Network) LeasedPairs() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	used := 0
	for _, u := range n.pairs {
		if u {
			used++
		}
	}
	return used
}

// Adopt is adopt for the external tests, with eth0's address (a /31
// pair's odd end) and resolvers as the init was given them.
func (n *Network) Adopt(veth, env, addr string, dns []netip.Addr, spec *EnvSpec) (func(), error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	return n.adopt(veth, env, &natNet{Address: netip.PrefixFrom(a, 31).String(), Resolv: resolvConf(dns)}, spec)
}
