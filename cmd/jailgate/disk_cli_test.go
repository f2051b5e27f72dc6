//go:build linux

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jailgate/jailgate/internal/testfs"
	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/rootfs"
	"github.com/jailgate/jailgate/statedir"
)

// testKey is an authorized key line for configs no one logs in with.
const testKey = `"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a"`

// writeDiskConfig writes dir/jailgate.yaml: head (top-level settings),
// then users, each "name: tree line"; every tenant has disk: 64MiB on
// line 7 + 5 × her index (the first tenant's disk: is on line 7 with an
// empty head).
func writeDiskConfig(t *testing.T, dir, head string, users ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("state_dir: " + filepath.Join(dir, "state") + "\n" + head + "users:\n")
	for _, u := range users {
		name, tree, _ := strings.Cut(u, ": ")
		b.WriteString("  " + name + ":\n    keys: [" + testKey + "]\n    " + tree + "\n    limits:\n      disk: 64MiB\n")
	}
	path := filepath.Join(dir, "jailgate.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCheckDiskNoBackend: a rootfs: tenant with disk: on a file system no
// backend serves (a plain directory on ext4 mounted without prjquota, made
// by the test) makes check exit 2 with one FILE:LINE: field: message line
// that names her tree, the file system and its mount point and every fix
// (issue 19); with limits_enforcement: best-effort check passes and says
// it as a warning.
func TestCheckDiskNoBackend(t *testing.T) {
	jailtest.RequireRoot(t)
	mnt := testfs.MustLoop(t, "ext4", "", "-q")
	tree := filepath.Join(mnt, "alice")
	os.Mkdir(tree, 0o755)
	dir := t.TempDir()
	path := writeDiskConfig(t, dir, "", "alice: rootfs: "+tree)
	var stdout, stderr bytes.Buffer
	code := run([]string{"check", "--config", path}, &stdout, &stderr)
	t.Logf("check: exit %d\n%s", code, stderr.String())
	if code != exitUsage {
		t.Errorf("check: exit %d, want %d", code, exitUsage)
	}
	for _, want := range []string{
		path + ":7: users.alice.limits.disk: " + tree + " is on ext4 (", "mounted on " + mnt,
		"tune2fs -O project -Q prjquota DEV", "prjquota", "btrfs subvolume create", "btrfs quota enable",
		"switch her to image:",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("check's message lacks %q", want)
		}
	}
	// A kernel that cannot mount prjquota (TestDiskBackends logs why):
	// check names the option it lacks.
	if _, err := testfs.Loop(t, "ext4", "prjquota", "-q", "-O", "project,quota"); err != nil && rootfs.ProjectQuotaGaps() != nil &&
		!strings.Contains(stderr.String(), "this kernel lacks CONFIG_QFMT_V2") {
		t.Errorf("check on a kernel without prjquota does not name CONFIG_QFMT_V2")
	}
	path = writeDiskConfig(t, dir, "limits_enforcement: best-effort\n", "alice: rootfs: "+tree)
	stdout.Reset()
	stderr.Reset()
	code = run([]string{"check", "--config", path}, &stdout, &stderr)
	t.Logf("check, best-effort: exit %d\n%s%s", code, stdout.String(), stderr.String())
	if code != 0 || !strings.Contains(stdout.String()+stderr.String(), "users.alice.limits.disk") {
		t.Errorf("check with best-effort: exit %d, want 0 and the warning", code)
	}
}

// projectWhyText is why explain says the project backend does not serve
// a tree on an ext4 mounted without prjquota, with the kernel options this
// host lacks for it.
func projectWhyText() string {
	why := "project: ext4: project quotas are not on and enforced (mount option prjquota)"
	if gaps := rootfs.ProjectQuotaGaps(); gaps != nil {
		why += ", and this kernel lacks " + strings.Join(gaps, ", ") +
			" (ext4 prjquota needs CONFIG_QUOTA and CONFIG_QFMT_V2; XFS prjquota, CONFIG_XFS_QUOTA)"
	}
	return why
}

// TestExplainStatusDisk: explain says which disk backend serves each
// tenant and why (alice's rootfs: a btrfs subvolume with quotas on: btrfs;
// bob's image: layer, state_dir on ext4: image, with why the others do
// not serve), and status shows alice's used / limit, blocks and inodes.
func TestExplainStatusDisk(t *testing.T) {
	jailtest.RequireRoot(t)
	bt, ext := testfs.Btrfs(t), testfs.MustLoop(t, "ext4", "", "-q")
	tree := filepath.Join(bt, "alice")
	if err := rootfs.CreateSubvolume(tree); err != nil {
		t.Fatal(err)
	}
	path := writeDiskConfig(t, ext, "", "alice: rootfs: "+tree, "bob: image: base")
	if err := os.MkdirAll(statedir.New(filepath.Join(ext, "state")).Image("base"), 0o755); err != nil {
		t.Fatal(err)
	}
	for tenant, want := range map[string]string{
		"alice": "disk quota:   btrfs on " + tree + " (disk_quota auto), because a btrfs subvolume with a qgroup limit",
		"bob": "disk quota:   image on " + filepath.Join(ext, "state/tenants/bob") + " (disk_quota auto), because her layer lives in an ext4 image " +
			"of limits.disk's size under state_dir (" + projectWhyText() + "; btrfs: not on btrfs)",
	} {
		var out, errOut bytes.Buffer
		code := run([]string{"explain", "--config", path, tenant}, &out, &errOut)
		t.Logf("explain %s: exit %d\n%s%s", tenant, code, out.String(), errOut.String())
		if code != 0 || !strings.Contains(out.String(), want+"\n") {
			t.Errorf("explain %s: want the line %q", tenant, want)
		}
	}
	// Status reads her qgroup: what she holds, against her limit.
	if err := rootfs.SetBtrfsLimit(tree, 64<<20); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "f"), make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	exec.Command("btrfs", "filesystem", "sync", bt).Run()
	var out, errOut bytes.Buffer
	code := run([]string{"status", "--config", path}, &out, &errOut)
	t.Logf("status: exit %d\n%s%s", code, out.String(), errOut.String())
	var alice, bob string
	for _, l := range strings.Split(out.String(), "\n") {
		switch f := strings.Fields(l); {
		case len(f) > 0 && f[0] == "alice":
			alice = l
		case len(f) > 0 && f[0] == "bob":
			bob = l
		}
	}
	if code != 0 || !strings.Contains(out.String(), "DISK") || !strings.Contains(alice, "/ 64MiB (btrfs)") || !strings.Contains(alice, "/ max ") {
		t.Errorf("status: alice's line %q, want her use / 64MiB (btrfs) and inodes / max", alice)
	}
	// DISK and INODES come before the three network columns.
	if f := strings.Fields(bob); len(f) < 5 || f[len(f)-4] != "-" || f[len(f)-5] != "-" {
		t.Errorf("status: bob (no image yet) %q, want - - for disk and inodes", bob)
	}
}

