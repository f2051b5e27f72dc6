package rootfs

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/statedir"
)

// layerPaths are the directories of one tenant's layer.
type layerPaths struct {
	tenant, upper, work string // persistent, under state_dir/tenants/<tenant>
	mnt, lower, merged  string // mount points, under statedir's LayerMounts
	disk                string // her disk image's mount point (under mnt), holding upper and work
}

// pathsOf names tenant's layer directories: her persistent ones in the
// state directory, her mount points under /run (statedir.LayerMounts says
// why they are there).
func pathsOf(stateDir, tenant string) layerPaths {
	state := statedir.New(stateDir)
	t, mnt := state.Tenant(tenant), filepath.Join(state.LayerMounts(), tenant)
	return layerPaths{tenant: t, upper: state.TenantUpper(tenant), work: state.TenantWork(tenant),
		mnt: mnt, lower: filepath.Join(mnt, "lower"), merged: filepath.Join(mnt, "merged"), disk: filepath.Join(mnt, "disk")}
}

// noIDMapError says the kernel or the image's file system cannot give the
// overlay an idmapped lower layer; a shifted copy can stand in for it.
type noIDMapError struct{ err error }

func (e *noIDMapError) Error() string { return e.err.Error() }
func (e *noIDMapError) Unwrap() error { return e.err }

// refused reports whether err is the kernel saying no to a feature (rather
// than to this one call): an old kernel, or a file system without it.
func refused(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) ||
		errors.Is(err, unix.EOPNOTSUPP)
}

// mountLayer mounts the tenant's overlay on p.merged: upper and work dirs
// hers, the lower layer the image at src, shown in her id range [base,
// base+size) either by an idmapped mount (lowerCopy empty) or by the
// shifted copy at lowerCopy. A *noIDMapError says the idmapped mount was
// refused.
func mountLayer(p layerPaths, src, lowerCopy string, base, size uint32) error {
	if fi, err := os.Lstat(src); err != nil || !fi.IsDir() {
		return fmt.Errorf("no such image under %s (build it with: jailgate rootfs from-host --image %s)",
			filepath.Dir(src), filepath.Base(src))
	}
	mounts := filepath.Dir(p.mnt)
	for _, d := range []string{statedir.RuntimeDir, filepath.Dir(mounts), mounts, p.mnt, p.lower, p.merged} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
	}
	for _, d := range []string{p.upper, p.work} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// The upper dir's mode is her "/": like the image's root, not 0700.
	if err := os.Chmod(p.upper, 0o755); err != nil {
		return err
	}
	// Her layer belongs to her root: new files in it are hers on disk.
	for _, d := range []string{p.upper, p.work} {
		if err := os.Lchown(d, int(base), int(base)); err != nil {
			return err
		}
	}
	lower := lowerCopy
	if lower == "" {
		lower = p.lower
		if mounted(p.lower) { // left by a gateway that crashed: its ids may differ
			unix.Unmount(p.lower, unix.MNT_DETACH)
		}
		if err := idmappedBind(src, p.lower, base, size); err != nil {
			err = fmt.Errorf("idmapped mount of %s: %w", src, err)
			if refused(err) {
				return &noIDMapError{err}
			}
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, p.upper, p.work)
	if err := unix.Mount("overlay", p.merged, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		err = fmt.Errorf("mount overlay on %s: %w", p.merged, err)
		if lowerCopy == "" {
			unix.Unmount(p.lower, unix.MNT_DETACH)
			// Before Linux 5.19 overlayfs refuses idmapped layers (EINVAL).
			if errors.Is(err, unix.EINVAL) {
				return &noIDMapError{err}
			}
		}
		return err
	}
	return nil
}

