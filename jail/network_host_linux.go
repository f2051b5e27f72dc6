package jail

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netNames are the host-wide names one gateway owns: its nftables table
// and the prefix of its host-side veths (the firewall's iifname "jgXXXXXX*").
// Both derive from NetworkOptions.Name, so two gateways (or a test next to
// a live gateway) never sweep or filter each other's.
type netNames struct {
	table string // "jailgate-" + name
	veth  string // "jg" + 6 hex digits of name's hash; the rest is the pair number
}

// namesFor derives a gateway's names. A veth name is at most 15 bytes
// (IFNAMSIZ-1): 8 of prefix leave 7 digits, the pairs of a /8 pool.
func namesFor(name string) netNames {
	sum := sha256.Sum256([]byte(name))
	return netNames{table: "jailgate-" + name, veth: "jg" + hex.EncodeToString(sum[:3])}
}

// ipForwardPath is the sysctl nat needs on: the host routes her packets.
const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// NetworkOptions configure the host side of NetworkNAT.
type NetworkOptions struct {
	Logger *slog.Logger // nil: slog.Default()
	// Name is this gateway's own name for what it makes outside its
	// state_dir (serve passes statedir's Hash): its nftables table
	// "jailgate-NAME" and its veths' prefix. Only these are swept at
	// start. Required.
	Name string
	// Pool holds every environment's point-to-point /31; the zero Prefix
	// picks the first of DefaultPools that overlaps nothing on the host.
	Pool netip.Prefix
	// Forwarding turns net.ipv4.ip_forward on if it is off
	// (network_forwarding: auto); false leaves it to the operator.
	Forwarding bool
	// OnDrop, if set, hears of an environment's first connection attempt
	// to each destination that policy drops (at most dropEventsPerEnv
	// destinations an environment; network_drops_linux.go), from a
	// goroutine of the Network's: env is the environment's name (the
	// "env" of its start and end in the log). Drops are attributed to
	// environments, not sessions: her sessions share her environment.
	OnDrop func(tenant, env string, dst netip.AddrPort, proto string)
	// Keep names host-side veths (an environment's, which a new gateway
	// is to adopt: Network.adopt) that the start-time sweep leaves alone;
	// if the table exists, their elements are carried into the new one in
	// the batch that replaces it, so their traffic never meets a table
	// without them.
	Keep []string
}

// Network is the host side of NetworkNAT: the address pool, the uplink
// and jailgate's nftables table. OpenNetwork makes it, Close removes the
// table. Its methods are safe for concurrent use.
type Network struct {
	log    *slog.Logger
	names  netNames
	pool   netip.Prefix
	uplink string // the default route's interface
	mtu    int    // the uplink's MTU, given to every eth0
	fw     *firewall
	fwdErr error    // ip_forward is off and may not be turned on
	drops  *dropLog // nil: no drop events (no nfnetlink_log)
	onDrop func(tenant, env string, dst netip.AddrPort, proto string)

	mu    sync.Mutex
	pairs []bool                // pair i (addresses 2i, 2i+1 of the pool) is in use
	live  map[netip.Addr]*lease // by her address: whose a dropped packet is
}

// OpenNetwork checks the pool against the host's routes and addresses,
// removes the veths a dead gateway left, and creates the nftables table
// (replacing a stale one).
func OpenNetwork(opts NetworkOptions) (*Network, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Name == "" {
		return nil, errors.New("network: NetworkOptions.Name is empty")
	}
	n := &Network{log: opts.Logger, names: namesFor(opts.Name), onDrop: opts.OnDrop, live: map[netip.Addr]*lease{}}
	sweepVeths(n.names.veth, opts.Keep, n.log)
	pool, err := choosePool(opts.Pool, n.names.veth)
	if err != nil {
		return nil, err
	}
	n.pool = pool
	n.pairs = make([]bool, 1<<(32-pool.Bits()-1))
	n.uplink, n.mtu = uplink()
	if n.fwdErr = ipForward(opts.Forwarding, n.log); n.fwdErr != nil {
		n.log.Info("nat environments cannot start", "err", n.fwdErr)
	}
	hostAddrs, err := hostAddresses(n.names.veth)
	if err != nil {
		return nil, err
	}
	var group uint16 // 0: no log rule
	if n.drops, err = openDropLog(opts.Name); err != nil {
		n.log.Warn("network: no audit events of dropped connections", "err", err)
	} else {
		group = n.drops.group
	}
	if n.fw, err = openFirewall(n.names, pool, hostAddrs, group, opts.Keep); err != nil {
		n.Detach()
		return nil, err
	}
	if n.drops != nil {
		go n.drops.run(n.reportDrop)
	}
	warnForwardBlocks(opts.Name, n.uplink, n.log) // another table's drop (Docker's) is final: say what to add
	n.log.Info("network ready", "pool", pool, "uplink", n.uplink, "mtu", n.mtu, "nflog_group", group)
	return n, nil
}

