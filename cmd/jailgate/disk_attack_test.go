//go:build linux

package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/internal/testfs"
	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/rootfs"
	"github.com/jailgate/jailgate/statedir"
)

// diskLimit is the quota every tenant of these tests has.
const diskLimit = "    limits:\n      disk: 64MiB\n"

// diskUsers writes the users: section for tenants (name: extra YAML), each
// with the lab's keys (made here) and tree(name) as her YAML tree line.
func diskUsers(t *testing.T, l *lab, tenants map[string]string, tree func(string) string) string {
	t.Helper()
	var users strings.Builder
	for _, u := range []string{"alice", "bob"} {
		extra, ok := tenants[u]
		if !ok {
			continue
		}
		signer, pub := gatewaytest.NewKey(t)
		l.keys[u] = signer
		fmt.Fprintf(&users, "  %s:\n    keys: [%q]\n    %s\n%s%s", u,
			strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pub))), tree(u), extra, diskLimit)
	}
	return users.String()
}

// installAttack copies the static attack program into tree's /usr/local/bin.
func installAttack(t *testing.T, tree string) {
	t.Helper()
	bin, err := attackOnce()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(bin)
	os.MkdirAll(filepath.Join(tree, "usr/local/bin"), 0o755)
	if err := os.WriteFile(filepath.Join(tree, "usr/local/bin/attack"), b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// btrfsLab serves alice (a default jail) and bob (seccomp off and
// CAP_SYS_ADMIN: the control), each with disk: 64MiB on a rootfs: tree
// that is a btrfs subvolume of a loop-mounted btrfs with quotas on, the
// state dir on it too, btrfs-progs, chattr, dd and the attack program in
// their trees.
func btrfsLab(t *testing.T) *lab {
	t.Helper()
	jailtest.RequireRoot(t)
	mnt := testfs.Btrfs(t)
	l := &lab{stateDir: filepath.Join(mnt, "state"), keys: map[string]gossh.Signer{},
		rootfs: map[string]string{}, log: &syncBuffer{}}
	for _, u := range []string{"alice", "bob"} {
		l.rootfs[u] = filepath.Join(mnt, u)
		if err := rootfs.CreateSubvolume(l.rootfs[u]); err != nil {
			t.Fatal(err)
		}
		if err := rootfs.FromHost(l.rootfs[u], rootfs.FromHostOptions{With: []string{"setsid", "dd", "btrfs", "chattr", "lsattr"}}); err != nil {
			t.Fatal(err)
		}
		installAttack(t, l.rootfs[u])
	}
	users := diskUsers(t, l, map[string]string{"alice": "", "bob": openExtra},
		func(u string) string { return "rootfs: " + l.rootfs[u] })
	dir := jailtest.SearchableTempDir(t)
	l.serve(t, dir, fmt.Sprintf("listen: 127.0.0.1:0\nstate_dir: %s\nusers:\n%s", l.stateDir, users))
	return l
}

// tryAttack runs cmd in c's environment and returns its output, logging it
// (one line per attempt).
func tryAttack(t *testing.T, c *gossh.Client, who, what, cmd string) (string, bool) {
	t.Helper()
	out, errOut, err := runSSH(t, c, cmd)
	got := strings.TrimSpace(out + errOut)
	t.Logf("%s, %s (%s): ok=%v: %s", who, what, cmd, err == nil, got)
	return got, err == nil
}

// ddStops writes 200 MiB into file as c's tenant and checks it stops with
// EDQUOT or ENOSPC, her tree then holding near 64 MiB by used (her
// qgroup's or her image's count): the quota still holds.
func ddStops(t *testing.T, c *gossh.Client, who, file string, used func() int64) {
	t.Helper()
	out, _ := tryAttack(t, c, who, "dd of 200 MiB under disk: 64MiB", "dd if=/dev/zero of="+file+" bs=1M count=200; stat -c 'size %s' "+file)
	if !strings.Contains(out, "Disk quota exceeded") && !strings.Contains(out, "No space left on device") {
		t.Errorf("%s: dd of 200 MiB past her 64 MiB quota: %s", who, out)
	}
	var n int64
	if m := regexp.MustCompile(`size (\d+)`).FindStringSubmatch(out); m != nil {
		n, _ = strconv.ParseInt(m[1], 10, 64)
	}
	u := used()
	t.Logf("%s: dd stopped at %d bytes; her tree holds %d bytes", who, n, u)
	if n == 0 || n > 64<<20 || u < 48<<20 || u > 68<<20 {
		t.Errorf("%s: dd stopped at %d bytes, her tree holds %d: want near 64 MiB", who, n, u)
	}
}

// usageOf reads what tenant's tree holds against her quota (tree: her
// rootfs:, or "" for her layer).
func usageOf(t *testing.T, l *lab, tenant, tree string) func() int64 {
	return func() int64 {
		exec.Command("sync").Run() // btrfs counts a qgroup at commit
		u, ok, err := rootfs.TenantUsage(l.stateDir, tenant, tree)
		if !ok || err != nil {
			t.Errorf("%s's usage: %v (under a quota: %v)", tenant, err, ok)
		}
		return u.Bytes
	}
}

// TestDiskQuotaBtrfsAttacks: her root inside cannot lift or escape her
// btrfs quota (issue 19). A subvolume or snapshot inside her tree would
// have a qgroup of its own, outside her limit: seccomp refuses the ioctls
// (btrfs-progs and the raw BTRFS_IOC_SUBVOL_CREATE and SNAP_CREATE_V2),
// and the control, Bob with seccomp off, shows the escape is real: his
// nested subvolume takes 100 MiB past his 64 MiB. Changing a file's
// project id (FS_IOC_FSSETXATTR, chattr -p) is refused by the kernel
// outside the host's user namespace. After her attempts, dd still stops
// at her quota. Hard links across trees fail (projectAttacks), and across
// subvolumes even for Bob.
func TestDiskQuotaBtrfsAttacks(t *testing.T) {
	l := btrfsLab(t)
	alice, bob := l.client(t, "alice"), l.client(t, "bob")
	if out, ok := tryAttack(t, alice, "alice", "btrfs subvolume create", "btrfs subvolume create /root/escape-shell"); ok {
		t.Errorf("alice made a subvolume in her tree: %s", out)
	}
	if out, ok := tryAttack(t, bob, "bob (control, seccomp off)", "btrfs subvolume create", "btrfs subvolume create /root/escape-shell"); !ok {
		t.Errorf("control: bob could not make a subvolume with seccomp off: %s", out)
	}
	for _, a := range []string{"btrfs-subvol /root", "btrfs-snap /"} {
		if v, _ := tryAttack(t, alice, "alice", a, "attack "+a); !strings.HasPrefix(v, "BLOCKED") {
			t.Errorf("alice, attack %s: %q, want BLOCKED (seccomp)", a, v)
		}
		if v, _ := tryAttack(t, bob, "bob (control)", a, "attack "+a); !strings.HasPrefix(v, "ESCAPED") {
			t.Errorf("control: bob, attack %s with seccomp off: %q, want ESCAPED", a, v)
		}
	}
	if out, ok := tryAttack(t, bob, "bob (control)", "dd of 100 MiB into his nested subvolume",
		"dd if=/dev/zero of=/root/escape-shell/big bs=1M count=100 2>&1"); !ok {
		t.Errorf("control: bob's nested subvolume is under his quota after all: %s", out)
	}
	// Even with his nested subvolume, a hard link cannot carry a file of
	// his tree into it (or out): btrfs refuses links across subvolumes.
	must(t, bob, "echo x > /root/f")
	if out, ok := tryAttack(t, bob, "bob (control)", "hard link into his nested subvolume", "ln /root/f /root/escape-shell/f"); ok ||
		!strings.Contains(out, "Invalid cross-device link") {
		t.Errorf("control: bob hard-linked a file across subvolumes: ok=%v %q, want EXDEV", ok, out)
	}
	projectAttacks(t, alice, "alice")
	ddStops(t, alice, "alice", "/root/big", usageOf(t, l, "alice", l.rootfs["alice"]))
}

// projectAttacks tries to move a file of hers to another project: the
// raw FS_IOC_FSSETXATTR and chattr -p either fail or change nothing. Then
// hard links across trees, which would let a file be charged to a tree
// other than the one that holds it: from her tree into the tmpfs trees she
// can write (/tmp, /dev/shm), and from them into hers; each fails with
// EXDEV.
func projectAttacks(t *testing.T, c *gossh.Client, who string) {
	t.Helper()
	must(t, c, "echo x > /root/f")
	for _, a := range []struct{ what, cmd string }{
		{"hard link from her tree into /tmp", "ln /root/f /tmp/f-link"},
		{"hard link from her tree into /dev/shm", "ln /root/f /dev/shm/f-link"},
		{"hard link from /tmp into her tree", "echo y > /tmp/g && ln /tmp/g /root/g-link"},
	} {
		if out, ok := tryAttack(t, c, who, a.what, a.cmd); ok || !strings.Contains(out, "Invalid cross-device link") {
			t.Errorf("%s, %s: ok=%v %q, want EXDEV (Invalid cross-device link)", who, a.what, ok, out)
		}
	}
	if v, _ := tryAttack(t, c, who, "FS_IOC_FSSETXATTR project id 4242", "attack fssetxattr /root/f"); strings.HasPrefix(v, "ESCAPED") || v == "" {
		t.Errorf("%s, FS_IOC_FSSETXATTR: %q, want BLOCKED or CONTAINED", who, v)
	}
	if _, err := exec.LookPath("chattr"); err != nil {
		return
	}
	if out, ok := tryAttack(t, c, who, "chattr -p", "chattr -p 4242 /root/f && lsattr -p /root/f"); ok && strings.Contains(out, "4242") {
		t.Errorf("%s: chattr -p moved her file to project 4242: %s", who, out)
	}
}

// TestDiskQuotaImageAttacks: an image: tenant with disk: 64MiB (disk_quota
// image) cannot reach or remount the ext4 image that holds her layer: the
// image file, its mount and its loop device are not visible inside her
// environment (they are on the host: checked), mounting it or remounting
// her root is refused, a project id change fails or changes nothing, and
// dd still stops at her quota.
func TestDiskQuotaImageAttacks(t *testing.T) {
	jailtest.RequireRoot(t)
	dir := jailtest.SearchableTempDir(t)
	l := &lab{stateDir: filepath.Join(dir, "state"), keys: map[string]gossh.Signer{},
		rootfs: map[string]string{}, log: &syncBuffer{}}
	state := statedir.New(l.stateDir)
	if err := rootfs.FromHost(state.Image("base"), rootfs.FromHostOptions{With: []string{"setsid", "dd", "chattr", "lsattr"}}); err != nil {
		t.Fatal(err)
	}
	installAttack(t, state.Image("base"))
	layers := rootfs.NewLayers(l.stateDir, rootfs.LayerOptions{Logger: slog.New(slog.NewTextHandler(l.log, nil))})
	t.Cleanup(func() { layers.Close() })
	l.layers = layers
	users := diskUsers(t, l, map[string]string{"alice": ""}, func(string) string { return "image: base" })
	l.serve(t, dir, fmt.Sprintf("listen: 127.0.0.1:0\nstate_dir: %s\ndisk_quota: image\nusers:\n%s", l.stateDir, users))
	alice := l.client(t, "alice")
	hold(t, alice)
	img := state.TenantDiskImage("alice")
	out, err := exec.Command("losetup", "-j", img).Output()
	loop, _, _ := strings.Cut(string(out), ":")
	if err != nil || !strings.HasPrefix(loop, "/dev/loop") {
		t.Fatalf("her image %s is not loop-mounted on the host: %q %v", img, out, err)
	}
	mnt, err := exec.Command("findmnt", "-nro", "TARGET", "-S", loop).Output()
	if err != nil || len(mnt) == 0 {
		t.Fatalf("findmnt %s: %q %v", loop, mnt, err)
	}
	t.Logf("her image %s is on %s, mounted on %s", img, loop, strings.TrimSpace(string(mnt)))
	for _, a := range []string{
		"reach " + img + " " + filepath.Dir(img) + " " + strings.TrimSpace(string(mnt)) + " " + loop + " /dev/loop-control",
		"mount " + img, "mount " + loop, "remount-root",
	} {
		if v, _ := tryAttack(t, alice, "alice", a, "attack "+a); !strings.HasPrefix(v, "BLOCKED") {
			t.Errorf("alice, attack %s: %q, want BLOCKED", a, v)
		}
	}
	projectAttacks(t, alice, "alice")
	ddStops(t, alice, "alice", "/root/big", usageOf(t, l, "alice", ""))
	// status shows what her image holds, blocks and inodes, against its size.
	var st, errOut strings.Builder
	code := run([]string{"status", "--config", filepath.Join(dir, "jailgate.yaml")}, &st, &errOut)
	t.Logf("status: exit %d\n%s%s", code, st.String(), errOut.String())
	if code != 0 || !regexp.MustCompile(`(?m)^alice .* \d+\w+ / \d+\w+ \(image\)\s+\d+ / \d+\s`).MatchString(st.String()) {
		t.Errorf("status: want alice's line with her image's use / size (image) and inodes used / limit")
	}
}
