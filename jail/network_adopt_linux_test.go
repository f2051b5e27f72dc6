package jail_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// TestNetworkAdopt: a nat environment outlives its gateway's Network (a
// Detach, as an upgrade does) and a second Network of the same name with
// Keep naming her veth: the start-time sweep leaves her veth, the table
// replaced at start carries her elements (she reaches the upstream before
// she is adopted), adopt applies the current spec (a new egress.allow
// opens) and takes her pair (a new environment gets other addresses), and
// the returned end removes her veth and gives the pair back.
func TestNetworkAdopt(t *testing.T) {
	s, n, name := natSupervisorNamed(t)
	fakeInternet(t)
	spec := newSpec(t, "alice")
	spec.Network = jail.NetworkNAT
	alice := environment(t, s, "adopt-alice", spec)
	if !reaches(alice, upstreamAddr+":80") {
		t.Fatal("she does not reach the upstream before the restart")
	}
	addr := envAddr(t, alice)
	_, prefix := jail.NetNames(name)
	veth := ownVeth(t, prefix)

	n.Detach() // the old gateway lets go; its table and her veth stay
	n2, err := jail.OpenNetwork(jail.NetworkOptions{Name: name, Forwarding: true, Keep: []string{veth}})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Detach() // the first Network's Close removes the table at the end
	if _, err := netlink.LinkByName(veth); err != nil {
		t.Fatalf("the sweep removed the kept veth %s: %v", veth, err)
	}
	if !reaches(alice, upstreamAddr+":80") {
		t.Error("she lost the upstream when the new gateway replaced the table")
	}
	if reaches(alice, metadataAddr+":80") {
		t.Error("she reaches the metadata service after the table was replaced")
	}

	now := *spec // the current configuration opens a destination for her
	now.Egress.Allow = []jail.EgressRule{{Prefix: netip.MustParsePrefix(private10 + "/32"), PortLo: 8080, PortHi: 8080}}
	now.Limits.NetRate = 50_000_000 // none at her start: the adopting side applies the config's now
	end, err := n2.Adopt(veth, "adopted", addr, nil, &now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n2.Adopt(veth, "adopted", addr, nil, &now); err == nil {
		t.Error("her pair was adopted twice")
	}
	for dst, want := range map[string]bool{upstreamAddr + ":80": true, private10 + ":8080": true,
		private10 + ":8081": false, metadataAddr + ":80": false} {
		if got := reaches(alice, dst); got != want {
			t.Errorf("adopted, she reaches %s: %v, want %v", dst, got, want)
		}
	}

	s2, err := jail.New(jail.Options{CgroupPrefix: jailtest.CgroupPrefix(t.TempDir()), KillGrace: 200 * time.Millisecond, Network: n2})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	bobSpec := newSpec(t, "bob")
	bobSpec.Network = jail.NetworkNAT
	bob := environment(t, s2, "adopt-bob", bobSpec)
	if got := envAddr(t, bob); got == addr {
		t.Errorf("a new environment got the adopted one's address %s", got)
	}
	if !reaches(bob, upstreamAddr+":80") {
		t.Error("a new environment next to the adopted one does not reach the upstream")
	}
	if got := n2.LeasedPairs(); got != 2 {
		t.Errorf("%d pairs leased, want 2 (adopted + new)", got)
	}
	end()
	if _, err := netlink.LinkByName(veth); err == nil {
		t.Errorf("the adopted environment's end left her veth %s", veth)
	}
	if got := n2.LeasedPairs(); got != 1 {
		t.Errorf("%d pairs leased after her end, want 1", got)
	}
}

// ownVeth is the one host-side veth starting with prefix.
func ownVeth(t *testing.T, prefix string) string {
	t.Helper()
	links, _ := netlink.LinkList()
	var names []string
	for _, l := range links {
		if l.Type() == "veth" && strings.HasPrefix(l.Attrs().Name, prefix) {
			names = append(names, l.Attrs().Name)
		}
	}
	if len(names) != 1 {
		t.Fatalf("veths %v with prefix %s, want one", names, prefix)
	}
	return names[0]
}

// TestNetworkDropEvents: an environment's connection attempts to a
// destination the policy drops are reported once (OnDrop), however often
// she tries, with the destination and protocol, and attributed to her;
// another destination is reported on its own.
func TestNetworkDropEvents(t *testing.T) {
	type drop struct {
		tenant, env string
		dst         netip.AddrPort
		proto       string
	}
	drops := make(chan drop, 100)
	jailtest.RequireRoot(t)
	restoreIPForward(t)
	n, err := jail.OpenNetwork(jail.NetworkOptions{Name: testNetName(), Forwarding: true,
		OnDrop: func(tenant, env string, dst netip.AddrPort, proto string) { drops <- drop{tenant, env, dst, proto} }})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	s, err := jail.New(jail.Options{CgroupPrefix: jailtest.CgroupPrefix(t.TempDir()), KillGrace: 200 * time.Millisecond, Network: n})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fakeInternet(t)
	spec := newSpec(t, "alice")
	spec.Network = jail.NetworkNAT
	alice := environment(t, s, "drop-alice", spec)
	for range 20 {
		if reachesWithin(alice, metadataAddr+":80", 100*time.Millisecond) {
			t.Fatal("she reaches the metadata service")
		}
	}
	want := drop{tenant: "alice", dst: netip.MustParseAddrPort(metadataAddr + ":80"), proto: "tcp"}
	select {
	case d := <-drops:
		if d.env == "" {
			t.Errorf("drop event without her environment: %+v", d)
		}
		d.env = ""
		if d != want {
			t.Errorf("drop event %+v, want %+v", d, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no drop event after 20 dropped connection attempts")
	}
	select {
	case d := <-drops:
		t.Errorf("a second drop event for the same destination: %+v", d)
	case <-time.After(2 * time.Second):
	}
	reachesWithin(alice, private192+":80", 300*time.Millisecond) // another destination: its own event
	select {
	case d := <-drops:
		if d.dst != netip.MustParseAddrPort(private192+":80") {
			t.Errorf("drop event %+v, want %s:80", d, private192)
		}
	case <-time.After(5 * time.Second):
		t.Error("no drop event for a second destination")
	}
}

// TestNetworkAdoptAfterDetach is TestNetworkAdopt through the
// Supervisor, as serve restarts: her environment (linger) outlives the
// Supervisor and the Network, both Detached; the next gateway keeps the
// veth her record names, its Supervisor adopts her with the current spec
// (a new egress.allow), and she reaches what it allows and no more; its
// Close ends her and leaves no veth and no leased pair.
func TestNetworkAdoptAfterDetach(t *testing.T) {
	opts := durableOptions(t)
	restoreIPForward(t)
	fakeInternet(t)
	name := testNetName()
	n1, err := jail.OpenNetwork(jail.NetworkOptions{Name: name, Forwarding: true})
	if err != nil {
		t.Fatal(err)
	}
	opts.Network = n1
	s1, err := jail.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	spec := newSpec(t, "gail")
	spec.Network, spec.Linger = jail.NetworkNAT, time.Hour
	e, err := s1.Environment(context.Background(), "tenant/gail", spec)
	if err != nil {
		t.Fatal(err)
	}
	if !reaches(e, upstreamAddr+":80") {
		t.Fatal("she does not reach the upstream before the restart")
	}
	e.Release()
	s1.Detach()
	n1.Detach()

	recs, _ := jail.ReadRecords(opts.RecordDir)
	if len(recs) != 1 || recs[0].Veth == "" {
		t.Fatalf("records %+v, want one naming her veth", recs)
	}
	veth := recs[0].Veth
	n2, err := jail.OpenNetwork(jail.NetworkOptions{Name: name, Forwarding: true, Keep: []string{veth}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.Close() })
	opts.Network = n2
	s2, err := jail.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	now := *spec
	now.Egress.Allow = []jail.EgressRule{{Prefix: netip.MustParsePrefix(private10 + "/32"), PortLo: 8080, PortHi: 8080}}
	now.Limits.NetRate = 50_000_000 // none at her start: the adopting side applies the config's now
	if n := s2.Adopt(context.Background(), func(context.Context, *jail.EnvRecord) (*jail.EnvSpec, error) {
		c := now
		return &c, nil
	}); n != 1 {
		t.Fatalf("adopted %d environments, want 1", n)
	}
	e2 := environment(t, s2, "tenant/gail", &now)
	if rate := tbfRate(t, veth); rate != 50_000_000/8 {
		t.Errorf("her veth's tbf rate after adoption: %d bytes/s, want the config's 50Mbit (%d)", rate, 50_000_000/8)
	}
	for dst, want := range map[string]bool{upstreamAddr + ":80": true, private10 + ":8080": true,
		private10 + ":8081": false, metadataAddr + ":80": false} {
		if got := reaches(e2, dst); got != want {
			t.Errorf("adopted, she reaches %s: %v, want %v", dst, got, want)
		}
	}
	e2.Release()
	s2.Close()
	if _, err := netlink.LinkByName(veth); err == nil {
		t.Errorf("her veth %s outlived the Supervisor's Close", veth)
	}
	if got := n2.LeasedPairs(); got != 0 {
		t.Errorf("%d pairs leased after Close, want 0", got)
	}
}

// tbfRate is the rate in bytes per second of the tbf at the root of
// link's egress, 0 without one.
func tbfRate(t *testing.T, link string) uint64 {
	t.Helper()
	l, err := netlink.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	qs, err := netlink.QdiscList(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if tbf, ok := q.(*netlink.Tbf); ok && q.Attrs().Parent == netlink.HANDLE_ROOT {
			return tbf.Rate
		}
	}
	return 0
}