// Close removes the nftables table. Environments still running lose their
// egress; call it after the Supervisor's Close.
func (n *Network) Close() error {
	n.Detach()
	return n.fw.close()
}

// Detach lets go of the host network without undoing it: the table and
// every live environment's veth stay (for a gateway that stops or
// upgrades with environments lingering, to be adopted by the next one:
// NetworkOptions.Keep). Only the drop events stop.
func (n *Network) Detach() {
	if n.drops != nil {
		n.drops.close()
	}
}

// Pool is the address pool in use.
func (n *Network) Pool() netip.Prefix { return n.pool }

// ChoosePool is the pool the gateway named name (NetworkOptions.Name)
// would use: want if it overlaps no route or address of the host, or, for
// the zero Prefix, the first such of DefaultPools. The error names the
// conflicting route or address. The routes of that gateway's own veths
// (a live one's environments) do not count; another gateway's do.
func ChoosePool(want netip.Prefix, name string) (netip.Prefix, error) {
	return choosePool(want, namesFor(name).veth)
}

// choosePool is ChoosePool for the veths starting with prefix.
func choosePool(want netip.Prefix, prefix string) (netip.Prefix, error) {
	if want.IsValid() {
		return want, checkPool(want, prefix)
	}
	var errs []error
	for _, p := range DefaultPools {
		err := checkPool(p, prefix)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	return netip.Prefix{}, fmt.Errorf("no default network pool is free (set network_pool): %w", errors.Join(errs...))
}

// checkPool refuses a pool that overlaps a route (any table) or an
// address of the host, naming the conflicting one. Default routes and the
// veths starting with prefix (this gateway's) do not count.
func checkPool(pool netip.Prefix, prefix string) error {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 0}, netlink.RT_FILTER_TABLE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() && maskBits(r.Dst) == 0 {
			continue
		}
		dst, ok := toPrefix(r.Dst)
		if !ok || !dst.Overlaps(pool) || ownLink(r.LinkIndex, prefix) {
			continue
		}
		return fmt.Errorf("network pool %s overlaps the host route %s (%s); set network_pool to a free range",
			pool, dst, linkName(r.LinkIndex))
	}
	addrs, err := hostAddresses(prefix)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if pool.Contains(a) {
			return fmt.Errorf("network pool %s holds the host address %s; set network_pool to a free range", pool, a)
		}
	}
	return nil
}

// toPrefix converts a route destination.
func toPrefix(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, maskBits(n)), true
}

func maskBits(n *net.IPNet) int { ones, _ := n.Mask.Size(); return ones }

// linkName names interface index i, or says its index.
func linkName(i int) string {
	if l, err := netlink.LinkByIndex(i); err == nil {
		return "dev " + l.Attrs().Name
	}
	return fmt.Sprintf("ifindex %d", i)
}

// ownLink reports whether interface i is one of the veths starting with
// prefix.
func ownLink(i int, prefix string) bool {
	l, err := netlink.LinkByIndex(i)
	return err == nil && ownVeth(l, prefix)
}

// ownVeth reports whether l is a veth starting with prefix.
func ownVeth(l netlink.Link, prefix string) bool {
	return l.Type() == "veth" && strings.HasPrefix(l.Attrs().Name, prefix)
}

// hostAddresses lists the host's IPv4 addresses on every interface but
// the veths starting with prefix (the firewall denies them to tenants).
func hostAddresses(prefix string) ([]netip.Addr, error) {
	list, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list host addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && !ownLink(a.LinkIndex, prefix) {
			out = append(out, ip)
		}
	}
	return out, nil
}