// unmountLayer unmounts the tenant's merged tree and then its idmapped
// lower layer. Without detach, a merged tree still in use stays mounted
// and the error wraps EBUSY; with it, the tree is detached lazily (it goes
// when its last user does).
func unmountLayer(p layerPaths, detach bool) error {
	var errs []error
	if mounted(p.merged) {
		err := unix.Unmount(p.merged, 0)
		if errors.Is(err, unix.EBUSY) && detach {
			errs = append(errs, fmt.Errorf("unmount %s: %w; detached lazily", p.merged, err))
			err = unix.Unmount(p.merged, unix.MNT_DETACH)
		}
		if err != nil {
			return errors.Join(append(errs, &os.PathError{Op: "unmount", Path: p.merged, Err: err})...)
		}
	}
	// The overlay holds its own private clone of the lower mount: this
	// one has no user left that matters, and is read-only anyway.
	if mounted(p.lower) {
		if err := unix.Unmount(p.lower, unix.MNT_DETACH); err != nil {
			errs = append(errs, &os.PathError{Op: "unmount", Path: p.lower, Err: err})
		}
	}
	// Her disk image, last: the overlay above it is gone.
	if mounted(p.disk) {
		err := unix.Unmount(p.disk, 0)
		if err != nil && detach {
			err = unix.Unmount(p.disk, unix.MNT_DETACH)
		}
		if err != nil {
			errs = append(errs, &os.PathError{Op: "unmount", Path: p.disk, Err: err})
		}
	}
	for _, d := range []string{p.merged, p.lower, p.disk, p.mnt} {
		os.Remove(d) // an empty mount point; a busy one stays
	}
	return errors.Join(errs...)
}

// shiftedCopy returns the tenant's shifted copy of the image at src (her
// lower layer where the kernel cannot idmap it), making it the first time:
// the image copied into dir (state_dir/tenants/<tenant>) and its ownership
// shifted into [base, base+size). Its name hashes the image's identity and
// the range, so a replaced image (rootfs rm, then import) or a new range
// gets a new copy, and the old one is removed. A copy is not remade when
// an image is changed in place.
func shiftedCopy(dir, src string, base, size uint32) (string, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, src, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_INO|unix.STATX_BTIME, &st); err != nil {
		return "", &os.PathError{Op: "statx", Path: src, Err: err}
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d:%d\x00%d.%d\x00%d+%d", src, unix.Mkdev(st.Dev_major, st.Dev_minor), st.Ino,
		st.Btime.Sec, st.Btime.Nsec, base, size))
	dst := filepath.Join(dir, "lower-"+hex.EncodeToString(sum[:6]))
	if fi, err := os.Lstat(dst); err == nil && fi.IsDir() {
		return dst, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	tmp := dst + ".new"
	if err := os.RemoveAll(tmp); err != nil { // a copy interrupted earlier
		return "", err
	}
	// cp -a copies links as links, keeps hard links, modes, times and
	// xattrs; -x stays on the image's file system, as Shift does.
	cmd := exec.Command("cp", "-a", "-x", "--reflink=auto", "--no-target-directory", src, tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("copy %s to %s: %w: %s", src, tmp, err, strings.TrimSpace(string(out)))
	}
	if err := Shift(tmp, 0, base, size); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	old, _ := filepath.Glob(filepath.Join(dir, "lower-*"))
	for _, o := range old {
		if o != dst {
			os.RemoveAll(o)
		}
	}
	return dst, nil
}

// idmappedBind mounts src read-only on dst with ids 0..size-1 shown as
// base..base+size-1 (mount_setattr(2) MOUNT_ATTR_IDMAP), using the user
// namespace of a short-lived helper that has exactly that mapping.
func idmappedBind(src, dst string, base, size uint32) error {
	cmd := exec.Command("/bin/sleep", "infinity")
	m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(base), Size: int(size)}}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER, UidMappings: m, GidMappings: m}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("user namespace helper: %w", err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	ns, err := unix.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(ns)
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(tree)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV,
		Userns_fd: uint64(ns)}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, attr); err != nil {
		return fmt.Errorf("mount_setattr MOUNT_ATTR_IDMAP: %w", err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// mounted reports whether dir is a mount point.
func mounted(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == dir {
			return true
		}
	}
	return false
}
