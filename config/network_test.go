package config

import (
	"net/netip"
	"testing"

	"github.com/jailgate/jailgate/jail"
)

func TestNetworkSettings(t *testing.T) {
	r := fixture(t)
	c, err := Parse("n.yaml", []byte(r.Replace(`network_pool: 10.200.0.0/16
network_forwarding: auto
defaults:
  network: nat
  dns: [9.9.9.9]
users:
  alice:
    keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a"]
    rootfs: $ROOT/alice
    egress:
      allow: [10.1.2.3:5432, 192.168.0.0/16]
      deny: [203.0.113.0/24:25]
  bob:
    keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl b"]
    rootfs: $ROOT/bob
    network: none
`)))
	if err != nil {
		t.Fatal(err)
	}
	if c.NetworkPool != netip.MustParsePrefix("10.200.0.0/16") || c.NetworkForwarding != ForwardingAuto {
		t.Errorf("pool %v, forwarding %q", c.NetworkPool, c.NetworkForwarding)
	}
	a := c.Users["alice"]
	if a.Network != jail.NetworkNAT || len(a.DNS) != 1 || a.DNS[0].String() != "9.9.9.9" {
		t.Errorf("alice: network %q, dns %v", a.Network, a.DNS)
	}
	want := "nat allow 10.1.2.3/32:5432 allow 192.168.0.0/16 deny 203.0.113.0/24:25 dns [9.9.9.9]"
	if got := NetworkText(a); got != want {
		t.Errorf("NetworkText(alice) = %q, want %q", got, want)
	}
	if b := c.Users["bob"]; b.Network != jail.NetworkNone || NetworkText(b) != "none" {
		t.Errorf("bob: %q", NetworkText(b))
	}
	d, err := Parse("d.yaml", []byte(r.Replace(`users:
  alice:
    keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a"]
    rootfs: $ROOT/alice
`)))
	if err != nil {
		t.Fatal(err)
	}
	if d.NetworkPool.IsValid() || d.NetworkForwarding != ForwardingOff || d.Users["alice"].Network != jail.NetworkNone {
		t.Errorf("defaults: pool %v, forwarding %q, network %q", d.NetworkPool, d.NetworkForwarding, d.Users["alice"].Network)
	}
}
