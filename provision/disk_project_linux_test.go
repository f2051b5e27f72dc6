package provision

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/internal/testfs"
	"github.com/jailgate/jailgate/rootfs"
	"github.com/jailgate/jailgate/statedir"
)

// prjquotaFS makes a file system with project quotas on: ext4 -O
// project,quota mounted prjquota, or XFS mounted pquota; the error says
// why neither mounts.
func prjquotaFS(t *testing.T) (string, error) {
	mnt, err := testfs.Loop(t, "ext4", "prjquota", "-q", "-O", "project,quota")
	if err == nil {
		return mnt, nil
	}
	mnt, xerr := testfs.Loop(t, "xfs", "pquota", "-q")
	if xerr == nil {
		return mnt, nil
	}
	return "", errors.Join(err, xerr)
}

// asNobody runs name with args as uid/gid 65534, without the capability
// (CAP_SYS_RESOURCE) that lets root past ext4's hard limits: as her root
// inside her user namespace is.
func asNobody(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd
}

// TestDiskProject: the project backend, where this kernel can mount
// project quotas: a rootfs: tenant with disk 64MiB and inodes 3000 gets a
// project id of her own; dd of 200 MiB stops near 64 MiB with "Disk quota
// exceeded", 5000 files stop at 3000 at most, another tenant on the same
// file system still writes; status reads her use and limits; a restart
// keeps her id and a reload's lowered limit applies live; an image:
// tenant's layer dir gets a project id of its own. Where this
// kernel cannot (no CONFIG_QFMT_V2 nor CONFIG_XFS_QUOTA here), the log
// says so once, and the backend is refused with that reason and the fixes.
func TestDiskProject(t *testing.T) {
	mnt, err := prjquotaFS(t)
	if err != nil {
		gaps := rootfs.ProjectQuotaGaps()
		t.Logf("project backend: this kernel cannot mount ext4 prjquota or XFS pquota (its config lacks %v): %v", gaps, err)
		xfs := testfs.MustLoop(t, "xfs", "", "-q") // keeps project ids, no quotas on
		tree := filepath.Join(xfs, "alice")
		os.Mkdir(tree, 0o755)
		u := &config.User{Name: "alice", Rootfs: tree, Disk: config.Disk{Bytes: 64 << 20}, DiskPos: config.Pos{File: "j.yaml", Line: 3}}
		_, err := ChooseDisk(t.TempDir(), config.DiskQuotaProject, u)
		want := append([]string{"j.yaml:3: users.alice.limits.disk", "project: xfs: project quotas are not on",
			"tune2fs -O project -Q prjquota"}, gaps...)
		for _, w := range want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("disk_quota project on a kernel without project quotas: %v; want %q in it", err, w)
			}
		}
		return
	}
	state, alice, bob := filepath.Join(mnt, "state"), filepath.Join(mnt, "alice"), filepath.Join(mnt, "bob")
	os.Mkdir(state, 0o700)
	for _, d := range []string{alice, bob} {
		os.Mkdir(d, 0o755)
		os.Chown(d, 65534, 65534)
	}
	u := &config.User{Name: "alice", Rootfs: alice, Disk: config.Disk{Bytes: 64 << 20, Inodes: 3000}}
	if ch, err := ChooseDisk(state, config.DiskQuotaAuto, u); err != nil || ch.Backend != config.DiskQuotaProject {
		t.Fatalf("alice on %s: %+v, %v; want project", mnt, ch, err)
	}
	opts := Options{StateDir: state, HostIDs: filepath.Join(t.TempDir(), "ids.json")}
	if _, err := New(opts).applyDisk(u); err != nil {
		t.Fatal(err)
	}
	r, _, _ := rootfs.ReadProject(state, "alice")
	out, _ := asNobody("dd", "if=/dev/zero", "of="+filepath.Join(alice, "big"), "bs=1M", "count=200").CombinedOutput()
	fi, _ := os.Stat(filepath.Join(alice, "big"))
	if !strings.Contains(string(out), "Disk quota exceeded") && !strings.Contains(string(out), "No space left") {
		t.Errorf("dd of 200 MiB into a 64 MiB project: %s", out)
	}
	if fi == nil || fi.Size() > 64<<20 || fi.Size() < 32<<20 {
		t.Errorf("dd stopped at %v, want near 64 MiB", fi)
	}
	if out, err := asNobody("dd", "if=/dev/zero", "of="+filepath.Join(bob, "f"), "bs=1M", "count=100").CombinedOutput(); err != nil {
		t.Errorf("bob, on the same file system, cannot write: %s", out)
	}
	os.Remove(filepath.Join(alice, "big"))
	names := make([]string, 5000)
	for i := range names {
		names[i] = filepath.Join(alice, fmt.Sprint("f", i))
	}
	asNobody("touch", names...).Run()
	if ents, _ := os.ReadDir(alice); len(ents) > 3000 || len(ents) < 2000 {
		t.Errorf("5000 files under inodes 3000: %d made", len(ents))
	}
	if us, ok, err := DiskUsage(state, u); !ok || err != nil || us.BytesLimit != 64<<20 || us.InodesLimit != 3000 || us.Inodes < 2000 {
		t.Errorf("her usage: %+v ok %v err %v", us, ok, err)
	}
	// A restart: the same id; a reload's lowered limit: live.
	p := New(opts)
	if _, err := p.applyDisk(u); err != nil {
		t.Fatal(err)
	}
	if again, _, _ := rootfs.ReadProject(state, "alice"); again.ID != r.ID || r.ID == 0 {
		t.Errorf("her project id after a restart: %d, was %d", again.ID, r.ID)
	}
	c := &config.Config{StateDir: state, DiskQuota: config.DiskQuotaAuto,
		Users: map[string]*config.User{"alice": {Name: "alice", Rootfs: alice, Disk: config.Disk{Bytes: 32 << 20, Inodes: 3000}}}}
	if err := p.ApplyDiskLimits(c); err != nil {
		t.Error(err)
	}
	if us, _, _ := DiskUsage(state, c.Users["alice"]); us.BytesLimit != 32<<20 {
		t.Errorf("after a reload to 32 MiB: %+v", us)
	}
	// An image: tenant: her layer dir (state_dir on this file system)
	// carries a project id of her own, which her upper and work dirs inherit.
	carol := &config.User{Name: "carol", Image: "base", Disk: config.Disk{Bytes: 64 << 20}}
	if ch, err := ChooseDisk(state, config.DiskQuotaAuto, carol); err != nil || ch.Backend != config.DiskQuotaProject {
		t.Fatalf("carol's layer: %+v, %v; want project", ch, err)
	}
	if _, err := p.applyDisk(carol); err != nil {
		t.Fatal(err)
	}
	rc, _, _ := rootfs.ReadProject(state, "carol")
	if id, inh, err := rootfs.ProjectOf(statedir.New(state).Tenant("carol")); err != nil || id != rc.ID || !inh || id == r.ID {
		t.Errorf("carol's layer dir: project %d inherit %v err %v; want her own %d (alice has %d)", id, inh, err, rc.ID, r.ID)
	}
}
