package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/jailgate/jailgate/jail/jailtest"
)

// TestCheckRefusesOverlappingPool: `jailgate check` refuses a
// network_pool that overlaps a host route when a tenant uses nat (it used
// to pass check and fail only at serve), exits 2 and names the route and
// the line; without a nat tenant the same pool passes.
func TestCheckRefusesOverlappingPool(t *testing.T) {
	jailtest.RequireRoot(t)
	var rnd [3]byte
	rand.Read(rnd[:])
	name := "jgt" + hex.EncodeToString(rnd[:]) // a veth: this host's kernel may lack the dummy module
	link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}
	if err := netlink.LinkAdd(link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkDel(link) })
	if err := netlink.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	_, dst, _ := net.ParseCIDR("10.213.7.0/24")
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "alice"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "jailgate.yaml")
	write := func(network string) {
		cfg := "state_dir: " + dir + "/state\nnetwork_pool: 10.213.0.0/16\nusers:\n  alice:\n" +
			"    keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a\"]\n" +
			"    rootfs: " + dir + "/alice\n    network: " + network + "\n"
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("nat")
	var stdout, stderr bytes.Buffer
	code := report(cmdCheck([]string{"--config", path}, &stdout), &stderr)
	want := path + ":2: network_pool: network pool 10.213.0.0/16 overlaps the host route 10.213.7.0/24 (dev " +
		link.Name + "); set network_pool to a free range\n"
	if code != exitUsage || stderr.String() != want {
		t.Errorf("check with an overlapping pool: exit %d, stderr\n%s\nwant exit %d, stderr\n%s", code, stderr.String(), exitUsage, want)
	}

	write("none")
	stdout.Reset()
	stderr.Reset()
	if code := report(cmdCheck([]string{"--config", path}, &stdout), &stderr); code != exitOK {
		t.Errorf("check without a nat tenant: exit %d: %s", code, stderr.String())
	}
}
