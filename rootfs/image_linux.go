package rootfs

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ImageDir is where image NAME lives under the state directory.
func ImageDir(stateDir, name string) string { return filepath.Join(stateDir, "images", name) }

// tenantDir holds a tenant's persistent layer (upper and work dirs).
func tenantDir(stateDir, tenant string) string { return filepath.Join(stateDir, "tenants", tenant) }

// layerRoot holds the mount points (the idmapped lower and the merged
// tree) of one state directory's tenants. It lives under /run, not the
// state directory: the jail reaches a rootfs as the tenant's unprivileged
// ids, which need search permission on every directory above it, and a
// state directory is rightly 0700. The state directory's hash keeps two
// gateways (or test runs) apart.
func layerRoot(stateDir string) string {
	sum := sha256.Sum256([]byte(stateDir))
	return filepath.Join("/run/jailgate/layers", hex.EncodeToString(sum[:6]))
}

// imageMu serialises mounting, so concurrent first logins mount once.
var imageMu sync.Mutex

// MountImage gives tenant a persistent copy-on-write layer over the shared
// read-only image (design.md "image: NAME"): the image is mounted idmapped
// into her id range (so it appears owned by her root, while the files on
// disk stay root's and shared) as the lower layer of an overlay whose
// upper and work dirs are hers under state_dir/tenants/<tenant>/. It is
// mounted once per tenant and shared by her environments; it returns the
// merged tree. Needs Linux >= 5.19 (overlayfs over idmapped layers).
func MountImage(stateDir, tenant, image string, base, size uint32) (string, error) {
	imageMu.Lock()
	defer imageMu.Unlock()
	src := ImageDir(stateDir, image)
	if fi, err := os.Lstat(src); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("image %s: no such image under %s (build it with: jailgate rootfs from-host --image %s)",
			image, filepath.Dir(src), image)
	}
	t, mnt := tenantDir(stateDir, tenant), filepath.Join(layerRoot(stateDir), tenant)
	lower, upper, work, merged := filepath.Join(mnt, "lower"), filepath.Join(t, "upper"), filepath.Join(t, "work"), filepath.Join(mnt, "merged")
	if mounted(merged) {
		return merged, nil
	}
	for _, d := range []string{"/run/jailgate", "/run/jailgate/layers", layerRoot(stateDir), mnt, lower, merged} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return "", fmt.Errorf("image %s for %s: %w", image, tenant, err)
		}
	}
	for _, d := range []string{t, upper, work} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", fmt.Errorf("image %s for %s: %w", image, tenant, err)
		}
	}
	// The upper dir's mode is her "/": like the image's root, not 0700.
	if err := os.Chmod(upper, 0o755); err != nil {
		return "", fmt.Errorf("image %s for %s: %w", image, tenant, err)
	}
	// Her layer belongs to her root: new files in it are hers on disk.
	for _, d := range []string{upper, work} {
		if err := os.Lchown(d, int(base), int(base)); err != nil {
			return "", fmt.Errorf("image %s for %s: %w", image, tenant, err)
		}
	}
	if !mounted(lower) {
		if err := idmappedBind(src, lower, base, size); err != nil {
			return "", fmt.Errorf("image %s for %s: idmapped mount of %s (needs Linux >= 5.19): %w", image, tenant, src, err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if err := unix.Mount("overlay", merged, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return "", fmt.Errorf("image %s for %s: mount overlay on %s: %w", image, tenant, merged, err)
	}
	return merged, nil
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

// UnmountImages detaches every tenant layer under stateDir (at shutdown).
func UnmountImages(stateDir string) error {
	imageMu.Lock()
	defer imageMu.Unlock()
	root := layerRoot(stateDir)
	ents, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var errs []error
	for _, e := range ents {
		for _, sub := range []string{"merged", "lower"} {
			d := filepath.Join(root, e.Name(), sub)
			if mounted(d) {
				if err := unix.Unmount(d, unix.MNT_DETACH); err != nil {
					errs = append(errs, fmt.Errorf("unmount %s: %w", d, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}
