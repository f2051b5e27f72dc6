//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/statedir"
)

// TestE2ENetworkDropAudit: a network: nat tenant's shell tries the cloud
// metadata service (the fake internet's 169.254.169.254:80) 20 times in a
// row; policy drops every attempt, and the audit log has exactly one
// network.drop event, naming her and that destination.
func TestE2ENetworkDropAudit(t *testing.T) {
	jailtest.RequireRoot(t)
	restoreIPForward(t)
	jailtest.FakeInternet(t)
	g := &e2eGateway{dir: jailtest.SearchableTempDir(t), port: freePort(t), log: &syncBuffer{}, rootfs: map[string]string{}}
	g.stateDir = filepath.Join(g.dir, "state")
	auditLog := filepath.Join(g.dir, "audit.log")
	sshKeygen(t, filepath.Join(g.dir, "alice"))
	g.rootfs["alice"] = jailtest.Rootfs(t, "alice")
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\nstate_dir: %s\naudit_log: %s\nnetwork_forwarding: auto\n"+
		"users:\n  alice:\n    keys_file: %s.pub\n    rootfs: %s\n    network: nat\n",
		g.port, g.stateDir, auditLog, filepath.Join(g.dir, "alice"), g.rootfs["alice"])
	path := filepath.Join(g.dir, "jailgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g.start(t, path)

	// Each attempt: bash's /dev/tcp, given 0.3 s (a dropped SYN hangs).
	try := "(exec 3<>/dev/tcp/" + jailtest.MetadataAddr + "/80) 2>/dev/null & p=$!; sleep 0.3; kill $p 2>/dev/null; wait $p"
	script := "for i in $(echo 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20); do " + try + "; done; echo done"
	if out, errOut, code := g.ssh(t, "alice", "", script); code != 0 || !strings.Contains(out, "done") {
		t.Fatalf("her attempts: exit %d, %q %q", code, out, errOut)
	}
	var drops []string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(auditLog)
		drops = nil
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.Contains(line, `"event":"network.drop"`) {
				drops = append(drops, line)
			}
		}
		if len(drops) > 0 {
			time.Sleep(time.Second) // a second event would be there by now
			continue
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(drops) != 1 {
		t.Fatalf("%d network.drop events, want 1:\n%s", len(drops), strings.Join(drops, "\n"))
	}
	for _, want := range []string{`"tenant":"alice"`, `"dst":"169.254.169.254:80"`, `"proto":"tcp"`, `"env":"`} {
		if !strings.Contains(drops[0], want) {
			t.Errorf("the network.drop event lacks %s: %s", want, drops[0])
		}
	}
}

// TestE2ENetworkAdopt: a nat tenant's environment (linger 1h) outlives a
// clean stop of serve, which leaves its nftables table for her (never
// forwarding her without her policy); the next serve adopts her: she
// reaches the upstream and still not the metadata service.
func TestE2ENetworkAdopt(t *testing.T) {
	jailtest.RequireRoot(t)
	restoreIPForward(t)
	jailtest.FakeInternet(t)
	g := startServeFull(t, "", "network_forwarding: auto\n", "  linger: 1h\n  network: nat\n")
	name := statedir.New(g.stateDir).Hash()
	t.Cleanup(func() { dropTable(name) }) // runs after the gateway's stop: the environment lingered
	// Her shell connects (bash's /dev/tcp) and reads, given 2 seconds.
	read := func(addr string) string {
		t.Helper()
		out, errs, code := g.ssh(t, "alice", "",
			"(exec 3<>/dev/tcp/"+addr+"/80 && cat <&3) 2>/dev/null & p=$!; sleep 2; kill $p 2>/dev/null; wait $p; true")
		if code != 0 {
			t.Fatalf("ssh alice: exit %d: %s", code, errs)
		}
		return out
	}
	if got := read(jailtest.UpstreamAddr); got != "upstream\n" {
		t.Fatalf("before the restart she read %q from the upstream", got)
	}
	g.cmd.Process.Signal(unix.SIGTERM)
	g.cmd.Process.Signal(unix.SIGTERM)
	g.cmd.Wait()
	if st, err := jail.TenantNetStats(name); err != nil || st["alice"].BytesOut == 0 {
		t.Errorf("after the stop her table has %+v (%v); want it left, with her elements", st, err)
	}
	g.start(t, filepath.Join(g.dir, "jailgate.yaml"))
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(g.log.String(), "environment adopted") {
		if time.Now().After(deadline) {
			t.Fatalf("no environment adopted; log:\n%s", g.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := read(jailtest.UpstreamAddr); got != "upstream\n" {
		t.Errorf("adopted, she read %q from the upstream", got)
	}
	if got := read(jailtest.MetadataAddr); got != "" {
		t.Errorf("adopted, she read %q from the metadata service", got)
	}
}

// dropTable deletes the nftables table of the gateway named name, if any.
func dropTable(name string) {
	if conn, err := nftables.New(); err == nil { // README: inet jailgate-HASH
		conn.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "jailgate-" + name})
		conn.Flush()
	}
}
