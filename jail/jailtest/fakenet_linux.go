package jailtest

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// The fake internet of the nat tests: a network namespace "upstream"
// reached from the host over a veth (198.51.100.1 on the host's end,
// 198.51.100.10 on its own), holding behind it what a tenant must not
// reach: the cloud metadata address and private destinations that the host
// routes there.
const (
	UpstreamAddr = "198.51.100.10"
	MetadataAddr = "169.254.169.254"
	Private10    = "10.99.0.10"
	Private192   = "192.168.77.10"
)

// FakeInternet builds the upstream namespace and its routes, removed when
// the test ends (even on failure), and returns the namespace's name.
func FakeInternet(t testing.TB) string {
	t.Helper()
	var rnd [3]byte
	rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	ns, host, peer := "jgtest-up-"+id, "ups"+id+"h", "ups"+id+"u"
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", ns).Run()
		exec.Command("ip", "link", "del", host).Run()
		for _, a := range []string{MetadataAddr, Private10, Private192} {
			exec.Command("ip", "route", "del", a+"/32", "via", UpstreamAddr).Run()
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
	ip("-n", ns, "addr", "add", UpstreamAddr+"/24", "dev", peer)
	ip("-n", ns, "link", "set", peer, "up")
	ip("-n", ns, "link", "set", "lo", "up")
	for _, a := range []string{MetadataAddr, Private10, Private192} {
		ip("-n", ns, "addr", "add", a+"/32", "dev", "lo")
		ip("route", "add", a+"/32", "via", UpstreamAddr)
	}
	for _, port := range []string{"80", "8080", "8081"} {
		ServeIn(t, ns, "0.0.0.0:"+port)
	}
	return ns
}

// ServeIn listens on addr inside network namespace ns and greets every
// connection with "upstream".
func ServeIn(t testing.TB, ns, addr string) {
	t.Helper()
	var l net.Listener
	InNetns(t, ns, func() (err error) { l, err = net.Listen("tcp", addr); return err })
	t.Cleanup(func() { l.Close() })
	go Greet(l, "upstream\n")
}

// InNetns runs open (which makes a socket) in network namespace ns: a
// socket stays in the namespace it was made in.
func InNetns(t testing.TB, ns string, open func() error) {
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

// Greet writes msg to every connection l accepts, then closes it.
func Greet(l net.Listener, msg string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write([]byte(msg))
		c.Close()
	}
}

// NetName is a fresh jail.NetworkOptions.Name: a test's nftables table and
// veths are its own, never a live gateway's or another test's.
func NetName() string {
	var rnd [4]byte
	rand.Read(rnd[:])
	return "test-" + hex.EncodeToString(rnd[:])
}
