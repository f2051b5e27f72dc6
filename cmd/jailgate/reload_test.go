//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/statedir"
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

// configWithCarol returns the path of g's config and its text with a
// third tenant, carol, added (her key and rootfs made); the file itself is
// left as it is.
func (g *e2eGateway) configWithCarol(t *testing.T) (path, added string) {
	t.Helper()
	path = filepath.Join(g.dir, "jailgate.yaml")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sshKeygen(t, filepath.Join(g.dir, "carol"))
	return path, string(orig) + fmt.Sprintf("  carol:\n    keys_file: %s.pub\n    rootfs: %s\n",
		filepath.Join(g.dir, "carol"), jailtest.Rootfs(t, "carol"))
}

// TestE2EReload: SIGHUP applies a valid config at once (a new tenant and
// a new key log in), keeps the old one on a broken config (naming the
// line), and a removed tenant's or key's login is refused and her live
// session ends.
func TestE2EReload(t *testing.T) {
	g := startServe(t)
	path, added := g.configWithCarol(t)
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

	// 1. Add carol, and a second key of alice's.
	os.WriteFile(path, []byte(added), 0o600)
	alicePub := filepath.Join(g.dir, "alice.pub")
	aliceKeys, _ := os.ReadFile(alicePub)
	sshKeygen(t, filepath.Join(g.dir, "alice2"))
	second, _ := os.ReadFile(filepath.Join(g.dir, "alice2.pub"))
	os.WriteFile(alicePub, append(append([]byte{}, aliceKeys...), second...), 0o644)
	loginAlice2 := func() (string, int) {
		out, _, code := g.openssh(t, "ssh", "", append(g.clientOpts("alice2", "-p"), "alice@127.0.0.1", "echo second key")...)
		return out, code
	}
	if _, code := loginAlice2(); code == 0 {
		t.Error("alice's second key logged in before the reload")
	}
	// check --diff sees both: the YAML's new tenant, and the key added to
	// alice's keys_file (serve saved her settings as they were in force).
	out, err := exec.Command(binary(t), "check", "--config", path, "--diff").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "+ tenant carol") {
		t.Errorf("check --diff: %v\n%s", err, out)
	}
	if pub, _, _, _, perr := gossh.ParseAuthorizedKey(second); perr != nil {
		t.Fatal(perr)
	} else if want := "~ alice: + key:          " + gossh.FingerprintSHA256(pub); !strings.Contains(string(out), want) {
		t.Errorf("check --diff does not show alice's new key (%q):\n%s", want, out)
	}
	g.cmd.Process.Signal(unix.SIGHUP)
	g.waitLog(t, "tenants=3")
	if out, errOut, code := g.ssh(t, "carol", "", "hostname"); code != 0 || out != "carol-lab\n" {
		t.Errorf("carol after the reload: %q %q %d", out, errOut, code)
	}
	if out, code := loginAlice2(); code != 0 || out != "second key\n" {
		t.Errorf("alice's second key after the reload: %q %d", out, code)
	}

	// 2. A broken file changes nothing and the log names the line.
	os.WriteFile(path, []byte(added+"  dave: [unclosed\n"), 0o600)
	g.cmd.Process.Signal(unix.SIGHUP)
	g.waitLog(t, `msg="reload rejected" config=`) // the summary line, audited as config.reload (error)
	g.waitLog(t, "previous configuration stays in force")
	if line := fmt.Sprintf("jailgate.yaml:%d: ", strings.Count(added, "\n")+1); !strings.Contains(g.log.String(), line) {
		t.Errorf("the rejected reload does not name dave's line (%s):\n%s", line, g.log.String())
	}
	if out, _, code := g.ssh(t, "carol", "", "echo still"); code != 0 || out != "still\n" {
		t.Errorf("carol after a broken reload: %q %d", out, code)
	}

	// 3. Remove bob, and alice's second key: their logins are refused and
	// bob's live session ends.
	os.WriteFile(alicePub, aliceKeys, 0o644)
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
	if _, code := loginAlice2(); code == 0 {
		t.Error("alice's second key logged in after its removal")
	}
	if out, _, code := g.ssh(t, "alice", "", "echo first key"); code != 0 || out != "first key\n" {
		t.Errorf("alice's first key after the second's removal: %q %d", out, code)
	}
}

