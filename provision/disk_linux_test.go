package provision

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/internal/testfs"
	"github.com/jailgate/jailgate/rootfs"
)

// TestDiskBackends, on file systems the test makes: btrfs (quotas on)
// bounds a rootfs: tenant's subvolume (dd of 200 MiB stops near 64 MiB
// with EDQUOT, another tenant still writes; a reload's lowered limit, then
// none, applies live, past her quota as she is), says it has no inode quota,
// and a tree no backend serves is refused with the fixes, naming the
// kernel option missing for prjquota where this kernel has none.
func TestDiskBackends(t *testing.T) {
	_, err := testfs.Loop(t, "ext4", "prjquota", "-q", "-O", "project,quota")
	noPrjquota := err != nil // TestDiskProject says why
	mnt := testfs.Btrfs(t)
	alice, bob, plain := filepath.Join(mnt, "alice"), filepath.Join(mnt, "bob"), filepath.Join(mnt, "plain")
	for _, d := range []string{alice, bob} {
		if err := rootfs.CreateSubvolume(d); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(plain, 0o755)
	u := &config.User{Name: "alice", Rootfs: alice, Disk: config.Disk{Bytes: 64 << 20}}
	ch, err := ChooseDisk(t.TempDir(), config.DiskQuotaAuto, u)
	if err != nil || ch.Backend != config.DiskQuotaBtrfs {
		t.Fatalf("alice's subvolume: %+v, %v; want btrfs", ch, err)
	}
	p := New(Options{StateDir: t.TempDir(), HostIDs: filepath.Join(t.TempDir(), "ids.json")})
	if _, err := p.applyDisk(u); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(alice, "big"), "bs=1M", "count=200").CombinedOutput()
	fi, _ := os.Stat(filepath.Join(alice, "big"))
	if !strings.Contains(string(out), "Disk quota exceeded") && !strings.Contains(string(out), "No space left") {
		t.Errorf("dd of 200 MiB into a 64 MiB qgroup: %s", out)
	}
	if fi == nil || fi.Size() > 64<<20 || fi.Size() < 32<<20 {
		t.Errorf("dd stopped at %v, want near 64 MiB", fi)
	}
	if out, err := exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(bob, "f"), "bs=1M", "count=100").CombinedOutput(); err != nil {
		t.Errorf("bob, on the same file system, cannot write: %s", out)
	}
	// A reload's limits, applied live: lowered, then gone.
	state := t.TempDir()
	for _, want := range []int64{32 << 20, 0} {
		c := &config.Config{StateDir: state, DiskQuota: config.DiskQuotaAuto,
			Users: map[string]*config.User{"alice": {Name: "alice", Rootfs: alice, Disk: config.Disk{Bytes: want}}}}
		if err := p.ApplyDiskLimits(c); err != nil {
			t.Errorf("ApplyDiskLimits, disk %d: %v", want, err)
		}
		if us, ok, err := DiskUsage(state, c.Users["alice"]); err != nil || !ok || us.BytesLimit != want {
			t.Errorf("after ApplyDiskLimits, disk %d: %+v ok %v err %v", want, us, ok, err)
		}
	}
	// btrfs has no inode quota: said.
	u.Disk.Inodes = 3000
	if _, err := ChooseDisk(t.TempDir(), config.DiskQuotaAuto, u); err == nil || !strings.Contains(err.Error(), "btrfs has no inode quota") {
		t.Errorf("inodes on btrfs: %v", err)
	}
	// A plain directory no backend serves: refused with the fixes.
	u = &config.User{Name: "carol", Rootfs: plain, Disk: config.Disk{Bytes: 64 << 20}, DiskPos: config.Pos{File: "j.yaml", Line: 7}}
	_, err = ChooseDisk(t.TempDir(), config.DiskQuotaAuto, u)
	for _, want := range []string{"j.yaml:7: users.carol.limits.disk", "not a btrfs subvolume", mnt, "btrfs",
		"tune2fs -O project -Q prjquota", "prjquota", "switch her to image:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("plain dir: %v; want %q in it", err, want)
		}
	}
	// Where prjquota cannot be mounted, the refusal (what check prints)
	// names the kernel option missing, if the kernel's config says.
	if noPrjquota && rootfs.ProjectQuotaGaps() != nil && (err == nil || !strings.Contains(err.Error(), "this kernel lacks CONFIG_QFMT_V2")) {
		t.Errorf("plain dir on a kernel without prjquota: %v; want it to name CONFIG_QFMT_V2", err)
	}
}