// uplink is the default route's interface and its MTU (1500 without one).
func uplink() (string, int) {
	routes, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
	for _, r := range routes {
		if r.Dst == nil || maskBits(r.Dst) == 0 {
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				return l.Attrs().Name, l.Attrs().MTU
			}
		}
	}
	return "", 1500
}

// ipForward makes sure the host forwards IPv4: on already, or turned on
// when allowed (network_forwarding: auto), which it logs.
func ipForward(allowed bool, log *slog.Logger) error {
	b, err := os.ReadFile(ipForwardPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", ipForwardPath, err)
	}
	if strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if !allowed {
		return errors.New("net.ipv4.ip_forward is 0: nat needs it on; set network_forwarding: auto or run sysctl -w net.ipv4.ip_forward=1")
	}
	if err := os.WriteFile(ipForwardPath, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("turn on net.ipv4.ip_forward: %w", err)
	}
	log.Info("turned on net.ipv4.ip_forward (network_forwarding: auto)")
	return nil
}

// sweepVeths removes the host-side veths starting with prefix that a dead
// gateway of the same state_dir left: every environment of that state_dir
// is this process's. Other gateways' veths are left alone.
// Those named in keep (environments to adopt) stay.
func sweepVeths(prefix string, keep []string, log *slog.Logger) {
	links, _ := netlink.LinkList()
	for _, l := range links {
		if ownVeth(l, prefix) && !slices.Contains(keep, l.Attrs().Name) {
			if err := netlink.LinkDel(l); err != nil {
				log.Warn("sweep stale veth", "link", l.Attrs().Name, "err", err)
			}
		}
	}
}

// lease is one environment's point-to-point pair of the pool, and what
// goes with her: her veth, her firewall elements, the drops reported.
type lease struct {
	n      *Network
	i      int
	host   netip.Addr // the host end's address (her gateway)
	tenant netip.Addr // eth0's
	veth   string     // the host end's name

	who     string               // her tenant name, for OnDrop
	env     string               // her environment's name, for OnDrop
	drops   map[dropKey]struct{} // destinations reported (Network.mu)
	plugged bool                 // the veth is hers to delete
	remove  func() error         // her firewall elements, once added
	once    sync.Once            // end runs once
}

// pair is the lease of pair i (not taken).
func (n *Network) pair(i int) *lease {
	off := u32(n.pool.Addr()) + uint32(2*i)
	host := netip.AddrFrom4([4]byte(be32(off)))
	return &lease{n: n, i: i, host: host, tenant: host.Next(), veth: fmt.Sprintf("%s%d", n.names.veth, i)}
}

// lease takes a free pair of the pool for the tenant's environment env.
func (n *Network) lease(tenant, env string) (*lease, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, used := range n.pairs {
		if !used {
			return n.take(i, tenant, env), nil
		}
	}
	return nil, fmt.Errorf("network pool %s is exhausted (%d environments)", n.pool, len(n.pairs))
}

// take marks pair i used for the tenant's environment env (n.mu held).
func (n *Network) take(i int, tenant, env string) *lease {
	l := n.pair(i)
	l.who, l.env = tenant, env
	n.pairs[i] = true
	n.live[l.tenant] = l
	return l
}

// end undoes what was made for her, last first: her firewall elements,
// her conntrack entries and veth, her pair. It runs once.
func (l *lease) end() {
	l.once.Do(func() {
		if l.remove != nil {
			if err := l.remove(); err != nil {
				l.n.log.Warn("remove environment's firewall elements", "tenant", l.who, "err", err)
			}
		}
		if l.plugged {
			forgetFlows(l.tenant)
			l.unplug()
		}
		l.n.mu.Lock()
		l.n.pairs[l.i] = false
		delete(l.n.live, l.tenant)
		l.n.mu.Unlock()
	})
}

// RemoveNetwork removes what a gateway named name (NetworkOptions.Name)
// left on the host: its nftables table and veths. For a state_dir whose
// gateway is gone for good and whose environments have ended (a test's);
// a gateway's own start sweeps them otherwise.
func RemoveNetwork(name string) error {
	names := namesFor(name)
	sweepVeths(names.veth, nil, slog.New(slog.DiscardHandler))
	c, err := nftables.New()
	if err != nil {
		return err
	}
	c.DelTable(&nftables.Table{Name: names.table, Family: nftables.TableFamilyINet})
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nftables: delete table inet %s: %w", names.table, err)
	}
	return nil
}
