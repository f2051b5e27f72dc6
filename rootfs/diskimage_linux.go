package rootfs

// The image disk quota backend: an image: tenant's layer (upper and work
// dir) lives in a sparse ext4 image file of her quota's size, loop-mounted
// nosuid,nodev under her layer's mount point and unmounted with it (how
// systemd-homed's loopback homes work). It needs nothing of the host's
// file system or kernel but loop devices and ext4, and gives both a block
// and an inode bound.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/statedir"
)

// mkfsArgs are mkfs.ext4's arguments for an image of q at path:
//   - 4 KiB blocks, 256-byte inodes and one inode per 16 KiB whatever the
//     size: mke2fs's "small" profile (1 KiB blocks, one inode per 4 KiB)
//     would otherwise change the layout below 512 MiB;
//   - -N her inode limit plus imageReserveInodes (rounded up by mke2fs to
//     fill its inode tables);
//   - -m 0: no blocks reserved for root, which only the host's root could
//     use, never hers;
//   - the journal stays: after a host crash the kernel replays it at the
//     next mount, where an unjournaled image would need an e2fsck first
//     (it costs 4 MiB of a small image, which her quota pays).
func mkfsArgs(path string, q Quota) []string {
	args := []string{"-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-i", "16384", "-m", "0"}
	if q.Inodes > 0 {
		args = append(args, "-N", fmt.Sprint(q.Inodes+imageReserveInodes))
	}
	return append(args, path)
}

// imageReserveInodes are inodes of her image she cannot take. overlayfs
// needs a few free at each mount: it remakes work/work and tests
// RENAME_WHITEOUT with a temp file and a whiteout in it
// (fs/overlayfs/super.c, ovl_make_workdir), and fails with ENOSPC
// otherwise, so a tenant who had used every inode could not log in again.
// The image is made with her inodes plus these; the gateway holds them as
// empty files reserve.N at the image's root (outside her upper and work
// dirs, so never hers to see), lets them go just before the overlay mount
// and takes them back right after it, before her first process runs.
const imageReserveInodes = 16

// releaseReserve frees the reserve's inodes of the image mounted on mnt,
// for the overlay mount that follows.
func releaseReserve(mnt string) {
	for i := range imageReserveInodes {
		os.Remove(filepath.Join(mnt, fmt.Sprint("reserve.", i)))
	}
}

// holdReserve takes the reserve back once ly's overlay is mounted on her
// image (nothing for a layer without one). Failing to, because the image
// has no free inode left (an image made before the reserve, full), is
// logged: her next mount may then fail as before.
func (l *Layers) holdReserve(ly *layer) {
	_, mnt, _, _ := diskPaths(l.stateDir, ly.tenant, ly.p)
	if !mounted(mnt) {
		return
	}
	for i := range imageReserveInodes {
		fd, err := unix.Open(filepath.Join(mnt, fmt.Sprint("reserve.", i)),
			unix.O_CREAT|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o400)
		if err != nil {
			l.log.Warn("her disk image keeps fewer reserved inodes than the overlay may need at her next login",
				"tenant", ly.tenant, "held", i, "want", imageReserveInodes, "err", err)
			return
		}
		unix.Close(fd)
	}
}

// diskPaths are her layer's paths with the image backend: the image file,
// its mount point, and her upper and work dirs inside it.
func diskPaths(stateDir, tenant string, p layerPaths) (img, mnt, upper, work string) {
	mnt = filepath.Join(p.mnt, "disk")
	return statedir.New(stateDir).TenantDiskImage(tenant), mnt, filepath.Join(mnt, "upper"), filepath.Join(mnt, "work")
}

// mountDisk points ly's upper and work dirs into her disk image, made (or
// grown) for q and mounted, when q asks for the image backend or she has
// an image already (her data is in it); otherwise at her state dir.
func (l *Layers) mountDisk(ly *layer, q Quota) error {
	def := pathsOf(l.stateDir, ly.tenant)
	img, mnt, upper, work := diskPaths(l.stateDir, ly.tenant, ly.p)
	ly.p.upper, ly.p.work = def.upper, def.work
	_, err := os.Lstat(img)
	if q.Backend != QuotaImage && err != nil {
		return nil
	}
	if err != nil {
		if err := makeImage(img, q, def.upper); err != nil {
			return fmt.Errorf("disk image for %s: %w", ly.tenant, err)
		}
		l.log.Info("tenant disk image made", "tenant", ly.tenant, "image", img, "size", q.Bytes, "inodes", q.Inodes)
	}
	if err := os.MkdirAll(mnt, 0o711); err != nil {
		return err
	}
	if !mounted(mnt) {
		// The file system's own size: a failed online grow may have
		// grown the file already.
		if u, err := imageUsage(img, mnt); err == nil && q.Backend == QuotaImage && q.Bytes > u.BytesLimit {
			if err := growOffline(img, q.Bytes); err != nil {
				return fmt.Errorf("grow disk image of %s: %w", ly.tenant, err)
			}
			l.log.Info("tenant disk image grown", "tenant", ly.tenant, "from", u.BytesLimit, "to", q.Bytes)
		}
		if err := mountImage(img, mnt); err != nil {
			return fmt.Errorf("disk image for %s: %w", ly.tenant, err)
		}
	}
	ly.p.upper, ly.p.work = upper, work
	if err := l.requota(ly, q); err != nil {
		unix.Unmount(mnt, unix.MNT_DETACH)
		return err
	}
	releaseReserve(mnt) // for the overlay mount; held again once it is up
	return nil
}

