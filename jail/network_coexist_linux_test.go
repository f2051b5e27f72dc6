package jail_test

import (
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// TestNetworkNextToDocker: on a host with Docker's iptables-nft rules
// (table ip filter, chain FORWARD with policy drop), a nat tenant does not
// reach the internet, whatever jailgate's own table accepts: another base
// chain's drop is final. OpenNetwork says so, naming the chain and the
// rules to add to DOCKER-USER with this gateway's veth prefix; once they
// are added (as iptables-nft encodes them) the warning is gone, she
// reaches the upstream, and jailgate's own policy still keeps the
// metadata service, private ranges and the host out of her reach.
func TestNetworkNextToDocker(t *testing.T) {
	jailtest.RequireRoot(t)
	restoreIPForward(t)
	fakeInternet(t)
	name := testNetName()
	veth := jail.VethPrefix(name)
	docker := jailtest.FakeDocker(t, veth)
	logFile, err := os.Create(filepath.Join(t.TempDir(), "log")) // the Network's goroutines write to it too
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	n, err := jail.OpenNetwork(jail.NetworkOptions{Name: name, Forwarding: true,
		Logger: slog.New(slog.NewTextHandler(logFile, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	b, _ := os.ReadFile(logFile.Name())
	logs := string(b)
	for _, want := range []string{"level=WARN", "ip filter FORWARD",
		"iptables -I DOCKER-USER -i " + veth + "+ -j ACCEPT",
		"iptables -I DOCKER-USER -o " + veth + "+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		`nft insert rule ip filter DOCKER-USER iifname \"` + veth + `*\" accept`,
		`nft insert rule ip filter DOCKER-USER oifname \"` + veth + `*\" ct state related,established accept`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("OpenNetwork's log next to Docker lacks %q:\n%s", want, logs)
		}
	}
	s, err := jail.New(jail.Options{CgroupPrefix: jailtest.CgroupPrefix(t.TempDir()), KillGrace: 200 * time.Millisecond, Network: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	spec := newSpec(t, "alice")
	spec.Network = jail.NetworkNAT
	alice := environment(t, s, "dock-alice", spec)
	if reaches(alice, upstreamAddr+":80") {
		t.Fatalf("she reaches %s:80 through Docker's FORWARD policy drop: the fake Docker table does not drop", upstreamAddr)
	}

	docker.Allow(t, veth, true) // the iptables commands of the warning
	if blocks, err := jail.ForwardBlocks(name, ""); err != nil || len(blocks) > 0 {
		t.Errorf("with the fix in DOCKER-USER, ForwardBlocks = %v, %v; want none", blocks, err)
	}
	hostL, err := net.Listen("tcp", "0.0.0.0:0") // a host service on every address
	if err != nil {
		t.Fatal(err)
	}
	defer hostL.Close()
	go greet(hostL, "host\n")
	hostPort := itoa(hostL.Addr().(*net.TCPAddr).Port)
	hostEnd := netip.MustParseAddr(envAddr(t, alice)).Prev().String()
	for _, c := range []struct {
		addr string
		want bool
	}{
		{upstreamAddr + ":80", true},
		{metadataAddr + ":80", false},
		{private10 + ":80", false},
		{net.JoinHostPort(primaryHostAddr(t), hostPort), false},
		{net.JoinHostPort(hostEnd, hostPort), false},
	} {
		if got := reaches(alice, c.addr); got != c.want {
			t.Errorf("with the fix, she reaches %s: %v, want %v", c.addr, got, c.want)
		}
	}
}
