package jail_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/jail"
)

// leakCycles is how many nat environments TestNetworkNATTeardown starts
// and ends.
const leakCycles = 200

// TestNetworkNATTeardown: nat environments started and ended one after
// the other, each with a connection to the fake internet, leave no veth of
// the gateway, no set element but the default deny list, no rule of
// limits.connections, no pair leased and no conntrack entry from the pool.
func TestNetworkNATTeardown(t *testing.T) {
	s, n, name := natSupervisorNamed(t)
	fakeInternet(t)
	table, prefix := jail.NetNames(name)
	base := newSpec(t, "alice")
	base.Network = jail.NetworkNAT
	base.Limits.Connections = 8
	for i := range leakCycles {
		spec := *base
		ended := make(chan struct{})
		spec.OnEnd = func() { close(ended) }
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		env, err := s.Environment(ctx, "leak", &spec)
		cancel()
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if !reaches(env, upstreamAddr+":80") {
			t.Fatalf("cycle %d: she does not reach the upstream", i)
		}
		env.Release()
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatalf("cycle %d: the environment did not end", i)
		}
	}

	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			t.Errorf("link %s is left after %d environments", l.Attrs().Name, leakCycles)
		}
	}
	if got := n.LeasedPairs(); got != 0 {
		t.Errorf("%d pairs of the pool still leased", got)
	}
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	sets, err := conn.GetSets(&nftables.Table{Family: nftables.TableFamilyINet, Name: table})
	if err != nil || len(sets) == 0 {
		t.Fatalf("sets of %s: %v, %v", table, sets, err)
	}
	for _, set := range sets {
		elems, err := conn.GetSetElements(set)
		if err != nil {
			t.Fatal(err)
		}
		if set.Name != "deny" && len(elems) > 0 {
			t.Errorf("set %s keeps %d elements", set.Name, len(elems))
		}
	}
	tbl := &nftables.Table{Family: nftables.TableFamilyINet, Name: table}
	if rules, err := conn.GetRules(tbl, &nftables.Chain{Name: "tenant_conns"}); err != nil || len(rules) > 0 {
		t.Errorf("tenant_conns keeps %d rules (%v)", len(rules), err)
	}
	flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range flows {
		if ip, ok := netipFrom(f.Forward.SrcIP); ok && n.Pool().Contains(ip) {
			t.Errorf("conntrack entry from her pool is left: %s", f)
		}
	}
}

// netipFrom converts an IPv4 net.IP.
func netipFrom(ip net.IP) (a netip.Addr, ok bool) { return netip.AddrFromSlice(ip.To4()) }