// TestFromHostSubvolume (issue 19): `rootfs from-host DIR` with DIR on a
// btrfs with quotas on makes her tree a subvolume, so that a rootfs:
// tenant on it with disk: 64MiB passes check, served by btrfs (a plain
// directory there is refused: TestCheckDiskNoBackend).
func TestFromHostSubvolume(t *testing.T) {
	jailtest.RequireRoot(t)
	tree := filepath.Join(testfs.Btrfs(t), "alice")
	var out, errOut bytes.Buffer
	if code := run([]string{"rootfs", "from-host", "-q", "--minimal", tree}, &out, &errOut); code != 0 {
		t.Fatalf("rootfs from-host: exit %d %s", code, errOut.String())
	}
	path := writeDiskConfig(t, t.TempDir(), "", "alice: rootfs: "+tree)
	code := run([]string{"check", "--config", path}, &out, &errOut)
	t.Logf("check: exit %d\n%s%s", code, out.String(), errOut.String())
	if code != 0 {
		t.Errorf("check of a tenant on a tree from-host made on btrfs: exit %d, want 0", code)
	}
	out.Reset()
	run([]string{"explain", "--config", path, "alice"}, &out, &errOut)
	if want := "disk quota:   btrfs on " + tree + " (disk_quota auto)"; !strings.Contains(out.String(), want) {
		t.Errorf("explain: %s\nwant %q", out.String(), want)
	}
}
