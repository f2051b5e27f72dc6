// Package testfs makes loop-mounted file systems for root tests: disk
// quota backends, on file systems the test makes (issue 19).
package testfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Size is the size of the file systems Loop makes.
const Size = 512 << 20

// Loop makes a Size fstype file system (mkfs.fstype with args mkfs) in a
// file under a temp dir others may search (a tenant's tree may be on it),
// loop-mounts it with the mount options opts ("" for none) and returns its
// mount point. It is unmounted, its loop device freed, in t.Cleanup, which
// runs after the cleanups of anything made on it later. A file system
// this host cannot make or mount is an error, for the caller to report:
// a kernel without a feature is a finding, not a failure.
func Loop(t testing.TB, fstype, opts string, mkfs ...string) (string, error) {
	t.Helper()
	dir, err := os.MkdirTemp("", "jailgate-testfs-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, Size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs."+fstype, append(mkfs, img)...).CombinedOutput(); err != nil {
		return "", &os.PathError{Op: "mkfs." + fstype + ": " + strings.TrimSpace(string(out)), Path: img, Err: err}
	}
	o := "loop"
	if opts != "" {
		o += "," + opts
	}
	if out, err := exec.Command("mount", "-o", o, img, mnt).CombinedOutput(); err != nil {
		return "", &os.PathError{Op: "mount -o " + o + ": " + strings.TrimSpace(string(out)), Path: img, Err: err}
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	return mnt, nil
}

// MustLoop is Loop, failing the test if the file system cannot be made.
func MustLoop(t testing.TB, fstype, opts string, mkfs ...string) string {
	t.Helper()
	mnt, err := Loop(t, fstype, opts, mkfs...)
	if err != nil {
		t.Fatal(err)
	}
	return mnt
}

// Btrfs is MustLoop of a btrfs with quotas on (btrfs quota enable).
func Btrfs(t testing.TB) string {
	t.Helper()
	mnt := MustLoop(t, "btrfs", "", "-q")
	if out, err := exec.Command("btrfs", "quota", "enable", mnt).CombinedOutput(); err != nil {
		t.Fatalf("btrfs quota enable: %v: %s", err, out)
	}
	return mnt
}