// requota applies q to ly's mounted image: a larger size grows it online;
// a smaller one, or another inode count, is refused (logged once per
// value) and the image keeps what it has. Neither fails her login.
func (l *Layers) requota(ly *layer, q Quota) error {
	_, err := l.requotaWhy(ly, q)
	return err
}

// ErrQuotaRefused is what a live change of a disk image's quota that the
// image cannot take wraps (see Requota).
var ErrQuotaRefused = errors.New("disk quota change refused")

// requotaWhy is requota, saying why a change is refused or deferred (an
// error wrapping ErrQuotaRefused), or nil if q is in force.
func (l *Layers) requotaWhy(ly *layer, q Quota) (refused, err error) {
	defer func() { ly.quota = q }()
	img, mnt, _, _ := diskPaths(l.stateDir, ly.tenant, ly.p)
	if !mounted(mnt) || q.Backend != QuotaImage {
		return nil, nil
	}
	fi, err := os.Stat(img)
	if err != nil {
		return nil, err
	}
	switch {
	case q.Bytes > fi.Size():
		if err := growImage(img, mnt, q.Bytes); err != nil {
			// Online resizing needs CAP_SYS_RESOURCE (EXT4_IOC_RESIZE_FS),
			// which a gateway in a container may lack: offline, at her
			// next mount.
			l.log.Warn("her disk image could not grow while mounted; it grows at her next login",
				"tenant", ly.tenant, "to", q.Bytes, "err", err)
			return fmt.Errorf("%w: %s's disk image could not grow while mounted (%v); it grows to %d bytes at her next login",
				ErrQuotaRefused, ly.tenant, err, q.Bytes), nil
		}
		l.log.Info("tenant disk image grown", "tenant", ly.tenant, "from", fi.Size(), "to", q.Bytes)
	case q.Bytes < fi.Size():
		refused = fmt.Errorf("%w: limits.disk %d is below %s's disk image of %d bytes: an ext4 file system cannot shrink "+
			"while mounted, and what she keeps may not fit; her quota stays %d bytes (jailgate tenant reset discards her layer, "+
			"and the new size applies to her next image)", ErrQuotaRefused, q.Bytes, ly.tenant, fi.Size(), fi.Size())
		if q.Bytes != ly.quota.Bytes {
			l.log.Warn("limits.disk lowered below her disk image's size: refused, her quota stays as it is "+
				"(an ext4 file system cannot shrink while mounted, and what she keeps may not fit); "+
				"jailgate tenant reset discards her layer, and the new size applies to the next image",
				"tenant", ly.tenant, "image_size", fi.Size(), "limit", q.Bytes)
		}
	}
	if q.Inodes != ly.quota.Inodes && ly.quota.Backend == QuotaImage {
		l.log.Warn("limits.inodes changed: her disk image keeps the inode count it was made with "+
			"(ext4 fixes it at mkfs; growing the image adds inodes in proportion); jailgate tenant reset applies the new one",
			"tenant", ly.tenant, "inodes", q.Inodes)
	}
	return refused, nil
}

// Requota applies q live to tenant's layer if it is mounted (a reload
// that changed her limits): her disk image grows, online where the host
// allows; a lowered size is refused, the error wrapping ErrQuotaRefused
// and saying why. An unmounted layer takes q at her next login.
func (l *Layers) Requota(tenant string, q Quota) error {
	l.mu.Lock()
	ly := l.tenants[tenant]
	l.mu.Unlock()
	if ly == nil {
		return nil
	}
	ly.mu.Lock()
	defer ly.mu.Unlock()
	if !ly.mounted {
		return nil
	}
	refused, err := l.requotaWhy(ly, q)
	if err != nil {
		return err
	}
	return refused
}

