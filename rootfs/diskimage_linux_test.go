package rootfs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/statedir"
)

// fill writes up to mib MiB of zeros to file with dd, as she would, and
// returns dd's output and how many bytes landed.
func fill(t *testing.T, file string, mib int) (string, int64) {
	t.Helper()
	out, _ := exec.Command("dd", "if=/dev/zero", "of="+file, "bs=1M", fmt.Sprintf("count=%d", mib)).CombinedOutput()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(out), fi.Size()
}

// loopsOf lists the loop devices bound to file.
func loopsOf(file string) string {
	out, _ := exec.Command("losetup", "-j", file).Output()
	return strings.TrimSpace(string(out))
}

// TestImageQuota: the image backend bounds an image: tenant's layer
// (issue 19: before it, `dd if=/dev/zero of=~/big` ran until the host's
// file system was full). A tenant with disk: 64MiB writing 200 MiB stops
// near 64 MiB with ENOSPC; another tenant on the same file system still
// writes; inodes: 3000 stops 5000 files at <= 3000; a larger limit grows
// her image online, a smaller one is refused with the reason; and the
// image and its loop device go with her layer's unmount.
func TestImageQuota(t *testing.T) {
	l := newLayerLab(t, LayerOptions{})
	state := statedir.New(l.stateDir)
	q := Quota{Backend: QuotaImage, Bytes: 64 << 20, Inodes: 3000}
	merged, release, err := l.layers.AcquireQuota("alice", "base", aliceBase, rangeSize, q)
	if err != nil {
		t.Fatal(err)
	}
	img := state.TenantDiskImage("alice")
	t.Cleanup(func() {
		l.layers.Close()
		if loops := loopsOf(img); loops != "" {
			t.Errorf("loop device left bound to her image after Close: %s", loops)
			exec.Command("losetup", "-d", strings.SplitN(loops, ":", 2)[0]).Run()
		}
	})
	// Her copy-up counts: the image's file lands in her image.
	if err := os.WriteFile(filepath.Join(merged, "etc/motd"), []byte("hers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, n := fill(t, filepath.Join(merged, "big"), 200)
	if !strings.Contains(out, "No space left on device") && !strings.Contains(out, "Disk quota exceeded") {
		t.Errorf("dd of 200 MiB into a 64 MiB quota: %q, want ENOSPC or EDQUOT", out)
	}
	if n < 40<<20 || n > 64<<20 {
		t.Errorf("dd stopped at %d bytes, want near 64 MiB", n)
	}
	if fi, err := os.Stat(filepath.Join(state.Tenant("alice"), "upper")); err == nil {
		t.Errorf("her upper dir is in the state dir (%v), not in her image", fi.Mode())
	}
	// Bob, no quota, on the same file system: still writes.
	bob, releaseBob := l.acquire(t, "bob", bobBase)
	defer releaseBob()
	if out, n := fill(t, filepath.Join(bob, "file"), 16); n != 16<<20 {
		t.Errorf("bob wrote %d bytes: %s", n, out)
	}
	os.Remove(filepath.Join(merged, "big"))

	// Inodes: 5000 files stop at <= 3000.
	made := 0
	for i := range 5000 {
		if err := os.WriteFile(filepath.Join(merged, fmt.Sprint("f", i)), nil, 0o644); err != nil {
			if !strings.Contains(err.Error(), "no space left") && !strings.Contains(err.Error(), "quota") {
				t.Fatalf("file %d: %v", i, err)
			}
			break
		}
		made++
	}
	if made > 3000 || made < 2900 {
		t.Errorf("made %d of 5000 files with inodes: 3000", made)
	}
	for i := range made {
		os.Remove(filepath.Join(merged, fmt.Sprint("f", i)))
	}

	// Growing the limit grows her image: online where the gateway has
	// CAP_SYS_RESOURCE, else at her next mount (said in the log).
	var before, after unix.Statfs_t
	unix.Statfs(merged, &before)
	grown := Quota{Backend: QuotaImage, Bytes: 128 << 20, Inodes: 3000}
	if _, r, err := l.layers.AcquireQuota("alice", "base", aliceBase, rangeSize, grown); err != nil {
		t.Fatalf("grow: %v", err)
	} else {
		r()
	}
	if strings.Contains(l.log.String(), "it grows at her next login") {
		t.Log("online resize refused here (no CAP_SYS_RESOURCE?): growing at the next mount")
		release()
		if err := l.layers.Close(); err != nil {
			t.Fatal(err)
		}
		l.layers = NewLayers(l.stateDir, LayerOptions{Logger: l.layers.log})
		if merged, release, err = l.layers.AcquireQuota("alice", "base", aliceBase, rangeSize, grown); err != nil {
			t.Fatalf("grow at mount: %v", err)
		}
	}
	unix.Statfs(merged, &after)
	if after.Blocks <= before.Blocks {
		t.Errorf("image not grown: %d blocks, then %d", before.Blocks, after.Blocks)
	}
	if _, r, err := l.layers.AcquireQuota("alice", "base", aliceBase, rangeSize, Quota{Backend: QuotaImage, Bytes: 32 << 20}); err != nil {
		t.Fatalf("shrink: %v", err)
	} else {
		r()
	}
	if fi, _ := os.Stat(img); fi.Size() != 128<<20 {
		t.Errorf("image is %d bytes after a lowered limit, want 128 MiB kept", fi.Size())
	}
	if !strings.Contains(l.log.String(), "limits.disk lowered below her disk image's size: refused") {
		t.Errorf("no refusal logged for a lowered limit:\n%s", l.log.String())
	}
	u, ok, err := TenantUsage(l.stateDir, "alice", "")
	if err != nil || !ok || u.BytesLimit < 100<<20 || u.InodesLimit < 3000 {
		t.Errorf("usage %+v ok %v err %v", u, ok, err)
	}
	release()
	if err := l.layers.Close(); err != nil {
		t.Fatal(err)
	}
	if mounted(filepath.Join(state.LayerMounts(), "alice", "disk")) {
		t.Error("her disk image is still mounted after Close")
	}
	if loops := loopsOf(img); loops != "" {
		t.Errorf("loop device still bound after Close: %s", loops)
	}
	// Unmounted, her usage comes from the image's superblock.
	if u, ok, err := TenantUsage(l.stateDir, "alice", ""); err != nil || !ok || u.BytesLimit < 100<<20 {
		t.Errorf("usage unmounted %+v ok %v err %v", u, ok, err)
	}
	// tenant reset clears it, image and all.
	if err := RemoveLayer(l.stateDir, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(img); err == nil {
		t.Error("her image survived tenant reset")
	}
}

// fillInodes makes empty files prefix0, prefix1... in dir until the file system refuses one
// for lack of space, and returns how many it made.
func fillInodes(t *testing.T, dir, prefix string) int {
	t.Helper()
	for i := 0; ; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(prefix, i)), nil, 0o644); err != nil {
			if !strings.Contains(err.Error(), "no space left") {
				t.Fatalf("file %d: %v", i, err)
			}
			return i
		}
	}
}

