//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/statedir"
)

// TestE2EImageProvisioning drives issue 5's operator story through the
// built binary: build an image with `rootfs from-host --image`, list it,
// fail to remove it while a tenant is configured on it; a tenant on it
// writes a file that outlives a gateway restart, still hers (her id range
// persisted); a tenant added by `jailgate reload` gets her layer at her
// first login and does not see the first one's file; `explain` and
// `check --diff` say what a change does; a removed tenant cannot log in
// and her files stay until `tenant reset`.
func TestE2EImageProvisioning(t *testing.T) {
	jailtest.RequireRoot(t)
	g := &e2eGateway{dir: jailtest.SearchableTempDir(t), port: freePort(t), log: &syncBuffer{}}
	g.stateDir = filepath.Join(g.dir, "state")
	path := filepath.Join(g.dir, "jailgate.yaml")
	user := func(name string, extra string) string {
		sshKeygen(t, filepath.Join(g.dir, name))
		return fmt.Sprintf("  %s:\n    keys_file: %s.pub\n    image: base\n%s", name, filepath.Join(g.dir, name), extra)
	}
	head := fmt.Sprintf("listen: 127.0.0.1:%d\nstate_dir: %s\ndefaults:\n  hostname: \"{user}-lab\"\nusers:\n", g.port, g.stateDir)
	alice := user("alice", "")
	os.WriteFile(path, []byte(head+alice), 0o600)

	if out, errOut, code := cli(t, "rootfs", "from-host", "-q", "--image", "base", "--config", path); code != 0 {
		t.Fatalf("rootfs from-host --image: exit %d %q %q", code, out, errOut)
	}
	// A failed build leaves nothing behind, half-built or temporary.
	junk := filepath.Join(g.dir, "junk.tar.gz")
	os.WriteFile(junk, append([]byte{0x1f, 0x8b}, bytes.Repeat([]byte("not gzip"), 100)...), 0o600)
	if _, _, code := cli(t, "rootfs", "import", "--config", path, "junk", junk); code == 0 {
		t.Error("rootfs import of a corrupt tarball succeeded")
	}
	ents, _ := os.ReadDir(statedir.New(g.stateDir).Images())
	if len(ents) != 1 || ents[0].Name() != "base" {
		t.Errorf("images/ holds %v, want only base (nothing of the failed import)", ents)
	}
	if out, errOut, code := cli(t, "rootfs", "list", "--config", path); code != 0 || !strings.HasPrefix(out, "base") {
		t.Errorf("rootfs list: exit %d %q %q", code, out, errOut)
	}
	if _, errOut, code := cli(t, "rootfs", "rm", "--config", path, "base"); code == 0 || !strings.Contains(errOut, "tenant alice uses it") {
		t.Errorf("rootfs rm of the image alice is on: exit %d %q", code, errOut)
	}

	g.start(t, path)
	if out, errOut, code := g.ssh(t, "alice", "", "echo kept > /root/kept; stat -c %u /root/kept; hostname"); code != 0 || out != "0\nalice-lab\n" {
		t.Fatalf("alice on the image: %q %q %d", out, errOut, code)
	}
	ids, err := os.ReadFile(statedir.New(g.stateDir).IDs())
	if err != nil {
		t.Fatal(err)
	}

	// Dave, added by a reload, has no layer until he logs in.
	dave := user("dave", "    limits: { pids: 100 }\n")
	os.WriteFile(path, []byte(head+alice+dave), 0o600)
	if out, _, code := cli(t, "check", "--diff", "--config", path); code != 0 || out != "+ tenant dave\n" {
		t.Errorf("check --diff adding dave: %q", out)
	}
	if out, errOut, code := cli(t, "reload", "--config", path); code != 0 || !strings.Contains(out, "+ tenant dave") {
		t.Fatalf("reload adding dave: exit %d %q %q", code, out, errOut)
	}
	daveLayer := statedir.New(g.stateDir).Tenant("dave")
	if _, err := os.Stat(daveLayer); err == nil {
		t.Error("dave has a layer before his first login")
	}
	if out, errOut, code := g.ssh(t, "dave", "", "cat /root/kept 2>/dev/null || echo not-there; hostname"); code != 0 || out != "not-there\ndave-lab\n" {
		t.Errorf("dave on the image: %q %q %d", out, errOut, code)
	}
	if _, err := os.Stat(statedir.New(g.stateDir).TenantUpper("dave")); err != nil {
		t.Errorf("dave's layer after his first login: %v", err)
	}
	out, _, code := cli(t, "explain", "--config", path, "dave")
	for _, want := range []string{"image:        base", "hostname:     dave-lab", "pids=100"} {
		if code != 0 || !strings.Contains(out, want+" ") && !strings.Contains(out, want+"\n") {
			t.Errorf("explain dave lacks %q: exit %d\n%s", want, code, out)
		}
	}
	os.WriteFile(path, []byte(head+alice+strings.Replace(dave, "pids: 100", "pids: 200", 1)), 0o600)
	if out, _, _ := cli(t, "check", "--diff", "--config", path); !strings.Contains(out, "~ dave: - limits:") || !strings.Contains(out, "~ dave: + limits:") || !strings.Contains(out, "pids=200") {
		t.Errorf("check --diff changing dave's limits: %q", out)
	}
	os.WriteFile(path, []byte(head+alice+dave), 0o600)

	// A restart: her file is still there, still her root's; so are her ids.
	g.cmd.Process.Signal(unix.SIGTERM)
	if err := g.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v", err)
	}
	g.start(t, path)
	if out, errOut, code := g.ssh(t, "alice", "", "cat /root/kept; stat -c %u /root/kept"); code != 0 || out != "kept\n0\n" {
		t.Errorf("alice after a restart: %q %q %d", out, errOut, code)
	}
	if again, _ := os.ReadFile(statedir.New(g.stateDir).IDs()); !bytes.HasPrefix(again, ids[:len(ids)-len("\n}\n")]) {
		t.Errorf("the id ranges changed across the restart and reload:\n%s\nthen\n%s", ids, again)
	}

	// Alice removed: refused, her files kept for a tenant reset.
	os.WriteFile(path, []byte(head+dave), 0o600)
	if out, errOut, code := cli(t, "reload", "--config", path); code != 0 || !strings.Contains(out, "- tenant alice") {
		t.Fatalf("reload removing alice: exit %d %q %q", code, out, errOut)
	}
	if _, _, code := g.ssh(t, "alice", "", "true"); code == 0 {
		t.Error("alice logged in after her removal")
	}
	if b, err := os.ReadFile(filepath.Join(statedir.New(g.stateDir).TenantUpper("alice"), "root", "kept")); err != nil || string(b) != "kept\n" {
		t.Errorf("alice's file after her removal: %q %v", b, err)
	}
	if _, errOut, code := cli(t, "rootfs", "rm", "--config", path, "base"); code == 0 || !strings.Contains(errOut, "tenant dave uses it") {
		t.Errorf("rootfs rm of the image dave is on: exit %d %q", code, errOut)
	}
}
