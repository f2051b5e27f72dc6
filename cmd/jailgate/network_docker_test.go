//go:build linux

package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/statedir"
)

// TestCheckWarnsNextToDocker: on a host with Docker's iptables-nft rules
// (ip filter FORWARD, policy drop), `jailgate check` of a config with a
// nat tenant warns, exit 0, that the chain drops her traffic and prints
// the rules to add to DOCKER-USER for the veths serve would use for this
// state_dir; once they are added (nft's form), the warning is gone.
func TestCheckWarnsNextToDocker(t *testing.T) {
	jailtest.RequireRoot(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "alice"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "jailgate.yaml")
	cfg := "state_dir: " + dir + "/state\nusers:\n  alice:\n" +
		"    keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a\"]\n" +
		"    rootfs: " + dir + "/alice\n    network: nat\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	veth := jail.VethPrefix(statedir.New(dir + "/state").Hash())
	docker := jailtest.FakeDocker(t, veth)
	check := func() string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := report(cmdCheck([]string{"--config", path}, &stdout), &stderr); code != exitOK {
			t.Fatalf("check next to Docker: exit %d: %s", code, stderr.String())
		}
		return stdout.String()
	}
	out := check()
	for _, want := range []string{"warning: nftables chain ip filter FORWARD drops",
		"iptables -I DOCKER-USER -i " + veth + "+ -j ACCEPT; ",
		"iptables -I DOCKER-USER -o " + veth + "+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		`nft insert rule ip filter DOCKER-USER oifname "` + veth + `*" ct state related,established accept`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check next to Docker lacks %q:\n%s", want, out)
		}
	}
	docker.Allow(t, veth, false) // the nft commands of the warning
	if out := check(); strings.Contains(out, "warning") {
		t.Errorf("check warns with the fix in DOCKER-USER:\n%s", out)
	}
}

// TestE2ENextToDocker: serve, on a host with Docker's iptables-nft rules,
// logs at start that ip filter FORWARD drops the nat tenants' traffic,
// with the rules to add for its veths; alice (network: nat) does not
// reach the upstream. Once the logged iptables rules are in DOCKER-USER,
// she does, and jailgate's own policy still keeps the metadata service
// and the host's addresses out of her reach.
func TestE2ENextToDocker(t *testing.T) {
	jailtest.RequireRoot(t)
	restoreIPForward(t)
	jailtest.FakeInternet(t)
	g, path := newE2EGateway(t, "", "network_forwarding: auto\n", "  network: nat\n")
	veth := jail.VethPrefix(statedir.New(g.stateDir).Hash())
	docker := jailtest.FakeDocker(t, veth)
	g.start(t, path)
	for _, want := range []string{`chain="ip filter FORWARD"`, "iptables -I DOCKER-USER -i " + veth + "+ -j ACCEPT; ",
		"iptables -I DOCKER-USER -o " + veth + "+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"} {
		if !strings.Contains(g.log.String(), want) {
			t.Errorf("serve's log next to Docker lacks %q:\n%s", want, g.log.String())
		}
	}
	// What her shell reads from addr:port (bash's /dev/tcp), given 2 s
	// (a dropped SYN hangs).
	read := func(addr, port string) string {
		t.Helper()
		out, errs, code := g.ssh(t, "alice", "", "(exec 3<>/dev/tcp/"+addr+"/"+port+
			" && cat <&3) 2>/dev/null & p=$!; sleep 2; kill $p 2>/dev/null; wait $p; true")
		if code != 0 {
			t.Fatalf("ssh alice: exit %d: %s", code, errs)
		}
		return out
	}
	if got := read(jailtest.UpstreamAddr, "80"); got != "" {
		t.Fatalf("through Docker's FORWARD policy drop she read %q from the upstream", got)
	}
	docker.Allow(t, veth, true)
	if got := read(jailtest.UpstreamAddr, "80"); got != "upstream\n" {
		t.Errorf("with the fix she read %q from the upstream, want upstream", got)
	}
	hostL, err := net.Listen("tcp", "0.0.0.0:0") // a host service on every address
	if err != nil {
		t.Fatal(err)
	}
	defer hostL.Close()
	go jailtest.Greet(hostL, "host\n")
	hostPort := strconv.Itoa(hostL.Addr().(*net.TCPAddr).Port)
	for _, dst := range [][2]string{{jailtest.MetadataAddr, "80"}, {jailtest.Private10, "80"},
		{"198.51.100.1", hostPort}, {primaryAddr(t), hostPort}} {
		if got := read(dst[0], dst[1]); got != "" {
			t.Errorf("with the fix she read %q from %s:%s", got, dst[0], dst[1])
		}
	}
}

// primaryAddr is the host's address on its default route: a UDP socket's
// source toward TEST-NET-1 (no packet is sent).
func primaryAddr(t *testing.T) string {
	t.Helper()
	c, err := net.Dial("udp", "192.0.2.1:9")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
}