// makeImage makes the sparse ext4 image img of q's size, moving into it
// her layer's existing upper dir oldUpper if she has one (an image: tenant
// who just got a disk limit). A layer that does not fit is refused, and
// left as it was.
func makeImage(img string, q Quota, oldUpper string) error {
	tmp := img + ".new"
	os.Remove(tmp) // one interrupted earlier
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(q.Bytes)
	f.Close()
	if err == nil {
		if out, e := exec.Command("mkfs.ext4", mkfsArgs(tmp, q)...).CombinedOutput(); e != nil {
			err = fmt.Errorf("mkfs.ext4 (e2fsprogs): %w: %s", e, strings.TrimSpace(string(out)))
		}
	}
	if err == nil {
		err = moveIn(tmp, oldUpper)
	}
	if err == nil {
		err = os.Rename(tmp, img)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// moveIn copies the layer upper dir old, if there is one, into the new
// image, and removes it (and its work dir) once copied.
func moveIn(image, old string) error {
	if _, err := os.Lstat(old); err != nil {
		return nil
	}
	dir, err := os.MkdirTemp(filepath.Dir(image), ".move-")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	if err := mountImage(image, dir); err != nil {
		return err
	}
	out, err := exec.Command("cp", "-a", "--no-target-directory", old, filepath.Join(dir, "upper")).CombinedOutput()
	if uerr := unix.Unmount(dir, 0); err == nil && uerr != nil {
		return fmt.Errorf("unmount %s: %w", dir, uerr)
	}
	if err != nil {
		return fmt.Errorf("her layer does not fit in limits.disk (copy %s into her new disk image: %v: %s)",
			old, err, strings.TrimSpace(string(out)))
	}
	os.RemoveAll(filepath.Join(filepath.Dir(old), "work"))
	return os.RemoveAll(old)
}

// attachLoop binds a free loop device to file, autoclearing: it is freed
// when its last user (the mount) goes.
func attachLoop(file string) (*os.File, error) {
	img, err := os.OpenFile(file, os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loop devices: %w", err)
	}
	defer ctl.Close()
	for range 20 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		dev, err := os.OpenFile(fmt.Sprintf("/dev/loop%d", n), os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		cfg := unix.LoopConfig{Fd: uint32(img.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], file)
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		if !errors.Is(err, unix.EBUSY) { // EBUSY: another took it first
			return nil, fmt.Errorf("LOOP_CONFIGURE %s: %w", dev.Name(), err)
		}
	}
	return nil, errors.New("no free loop device")
}

// mountImage loop-mounts the ext4 image img on dir, nosuid and nodev.
func mountImage(img, dir string) error {
	dev, err := attachLoop(img)
	if err != nil {
		return err
	}
	defer dev.Close() // the mount holds the device; autoclear frees it with the mount
	if err := unix.Mount(dev.Name(), dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", img, dev.Name(), dir, err)
	}
	return nil
}

// growImage grows the image img mounted on dir to size bytes, online: the
// file, then its loop device, then the file system (resize2fs).
func growImage(img, dir string, size int64) error {
	src := mountSource(dir)
	if !strings.HasPrefix(src, "/dev/loop") {
		return fmt.Errorf("%s: no loop device mounted there", dir)
	}
	if err := os.Truncate(img, size); err != nil {
		return err
	}
	dev, err := os.OpenFile(src, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer dev.Close()
	if _, err := unix.IoctlRetInt(int(dev.Fd()), unix.LOOP_SET_CAPACITY); err != nil {
		return fmt.Errorf("LOOP_SET_CAPACITY %s: %w", src, err)
	}
	if out, err := exec.Command("resize2fs", src).CombinedOutput(); err != nil {
		return fmt.Errorf("resize2fs %s: %w: %s", src, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// growOffline grows the unmounted image img to size bytes: e2fsck first,
// as resize2fs wants of an unmounted file system.
func growOffline(img string, size int64) error {
	if out, err := exec.Command("e2fsck", "-f", "-p", img).CombinedOutput(); err != nil {
		return fmt.Errorf("e2fsck %s: %w: %s", img, err, strings.TrimSpace(string(out)))
	}
	if fi, err := os.Stat(img); err != nil {
		return err
	} else if fi.Size() < size {
		if err := os.Truncate(img, size); err != nil {
			return err
		}
	}
	if out, err := exec.Command("resize2fs", img).CombinedOutput(); err != nil {
		return fmt.Errorf("resize2fs %s: %w: %s", img, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// mountSource is the source (the device) of the mount on dir, or "".
func mountSource(dir string) string {
	if mp, _, src := MountOf(dir); mp == dir {
		return src
	}
	return ""
}

// imageUsage reads what the image img holds: from the mounted file system
// on dir, or else from the image's superblock (exact after a clean
// unmount).
func imageUsage(img, dir string) (Usage, error) {
	if mounted(dir) {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			return Usage{}, err
		}
		bs := int64(st.Bsize)
		return Usage{Backend: QuotaImage, Bytes: int64(st.Blocks-st.Bfree) * bs, BytesLimit: int64(st.Blocks) * bs,
			Inodes: int64(st.Files-st.Ffree) - imageReserveInodes, InodesLimit: int64(st.Files) - imageReserveInodes}, nil
	}
	f, err := os.Open(img)
	if err != nil {
		return Usage{}, err
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil && err != io.EOF {
		return Usage{}, err
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
		return Usage{}, fmt.Errorf("%s: not an ext4 image", img)
	}
	u32 := func(off int) int64 { return int64(binary.LittleEndian.Uint32(sb[off:])) }
	bs := int64(1024) << u32(0x18)
	blocks, free := u32(0x4)|u32(0x150)<<32, u32(0xC)|u32(0x158)<<32
	return Usage{Backend: QuotaImage, Bytes: (blocks - free) * bs, BytesLimit: blocks * bs,
		Inodes: u32(0x0) - u32(0x10) - imageReserveInodes, InodesLimit: u32(0x0) - imageReserveInodes}, nil
}
