//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// waitLog waits until the gateway's log contains want.
func (g *e2eGateway) waitLog(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(g.log.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway log never said %q:\n%s", want, g.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestE2EReload: SIGHUP applies a valid config at once (a new tenant logs
// in), keeps the old one on a broken config (naming the line), and a
// removed tenant's login is refused and her live session ends.
func TestE2EReload(t *testing.T) {
	g := startServe(t)
	path := filepath.Join(g.dir, "jailgate.yaml")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Bob has a live session through all of it.
	bob := exec.Command("ssh", append(append(g.clientOpts("bob", "-p"), "bob@127.0.0.1"), "echo ready; exec sleep 1000")...)
	var bobErr syncBuffer
	bob.Stderr = &bobErr
	bobOut, _ := bob.StdoutPipe()
	if err := bob.Start(); err != nil {
		t.Fatal(err)
	}
	defer bob.Process.Kill()
	gatewaytest.Expect(t, bobOut, "ready", 10*time.Second)

	// 1. Add carol.
	sshKeygen(t, filepath.Join(g.dir, "carol"))
	carolRoot := jailtest.Rootfs(t, "carol")
	added := string(orig) + fmt.Sprintf("  carol:\n    keys_file: %s.pub\n    rootfs: %s\n", filepath.Join(g.dir, "carol"), carolRoot)
	os.WriteFile(path, []byte(added), 0o600)
	if out, err := exec.Command(binary(t), "check", "--config", path, "--diff").CombinedOutput(); err != nil || !strings.Contains(string(out), "+ tenant carol") {
		t.Errorf("check --diff: %v\n%s", err, out)
	}
	g.cmd.Process.Signal(unix.SIGHUP)
	g.waitLog(t, "tenants=3")
	if out, errOut, code := g.ssh(t, "carol", "", "hostname"); code != 0 || out != "carol-lab\n" {
		t.Errorf("carol after the reload: %q %q %d", out, errOut, code)
	}

	// 2. A broken file changes nothing and the log names the line.
	os.WriteFile(path, []byte(added+"  dave: [unclosed\n"), 0o600)
	g.cmd.Process.Signal(unix.SIGHUP)
	g.waitLog(t, `msg="reload rejected" config=`) // the summary line, audited as config.reload (error)
	g.waitLog(t, "previous configuration stays in force")
	if !strings.Contains(g.log.String(), "jailgate.yaml:") {
		t.Errorf("the rejected reload does not name file:line:\n%s", g.log.String())
	}
	if out, _, code := g.ssh(t, "carol", "", "echo still"); code != 0 || out != "still\n" {
		t.Errorf("carol after a broken reload: %q %d", out, code)
	}

	// 3. Remove bob: his login is refused and his live session ends.
	without := strings.Replace(added, fmt.Sprintf("  bob:\n    keys_file: %s.pub\n    rootfs: %s\n", filepath.Join(g.dir, "bob"), g.rootfs["bob"]), "", 1)
	if without == added {
		t.Fatalf("could not remove bob from:\n%s", added)
	}
	os.WriteFile(path, []byte(without), 0o600)
	g.cmd.Process.Signal(unix.SIGHUP)
	g.waitLog(t, "session revoked")
	done := make(chan error, 1)
	go func() { done <- bob.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("bob's live session outlived his removal")
	}
	if !strings.Contains(bobErr.String(), "your access was revoked") {
		t.Errorf("bob was not told: %q", bobErr.String())
	}
	if _, _, code := g.ssh(t, "bob", "", "true"); code == 0 {
		t.Error("bob logged in after his removal")
	}
}