// TestImageInodesFullRelogin: an image: tenant who used every inode of
// her image could not log in again: overlayfs makes its work dir and
// checks (a temp file and a whiteout) in her image at mount, and failed
// with ENOSPC. The image keeps a few inodes she cannot take
// (imageReserveInodes): released for the overlay's mount, held again
// before she runs. Her inodes: limit still holds exactly as before.
func TestImageInodesFullRelogin(t *testing.T) {
	l := newLayerLab(t, LayerOptions{})
	q := Quota{Backend: QuotaImage, Bytes: 32 << 20, Inodes: 1000}
	merged, release, err := l.layers.AcquireQuota("alice", "base", aliceBase, rangeSize, q)
	if err != nil {
		t.Fatal(err)
	}
	made := fillInodes(t, merged, "first")
	t.Logf("first login: made %d files with inodes: 1000", made)
	if made > 1000 || made < 900 {
		t.Errorf("made %d files with inodes: 1000", made)
	}
	release()
	if err := l.layers.Close(); err != nil {
		t.Fatal(err)
	}
	l.layers = NewLayers(l.stateDir, LayerOptions{Logger: l.layers.log})
	t.Cleanup(func() { l.layers.Close() })
	merged, release, err = l.layers.AcquireQuota("alice", "base", aliceBase, rangeSize, q)
	if err != nil {
		t.Fatalf("her next login, every inode used: %v", err)
	}
	defer release()
	// She is full, and writable: a file freed is a file she can make.
	if n := fillInodes(t, merged, "next"); n != 0 {
		t.Errorf("after her next login she made %d more files: the reserve leaked to her", n)
	}
	if err := os.Remove(filepath.Join(merged, "first0")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(merged, "again"), nil, 0o644); err != nil {
		t.Errorf("her layer is not writable after her next login: %v", err)
	}
}
