package jail

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
)

// A gateway that starts while environments of its state_dir still live
// (issue 17: they survive a restart or an upgrade) adopts them:
// OpenNetwork leaves their veths (NetworkOptions.Keep) and carries their
// elements from the old table into the new one in the one batch that
// replaces it, so their packets always meet a table that knows them; then
// adopt takes each one's pair in the pool and replaces her carried
// elements with those of the current configuration. Her counters start
// again from zero in the new table.

// tenantSets are the sets holding elements of one tenant: keyed by her
// address first (setTenants: after her veth's name).
var tenantSets = []string{setTenants, setAllowPort, setAllowAny, setDenyPort, setDenyAny, setAcctOut, setAcctIn, setAcctDrop}

// carried is what the kept environments have in the old table.
type carried struct {
	elems map[string][]nftables.SetElement // by set
	conns map[netip.Addr]uint32            // her limits.connections rule
}

// carry reads, from the existing table, the elements and connection
// limits of the addresses the veths in keep have in setTenants.
func (fw *firewall) carry(keep []string) (*carried, error) {
	if len(keep) == 0 {
		return nil, nil
	}
	tenants, err := fw.conn.GetSetElements(&nftables.Set{Table: fw.table, Name: setTenants})
	if err != nil {
		return nil, fmt.Errorf("nftables: read the kept environments' elements: %w", err)
	}
	addrs := map[netip.Addr]bool{}
	for _, e := range tenants {
		if len(e.Key) == 20 && slices.Contains(keep, strings.TrimRight(string(e.Key[:16]), "\x00")) {
			addrs[netip.AddrFrom4([4]byte(e.Key[16:]))] = true
		}
	}
	c := &carried{conns: map[netip.Addr]uint32{}}
	if c.elems, err = fw.elementsOf(addrs); err != nil {
		return nil, err
	}
	rules, err := fw.conn.GetRules(fw.table, &nftables.Chain{Name: "tenant_conns", Table: fw.table})
	if err != nil {
		return nil, fmt.Errorf("nftables: read tenant_conns: %w", err)
	}
	for _, r := range rules {
		a, ok := netip.AddrFromSlice(r.UserData)
		if !ok || !addrs[a] {
			continue
		}
		for _, e := range r.Exprs {
			if cl, ok := e.(*expr.Connlimit); ok {
				c.conns[a] = cl.Count
			}
		}
	}
	return c, nil
}

// elementsOf reads the elements of addrs in every tenant set, as they can
// be added again (or deleted).
func (fw *firewall) elementsOf(addrs map[netip.Addr]bool) (map[string][]nftables.SetElement, error) {
	out := map[string][]nftables.SetElement{}
	for _, set := range tenantSets {
		elems, err := fw.conn.GetSetElements(&nftables.Set{Table: fw.table, Name: set})
		if err != nil {
			return nil, fmt.Errorf("nftables: read set %s: %w", set, err)
		}
		for _, e := range elems {
			key := e.Key
			if set == setTenants && len(key) == 20 {
				key = key[16:]
			}
			if a, ok := netip.AddrFromSlice(key[:min(4, len(key))]); ok && addrs[a] {
				out[set] = append(out[set], nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd, Comment: e.Comment})
			}
		}
	}
	return out, nil
}

// restore queues the carried elements and rules into the new table (in
// openFirewall's batch).
func (fw *firewall) restore(c *carried) error {
	if c == nil {
		return nil
	}
	for set, elems := range c.elems {
		if err := fw.conn.SetAddElements(fw.sets[set], elems); err != nil {
			return fmt.Errorf("nftables: carry the kept environments' elements: %w", err)
		}
	}
	for a, n := range c.conns {
		fw.limitConns(a, int64(n))
	}
	return nil
}

// adopt takes over the live environment env whose host-side veth is veth
// and whose eth0 the init built from nat (she started under an earlier
// gateway of this state_dir, which left her: Keep): her pair is taken in
// the pool, so no new environment gets her addresses, and her firewall
// elements become those of spec (the current configuration's egress,
// limits.connections; her resolvers stay those of her resolv.conf). The
// returned func is what a started environment's end runs: her elements,
// conntrack entries, veth and pair go. Her tc state (limits.net_rate) is
// the veth's and stays as it was set at her start. Adopt the kept
// environments before starting new ones: until then a kept pair is not
// reserved, and a new environment given it fails to make its veth.
// env names her environment in network.drop events (OnDrop).
func (n *Network) adopt(veth, env string, nat *natNet, spec *EnvSpec) (func(), error) {
	rest, ok := strings.CutPrefix(veth, n.names.veth)
	i, err := strconv.Atoi(rest)
	if !ok || err != nil || i < 0 || i >= len(n.pairs) {
		return nil, fmt.Errorf("network: adopt %s: not a veth of this gateway's pool %s", veth, n.pool)
	}
	if nat == nil || nat.Address != netip.PrefixFrom(n.pair(i).tenant, 31).String() {
		return nil, fmt.Errorf("network: adopt %s: her address is not pair %d of the pool %s", veth, i, n.pool)
	}
	if _, err := netlink.LinkByName(veth); err != nil {
		return nil, fmt.Errorf("network: adopt %s: %w", veth, err)
	}
	n.mu.Lock()
	if n.pairs[i] {
		n.mu.Unlock()
		return nil, fmt.Errorf("network: adopt %s: its pair is in use", veth)
	}
	l := n.take(i, spec.Tenant, env)
	n.mu.Unlock()
	old, err := n.fw.elementsOf(map[netip.Addr]bool{l.tenant: true})
	if err == nil {
		l.remove, err = n.fw.putTenant(veth, l.tenant, spec, parseNameservers(nat.Resolv), old)
	}
	if err != nil {
		l.end() // her pair only: her veth goes with her namespace
		return nil, errors.Join(fmt.Errorf("network: adopt %s", veth), err)
	}
	l.plugged = true
	return l.end, nil
}
