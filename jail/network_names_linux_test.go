package jail_test

import (
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// TestNetworkNamesPerGateway: a second gateway (another state_dir, or a
// test) opening its network used to delete the live gateway's nftables
// table "jailgate" and every "jg*" veth. Now each sweeps only its own.
func TestNetworkNamesPerGateway(t *testing.T) {
	jailtest.RequireRoot(t)
	for _, name := range []string{"0123456789ab", "x"} {
		if table, veth := jail.NetNames(name); len(veth)+7 > 15 || table != "jailgate-"+name {
			t.Errorf("NetNames(%q) = %s, %s: a /8 pool's veth names would not fit IFNAMSIZ", name, table, veth)
		}
	}
	liveName := testNetName()
	live, err := jail.OpenNetwork(jail.NetworkOptions{Name: liveName})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	table, prefix := jail.NetNames(liveName)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: prefix + "9999"}, PeerName: prefix + "p"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	defer netlink.LinkDel(veth)

	other, err := jail.OpenNetwork(jail.NetworkOptions{Name: testNetName()})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	if tab, err := conn.ListTableOfFamily(table, nftables.TableFamilyINet); err != nil || tab == nil {
		t.Errorf("another gateway's start removed the live table %s: %v", table, err)
	}
	if _, err := netlink.LinkByName(veth.Name); err != nil {
		t.Errorf("another gateway's start removed the live veth %s: %v", veth.Name, err)
	}
}
