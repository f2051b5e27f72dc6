package jail_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// The fake internet's addresses (jailtest.FakeInternet).
const (
	upstreamAddr = jailtest.UpstreamAddr
	metadataAddr = jailtest.MetadataAddr
	private10    = jailtest.Private10
	private192   = jailtest.Private192
)

func fakeInternet(t *testing.T) string                   { return jailtest.FakeInternet(t) }
func inNetns(t *testing.T, ns string, open func() error) { jailtest.InNetns(t, ns, open) }
func greet(l net.Listener, msg string)                   { jailtest.Greet(l, msg) }

// natSupervisor opens the host network (ip_forward turned on, and put
// back when the test ends) and a Supervisor using it.
func natSupervisor(t *testing.T) (*jail.Supervisor, *jail.Network) {
	t.Helper()
	s, n, _ := natSupervisorNamed(t)
	return s, n
}

// natSupervisorNamed is natSupervisor, with the network's name.
func natSupervisorNamed(t *testing.T) (*jail.Supervisor, *jail.Network, string) {
	t.Helper()
	jailtest.RequireRoot(t)
	restoreIPForward(t)
	name := testNetName()
	n, err := jail.OpenNetwork(jail.NetworkOptions{Name: name, Forwarding: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	s, err := jail.New(jail.Options{CgroupPrefix: jailtest.CgroupPrefix(t.TempDir()), KillGrace: 200 * time.Millisecond, Network: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, n, name
}

// reaches reports whether a TCP connection from inside env to addr opens
// (Env.Dial connects from her namespace, as ssh -L does).
func reaches(env jail.Env, addr string) bool { return reachesWithin(env, addr, 1500*time.Millisecond) }

// reachesWithin is reaches, giving up after d.
func reachesWithin(env jail.Env, addr string, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	c, err := env.Dial(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// envAddr is env's eth0 address, read inside from /proc/net/fib_trie.
func envAddr(t *testing.T, env jail.Env) string {
	t.Helper()
	out := sh(t, env, "cat /proc/net/fib_trie")
	for _, m := range regexp.MustCompile(`\|-- ([0-9.]+)\n\s+/32 host LOCAL`).FindAllStringSubmatch(out, -1) {
		if !strings.HasPrefix(m[1], "127.") {
			return m[1]
		}
	}
	t.Fatalf("no eth0 address in her fib_trie:\n%s", out)
	return ""
}

// TestNetworkNAT is the acceptance: a nat tenant reaches the
// (fake) internet, and neither the host, the metadata service, private
// ranges routed via the host, nor another tenant; egress.allow opens
// exactly its destination and port; a none tenant reaches nothing.
func TestNetworkNAT(t *testing.T) {
	s, n := natSupervisor(t)
	fakeInternet(t)
	hostL, err := net.Listen("tcp", "0.0.0.0:0") // a host service on every address
	if err != nil {
		t.Fatal(err)
	}
	defer hostL.Close()
	go greet(hostL, "host\n")
	hostPort := hostL.Addr().(*net.TCPAddr).Port

	aliceSpec := newSpec(t, "alice")
	aliceSpec.Network = jail.NetworkNAT
	aliceSpec.Egress.Allow = []jail.EgressRule{{Prefix: netip.MustParsePrefix(private10 + "/32"), PortLo: 8080, PortHi: 8080}}
	alice := environment(t, s, "nat-alice", aliceSpec)
	bobSpec := newSpec(t, "bob")
	bobSpec.Network = jail.NetworkNAT
	bob := environment(t, s, "nat-bob", bobSpec)

	if got := sh(t, alice, "bash -c 'exec 3<>/dev/tcp/"+upstreamAddr+"/80; cat <&3'"); got != "upstream\n" {
		t.Fatalf("her shell read %q from %s:80, want upstream", got, upstreamAddr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bobL, err := bob.Listen(ctx, "tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bobL.Close()
	go greet(bobL, "bob\n")
	bobAt := net.JoinHostPort(envAddr(t, bob), itoa(bobL.Addr().(*net.TCPAddr).Port))

	aliceAddr, _ := netip.ParseAddr(envAddr(t, alice))
	if !n.Pool().Contains(aliceAddr) {
		t.Fatalf("her address %s is not in the pool %s", aliceAddr, n.Pool())
	}
	hostEnd := aliceAddr.Prev().String() // her /31's other end: the host's veth
	cases := []struct {
		env  jail.Env
		addr string
		want bool
	}{
		{alice, upstreamAddr + ":80", true},
		{alice, net.JoinHostPort(primaryHostAddr(t), itoa(hostPort)), false},
		{alice, net.JoinHostPort(hostEnd, itoa(hostPort)), false},
		{alice, net.JoinHostPort("198.51.100.1", itoa(hostPort)), false},
		{alice, metadataAddr + ":80", false},
		{alice, private192 + ":80", false},
		{alice, private10 + ":80", false},   // allowed is :8080 only
		{alice, private10 + ":8081", false}, // ... and no other port
		{alice, private10 + ":8080", true},  // egress.allow
		{bob, private10 + ":8080", false},   // her allow is hers alone
		{alice, bobAt, false},               // no tenant to tenant
		{bob, upstreamAddr + ":80", true},
	}
	for _, c := range cases {
		who := "alice"
		if c.env == bob {
			who = "bob"
		}
		if got := reaches(c.env, c.addr); got != c.want {
			t.Errorf("%s reaches %s: %v, want %v", who, c.addr, got, c.want)
		}
	}

	none := environment(t, s, "nat-none", newSpec(t, "carol"))
	for _, addr := range []string{upstreamAddr + ":80", net.JoinHostPort(primaryHostAddr(t), itoa(hostPort))} {
		if reaches(none, addr) {
			t.Errorf("a network: none tenant reaches %s", addr)
		}
	}
}

// primaryHostAddr is the address of the host's default-route interface.
func primaryHostAddr(t *testing.T) string {
	t.Helper()
	routes, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() != "0.0.0.0/0" {
			continue
		}
		addrs, _ := netlink.AddrList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: r.LinkIndex}}, netlink.FAMILY_V4)
		if len(addrs) > 0 {
			return addrs[0].IP.String()
		}
	}
	t.Fatal("no default route with an address on this host")
	return ""
}

// restoreIPForward puts net.ipv4.ip_forward back when the test ends (the
// networks it opens turn it on).
func restoreIPForward(t *testing.T) {
	const fwd = "/proc/sys/net/ipv4/ip_forward"
	if old, err := os.ReadFile(fwd); err == nil {
		t.Cleanup(func() { os.WriteFile(fwd, old, 0o644) })
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func testNetName() string { return jailtest.NetName() }
