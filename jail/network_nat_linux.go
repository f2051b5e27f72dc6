package jail

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// natNet is what the init needs to build eth0 (initConfig.NAT).
type natNet struct {
	Address string `json:"address"` // eth0's address, a /31 (CIDR)
	Gateway string `json:"gateway"` // the host end of the pair: her default route
	MTU     int    `json:"mtu"`     // the uplink's
	Resolv  string `json:"resolv"`  // the content of her /etc/resolv.conf
}

// Where the host's resolvers are listed: resolv.conf, and systemd-resolved's
// upstreams when resolv.conf names only its loopback stub (127.0.0.53).
var (
	hostResolvConf     = "/etc/resolv.conf"
	resolvedResolvConf = "/run/systemd/resolve/resolv.conf"
)

// setupNAT is NetworkNAT's setup from outside: a pair of the pool, a veth
// pair whose far end is eth0 in the init's network namespace, the host
// end addressed and up, and her elements in the firewall. Everything it
// makes goes with the environment: on a failed start through undo, at
// its end through the spec's OnEnd (the veth goes with the namespace too).
func setupNAT(s *starting) error {
	n := s.e.sup.opts.Network
	switch {
	case n == nil:
		return errors.New("network: nat: the host network is not set up (jailgate serve does it at start; see its log)")
	case n.fwdErr != nil:
		return n.fwdErr
	}
	l, err := n.lease(s.e.spec.Tenant, s.e.name)
	if err != nil {
		return err
	}
	if err := l.plug(s.e.cmd.Process.Pid, n.mtu); err != nil {
		l.end()
		return err
	}
	l.plugged = true
	if r := s.e.spec.Limits.NetRate; r > 0 {
		if err := limitRate(l.veth, s.e.cmd.Process.Pid, r); err != nil { // goes with the veth
			l.end()
			return err
		}
	}
	dns := s.e.spec.DNS
	if len(dns) == 0 {
		dns = hostResolvers()
	}
	if l.remove, err = n.fw.addTenant(l.veth, l.tenant, &s.e.spec, dns); err != nil {
		l.end()
		return err
	}
	s.veth = l.veth // for her record: the next gateway adopts it (Network.adopt)
	s.nat = &natNet{Address: netip.PrefixFrom(l.tenant, 31).String(), Gateway: l.host.String(), MTU: n.mtu,
		Resolv: resolvConf(dns)}
	s.undo = append(s.undo, l.end)
	onEnd := s.e.spec.OnEnd
	s.e.spec.OnEnd = func() {
		l.end()
		if onEnd != nil {
			onEnd()
		}
	}
	return nil
}

// plug creates the veth pair: the host end l.veth, the other end eth0
// made directly in the network namespace of pid, then addresses the host
// end and brings it up.
func (l *lease) plug(pid, mtu int) error {
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.veth, MTU: mtu}, PeerName: "eth0",
		PeerNamespace: netlink.NsPid(pid)}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s (eth0 in the environment): %w", l.veth, err)
	}
	addr := &netlink.Addr{IPNet: netipNet(netip.PrefixFrom(l.host, 31))}
	if err := netlink.AddrAdd(veth, addr); err != nil {
		l.unplug()
		return fmt.Errorf("address %s on %s: %w", addr, l.veth, err)
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		l.unplug()
		return fmt.Errorf("%s up: %w", l.veth, err)
	}
	return nil
}

// unplug deletes the host end, and with it the pair (if the namespace has
// not taken it already).
func (l *lease) unplug() {
	if link, err := netlink.LinkByName(l.veth); err == nil {
		netlink.LinkDel(link)
	}
}

// forgetFlows deletes the host's conntrack entries from addr: her
// connections end with her, and the next environment given her pair
// starts with none of them (nor does a closed connection's TIME_WAIT
// entry count against the host's conntrack table for two minutes).
func forgetFlows(addr netip.Addr) {
	f := &netlink.ConntrackFilter{}
	if f.AddIP(netlink.ConntrackOrigSrcIP, net.IP(addr.AsSlice())) == nil {
		netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, f)
	}
}

// hostResolvers are the nameservers of the host's resolv.conf, or
// systemd-resolved's upstreams when it lists only loopback stubs, which
// are unreachable from her namespace.
func hostResolvers() []netip.Addr {
	for _, path := range []string{hostResolvConf, resolvedResolvConf} {
		var out []netip.Addr
		for _, a := range nameservers(path) {
			if !a.IsLoopback() && a.Is4() {
				out = append(out, a)
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

// nameservers reads the nameserver lines of a resolv.conf.
func nameservers(path string) []netip.Addr {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return parseNameservers(string(b))
}

// parseNameservers reads the nameserver lines of a resolv.conf's content.
func parseNameservers(conf string) []netip.Addr {
	var out []netip.Addr
	for line := range strings.SplitSeq(conf, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

// resolvConf is her /etc/resolv.conf.
func resolvConf(dns []netip.Addr) string {
	var b strings.Builder
	b.WriteString("# written by jailgate (network: nat)\n")
	for _, a := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	return b.String()
}

// netipNet converts a prefix, keeping its address (not masked).
func netipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}
