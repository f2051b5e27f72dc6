package jail_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// The fake internet of the nat tests: a network namespace "upstream"
// reached from the host over a veth (198.51.100.1 on the host's end,
// 198.51.100.10 on its own), holding behind it what a tenant must not
// reach: the cloud metadata address and private destinations that the host
// routes there.
const (
	upstreamAddr = "198.51.100.10"
	metadataAddr = "169.254.169.254"
	private10    = "10.99.0.10"
	private192   = "192.168.77.10"
)

// fakeInternet builds the upstream namespace and its routes, removed when
// the test ends (even on failure), and returns the namespace's name.
func fakeInternet(t *testing.T) string {
	t.Helper()
	var rnd [3]byte
	rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	ns, host, peer := "jgtest-up-"+id, "ups"+id+"h", "ups"+id+"u"
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", ns).Run()
		exec.Command("ip", "link", "del", host).Run()
		for _, a := range []string{metadataAddr, private10, private192} {
			exec.Command("ip", "route", "del", a+"/32", "via", upstreamAddr).Run()
		}
	})
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	ip("link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns)
	ip("addr", "add", "198.51.100.1/24", "dev", host)
	ip("link", "set", host, "up")
	ip("-n", ns, "addr", "add", upstreamAddr+"/24", "dev", peer)
	ip("-n", ns, "link", "set", peer, "up")
	ip("-n", ns, "link", "set", "lo", "up")
	for _, a := range []string{metadataAddr, private10, private192} {
		ip("-n", ns, "addr", "add", a+"/32", "dev", "lo")
		ip("route", "add", a+"/32", "via", upstreamAddr)
	}
	for _, port := range []string{"80", "8080", "8081"} {
		serveIn(t, ns, "0.0.0.0:"+port)
	}
	return ns
}

// serveIn listens on addr inside network namespace ns and greets every
// connection with "upstream".
func serveIn(t *testing.T, ns, addr string) {
	t.Helper()
	var l net.Listener
	inNetns(t, ns, func() (err error) { l, err = net.Listen("tcp", addr); return err })
	t.Cleanup(func() { l.Close() })
	go greet(l, "upstream\n")
}

// inNetns runs open (which makes a socket) in network namespace ns: a
// socket stays in the namespace it was made in.
func inNetns(t *testing.T, ns string, open func() error) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		t.Fatal(err)
	}
	err = open()
	if err := netns.Set(orig); err != nil {
		panic(err) // this thread must not go back to the scheduler in ns
	}
	if err != nil {
		t.Fatal(err)
	}
}

// greet writes msg to every connection l accepts, then closes it.
func greet(l net.Listener, msg string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write([]byte(msg))
		c.Close()
	}
}

// natSupervisor opens the host network (ip_forward turned on, and put
// back when the test ends) and a Supervisor using it.
func natSupervisor(t *testing.T) (*jail.Supervisor, *jail.Network) {
	t.Helper()
	jailtest.RequireRoot(t)
	const fwd = "/proc/sys/net/ipv4/ip_forward"
	if old, err := os.ReadFile(fwd); err == nil {
		t.Cleanup(func() { os.WriteFile(fwd, old, 0o644) })
	}
	n, err := jail.OpenNetwork(jail.NetworkOptions{Name: testNetName(), Forwarding: true})
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
	return s, n
}

// reaches reports whether a TCP connection from inside env to addr opens
// (Env.Dial connects from her namespace, as ssh -L does).
func reaches(env jail.Env, addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
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

func itoa(n int) string { return strconv.Itoa(n) }

// testNetName is a fresh NetworkOptions.Name: a test's table and veths are
// its own, never a live gateway's or another test's.
func testNetName() string {
	var rnd [4]byte
	rand.Read(rnd[:])
	return "test-" + hex.EncodeToString(rnd[:])
}
