package rootfs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/jailgate/jailgate/internal/testfs"
	"github.com/jailgate/jailgate/statedir"
	"golang.org/x/sys/unix"
)

// projectFS makes a file system whose files carry project ids, mounted
// without project quotas (what this host's kernel can do): ext4 -O
// project, or, where the kernel refuses to mount that read-write (ext4
// then wants CONFIG_QFMT_V2 even for the feature), XFS, which keeps
// project ids in every inode. The fallback is logged, once.
func projectFS(t *testing.T) string {
	t.Helper()
	mnt, err := testfs.Loop(t, "ext4", "", "-q", "-O", "project,quota")
	if err == nil {
		return mnt
	}
	projectFSOnce.Do(func() {
		t.Logf("ext4 -O project,quota does not mount here (kernel lacks %v): %v; using XFS", ProjectQuotaGaps(), err)
	})
	return testfs.MustLoop(t, "xfs", "", "-q")
}

// projectFSOnce logs projectFS's fallback once per run.
var projectFSOnce sync.Once

// fileProject is the project id of the file (any type but a symlink) at
// path, or of the symlink's target for a link.
func fileProject(t *testing.T, path string) (uint32, bool) {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var x fsxattr
	if err := ioctlPtr(fd, iocFSGetXattr, unsafe.Pointer(&x)); err != nil {
		t.Fatalf("FS_IOC_FSGETXATTR %s: %v", path, err)
	}
	return x.projid, x.xflags&xflagProjInh != 0
}

// TestSetProjectHostileTree: her tree's project id is set on every file
// and directory of it (directories with the inherit flag), and on nothing
// its symlinks point at (a link to /etc, a link to another tree on the
// same file system); a fifo does not hang the walk; what is made later
// inherits the id; a hard link or rename from another project into her
// tree fails with EXDEV; and her root inside (a user namespace) cannot
// change the id with chattr -p (the attack of issue 19).
func TestSetProjectHostileTree(t *testing.T) {
	mnt := projectFS(t)
	tree, other := filepath.Join(mnt, "alice"), filepath.Join(mnt, "other")
	for _, d := range []string{tree + "/a/b", other} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(tree+"/a/f", []byte("x"), 0o644)
	os.WriteFile(other+"/secret", []byte("x"), 0o600)
	os.Symlink("/etc", tree+"/etc-link")
	os.Symlink("../../other", tree+"/a/out")
	os.Symlink("../../other/secret", tree+"/a/b/secret")
	unix.Mkfifo(tree+"/a/fifo", 0o644)
	etcBefore, _, _ := ProjectOf("/etc")

	const id = 4242
	if err := SetProject(tree, id); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{tree, tree + "/a", tree + "/a/b", tree + "/a/f"} {
		got, inh := fileProject(t, p)
		fi, _ := os.Stat(p)
		if got != id || inh != fi.IsDir() {
			t.Errorf("%s: project %d inherit %v; want %d, inherit on directories", p, got, inh, id)
		}
	}
	for _, p := range []string{other, other + "/secret"} {
		if got, inh := fileProject(t, p); got != 0 || inh {
			t.Errorf("%s, reached through her symlinks: project %d inherit %v; want untouched", p, got, inh)
		}
	}
	if etc, _, _ := ProjectOf("/etc"); etc != etcBefore {
		t.Errorf("/etc, reached through her symlink: project %d, was %d", etc, etcBefore)
	}
	// Made later: inherited.
	os.MkdirAll(tree+"/a/new/deep", 0o755)
	os.WriteFile(tree+"/a/new/deep/file", nil, 0o644)
	for _, p := range []string{tree + "/a/new/deep", tree + "/a/new/deep/file"} {
		if got, _ := fileProject(t, p); got != id {
			t.Errorf("%s, made after: project %d, want %d", p, got, id)
		}
	}
	// Into her tree from another project: refused by the kernel.
	if err := os.Link(other+"/secret", tree+"/a/hl"); !errors.Is(err, unix.EXDEV) {
		t.Errorf("hard link of another project's file into her tree: %v, want EXDEV", err)
	}
	if err := os.Rename(other+"/secret", tree+"/a/moved"); !errors.Is(err, unix.EXDEV) {
		t.Errorf("rename of another project's file into her tree: %v, want EXDEV", err)
	}
	// Her root in a user namespace: chattr -p is refused, the id stays.
	out, err := exec.Command("unshare", "--user", "--map-root-user", "chattr", "-p", "0", tree+"/a/f").CombinedOutput()
	if got, _ := fileProject(t, tree+"/a/f"); err == nil || got != id {
		t.Errorf("chattr -p 0 by root in a user namespace: %v %s; project now %d, want refused and %d", err, out, got, id)
	} else {
		t.Logf("chattr -p 0 by her root in a user namespace: refused (%s)", strings.TrimSpace(string(out)))
	}
}

