package jail

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