// TestReloadCommand: `jailgate reload` reaches the running server through
// its admin socket (0600, in state_dir) and reports what happened: a new
// tenant, who can then log in; a broken file, rejected with its line while
// the old tenants still log in; a file the server does not serve. A second
// server on the same state_dir is refused, and once the server has stopped
// the socket is gone and reload says no server runs.
func TestReloadCommand(t *testing.T) {
	g := startServe(t)
	path, added := g.configWithCarol(t)
	sock := statedir.New(g.stateDir).AdminSocket()
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket %s: %v %v, want mode 0600", sock, fi, err)
	}

	// A new tenant: in force when reload returns, no SIGHUP, no restart.
	os.WriteFile(path, []byte(added), 0o600)
	out, errOut, code := cli(t, "reload", "--config", path)
	if code != 0 || !strings.HasPrefix(out, "reloaded: "+path+", 3 tenants\n") || !strings.Contains(out, "\n  + tenant carol\n") {
		t.Fatalf("reload adding carol: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if out, errOut, code := g.ssh(t, "carol", "", "hostname"); code != 0 || out != "carol-lab\n" {
		t.Errorf("carol after jailgate reload: %q %q %d", out, errOut, code)
	}

	// A broken file: exit 2, its line named, the old configuration kept.
	broken := added + "  dave: [unclosed\n"
	os.WriteFile(path, []byte(broken), 0o600)
	out, errOut, code = cli(t, "reload", "--config", path)
	brokenLine := fmt.Sprintf("%s:%d:", path, strings.Count(added, "\n")+1) // dave's line
	if code != 2 || out != "" || !strings.Contains(errOut, brokenLine) ||
		!strings.HasSuffix(errOut, "reload rejected: the previous configuration stays in force\n") {
		t.Errorf("reload of a broken file: exit %d, stdout %q, stderr %q; want exit 2 naming %s", code, out, errOut, brokenLine)
	}
	g.waitLog(t, "reload rejected: "+brokenLine)
	for _, u := range []string{"alice", "carol"} {
		if out, _, code := g.ssh(t, u, "", "echo still"); code != 0 || out != "still\n" {
			t.Errorf("%s after a rejected reload: %q %d", u, out, code)
		}
	}
	os.WriteFile(path, []byte(added), 0o600)
	if out, errOut, code := cli(t, "reload", "--config", path); code != 0 || !strings.HasSuffix(out, "\n  no change\n") {
		t.Errorf("reload of the file in force: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// Another file on the same state_dir is not what this server serves.
	other := filepath.Join(g.dir, "other.yaml")
	os.WriteFile(other, []byte(added), 0o600)
	if out, errOut, code := cli(t, "reload", "--config", other); code != 1 || !strings.Contains(errOut, "this server serves "+path+", not "+other) {
		t.Errorf("reload of another file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// A second server on this state_dir stops before it listens.
	second, err := exec.Command(binary(t), "serve", "--config", other).CombinedOutput()
	if err == nil || !strings.Contains(string(second), "another jailgate server is running") {
		t.Errorf("a second serve on the same state_dir: %v\n%s", err, second)
	}

	g.cmd.Process.Signal(unix.SIGTERM)
	g.cmd.Wait()
	if _, err := os.Lstat(sock); err == nil {
		t.Error("the admin socket outlived the server")
	}
	if out, errOut, code := cli(t, "reload", "--config", path); code != 1 || !strings.Contains(errOut, "no jailgate server is running for state_dir "+g.stateDir) {
		t.Errorf("reload with the server stopped: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestReloadNoServer: with no server on the config's state_dir, reload
// says so and exits 1; a file it cannot read is an error too.
func TestReloadNoServer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "jailgate.yaml")
	os.WriteFile(path, []byte("state_dir: "+dir+"\nusers: [\n"), 0o600) // broken, state_dir still found
	var out, errb bytes.Buffer
	if code := run([]string{"reload", "--config", path}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "jailgate: reload: no jailgate server is running for state_dir "+dir+" (no admin socket") {
		t.Errorf("reload with no server: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"reload", "--config", filepath.Join(dir, "missing.yaml")}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "missing.yaml") {
		t.Errorf("reload of a missing file: exit %d, %q", code, errb.String())
	}
}