// TestProjectIDStable: a tenant's project id comes from her id range, is
// the same after a restart (read back from state_dir), is never another
// tenant's, even one with the same range, and a removed tenant's id is
// not handed out again. ApplyProject sets it on her tree once and records
// that, and again on a tree made anew; without project quotas on (this
// host) the limits are refused.
func TestProjectIDStable(t *testing.T) {
	state := t.TempDir()
	const base, size = 1 << 30, 65536
	a, err := projectID(state, "alice", "/t/alice", base, size)
	if err != nil || a.ID != base {
		t.Fatalf("alice: %+v %v; want id %d", a, err, base)
	}
	again, err := projectID(state, "alice", "/t/alice", base+size, size) // a restart, even with another range
	if err != nil || again.ID != a.ID {
		t.Errorf("alice again: %+v %v; want id %d", again, err, a.ID)
	}
	b, err := projectID(state, "bob", "/t/bob", base, size)
	if err != nil || b.ID == a.ID {
		t.Errorf("bob, same range: %+v %v; want an id other than alice's %d", b, err, a.ID)
	}
	os.Remove(statedir.New(state).ProjectRecord("alice")) // alice removed
	c, err := projectID(state, "carol", "/t/carol", base, size)
	if err != nil || c.ID == a.ID || c.ID == b.ID {
		t.Errorf("carol, after alice left: %+v %v; want neither %d nor %d", c, err, a.ID, b.ID)
	}
	if _, err := projectID(state, "dave", "/t/dave", base, 3); err == nil {
		t.Errorf("dave, in a range every id of which was handed out: no error")
	}

	mnt := projectFS(t)
	tree := filepath.Join(mnt, "erin")
	os.Mkdir(tree, 0o755)
	err = ApplyProject(state, "erin", tree, 5000, 10, Quota{Backend: QuotaProject, Bytes: 64 << 20})
	if err == nil || !strings.Contains(err.Error(), "Q_SETQUOTA") {
		t.Errorf("ApplyProject without project quotas on: %v; want the quotactl refused", err)
	}
	r, ok, _ := ReadProject(state, "erin")
	if got, inh, _ := ProjectOf(tree); !ok || !r.Set || r.Tree != tree || got != r.ID || !inh {
		t.Errorf("erin's record %+v (ok %v); her tree's project %d inherit %v", r, ok, got, inh)
	}
	// Her tree made anew (a tenant reset removes her layer dir): set again.
	os.RemoveAll(tree)
	os.Mkdir(tree, 0o755)
	ApplyProject(state, "erin", tree, 5000, 10, Quota{Backend: QuotaProject, Bytes: 64 << 20})
	if got, inh, _ := ProjectOf(tree); got != r.ID || !inh {
		t.Errorf("erin's tree made anew: project %d inherit %v, want %d", got, inh, r.ID)
	}
}

// TestProjectDetection: on a file system mounted without project quotas
// the backend says why it cannot serve; on this host, whose kernel cannot
// turn them on at all, the log says which kernel option is missing.
func TestProjectDetection(t *testing.T) {
	mnt := projectFS(t)
	pt, err := ProbeProject(mnt)
	if err != nil || pt.FS == "" || pt.Enforced || pt.Why == "" {
		t.Fatalf("ProbeProject(%s) without prjquota: %+v %v; want its file system, not enforced, and why", mnt, pt, err)
	}
	if pt, _ := ProbeProject(t.TempDir()); pt.Enforced {
		t.Errorf("the temp dir's file system: %+v; want no project quota", pt)
	}
	t.Logf("project backend on %s: %s (this kernel lacks %v)", pt.FS, pt.Why, ProjectQuotaGaps())
}
