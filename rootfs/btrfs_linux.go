package rootfs

// The btrfs disk quota backend: her tree is a btrfs subvolume whose qgroup
// has a limit on the data it references (how LXD and systemd-homed do
// it). The ioctls are the kernel's (include/uapi/linux/btrfs.h), called
// directly: no btrfs-progs at run time. Quotas must be on for the file
// system (btrfs quota enable MOUNT): turning them on is the operator's
// choice, for it costs every write on that file system some accounting.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// btrfs ioctl requests (_IOR/_IOW/_IOWR(0x94, nr, size)).
const (
	iocFSInfo      = 0x8400941f // BTRFS_IOC_FS_INFO, struct btrfs_ioctl_fs_info_args (1024)
	iocInoLookup   = 0xd0009412 // BTRFS_IOC_INO_LOOKUP, struct btrfs_ioctl_ino_lookup_args (4096)
	iocSubvolCreat = 0x5000940e // BTRFS_IOC_SUBVOL_CREATE, struct btrfs_ioctl_vol_args (4096)
	iocQgroupLimit = 0x8030942b // BTRFS_IOC_QGROUP_LIMIT, struct btrfs_ioctl_qgroup_limit_args (48)

	btrfsFirstFreeObjectID = 256 // the inode number of every subvolume's root
	qgroupLimitMaxRfer     = 1   // BTRFS_QGROUP_LIMIT_MAX_RFER
)

// BtrfsTree is what the btrfs backend needs to know about a tree.
type BtrfsTree struct {
	Btrfs     bool   // the tree is on btrfs
	Subvolume bool   // its root is a subvolume's root
	QuotaOn   bool   // quotas are on for its file system
	FSID      string // the file system's UUID, as /sys/fs/btrfs names it
}

// ProbeBtrfs says whether dir is on btrfs, a subvolume, and whether
// quotas are on there.
func ProbeBtrfs(dir string) (BtrfsTree, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return BtrfsTree{}, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	if sfs.Type != unix.BTRFS_SUPER_MAGIC {
		return BtrfsTree{}, nil
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return BtrfsTree{}, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	t := BtrfsTree{Btrfs: true, Subvolume: st.Ino == btrfsFirstFreeObjectID}
	fsid, err := btrfsFSID(dir)
	if err != nil {
		return t, err
	}
	t.FSID = fsid
	_, err = os.Stat(filepath.Join("/sys/fs/btrfs", fsid, "qgroups"))
	t.QuotaOn = err == nil
	return t, nil
}

// btrfsIoctl calls ioctl req on dir with arg.
func btrfsIoctl(dir string, req uintptr, arg unsafe.Pointer) error {
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, uintptr(arg)); e != 0 {
		return e
	}
	return nil
}

// btrfsFSID is the UUID of the btrfs file system holding dir.
func btrfsFSID(dir string) (string, error) {
	var args [1024]byte // max_id, num_devices (u64 each), then fsid[16]
	if err := btrfsIoctl(dir, iocFSInfo, unsafe.Pointer(&args)); err != nil {
		return "", fmt.Errorf("BTRFS_IOC_FS_INFO %s: %w", dir, err)
	}
	u := args[16:32]
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]), nil
}

// btrfsSubvolID is the id of the subvolume holding dir.
func btrfsSubvolID(dir string) (uint64, error) {
	var args struct {
		treeid, objectid uint64
		name             [4080]byte
	}
	args.objectid = btrfsFirstFreeObjectID
	if err := btrfsIoctl(dir, iocInoLookup, unsafe.Pointer(&args)); err != nil {
		return 0, fmt.Errorf("BTRFS_IOC_INO_LOOKUP %s: %w", dir, err)
	}
	return args.treeid, nil
}

// CreateSubvolume makes dir a new btrfs subvolume (its parent must exist
// and dir must not).
func CreateSubvolume(dir string) error {
	var args struct {
		fd   int64
		name [4088]byte
	}
	name := filepath.Base(dir)
	if len(name) >= len(args.name) {
		return fmt.Errorf("subvolume name %q too long", name)
	}
	copy(args.name[:], name)
	if err := btrfsIoctl(filepath.Dir(dir), iocSubvolCreat, unsafe.Pointer(&args)); err != nil {
		return fmt.Errorf("BTRFS_IOC_SUBVOL_CREATE %s: %w", dir, err)
	}
	return nil
}

// SetBtrfsLimit limits the data the subvolume dir references to bytes (0:
// no limit). A limit already in force is left alone. The ioctl runs a
// transaction on the subvolume of the fd it is called on, which btrfs
// refuses with EDQUOT once that subvolume is past its limit; so it is
// called on the parent's subvolume with her qgroup named, where a tenant
// past her quota (who must still log in), or one whose limit is lowered
// below what she holds, does not block it.
func SetBtrfsLimit(dir string, bytes int64) error {
	if u, err := btrfsUsage(dir); err == nil && u.BytesLimit == bytes {
		return nil
	}
	id, err := btrfsSubvolID(dir)
	if err != nil {
		return err
	}
	var args struct {
		qgroupid                                  uint64 // her subvolume's level-0 qgroup, 0/id
		flags, maxRfer, maxExcl, rsvRfer, rsvExcl uint64
	}
	args.qgroupid, args.flags = id, qgroupLimitMaxRfer
	args.maxRfer = uint64(bytes)
	if bytes == 0 {
		args.maxRfer = ^uint64(0) // the kernel's "no limit"
	}
	at := filepath.Dir(dir)
	if t, err := ProbeBtrfs(at); err != nil || !t.Btrfs {
		at = dir // her tree is a mount of its own: its own subvolume it is
	}
	if err := btrfsIoctl(at, iocQgroupLimit, unsafe.Pointer(&args)); err != nil {
		if errors.Is(err, unix.ENOTCONN) {
			err = fmt.Errorf("%w: quotas are off on this file system (btrfs quota enable MOUNT)", err)
		}
		return fmt.Errorf("BTRFS_IOC_QGROUP_LIMIT %s: %w", dir, err)
	}
	return nil
}

// btrfsUsage reads the subvolume dir's qgroup from sysfs: the data it
// references and its limit (0: none). btrfs has no inode quota.
func btrfsUsage(dir string) (Usage, error) {
	t, err := ProbeBtrfs(dir)
	if err != nil {
		return Usage{}, err
	}
	id, err := btrfsSubvolID(dir)
	if err != nil {
		return Usage{}, err
	}
	q := filepath.Join("/sys/fs/btrfs", t.FSID, "qgroups", fmt.Sprintf("0_%d", id))
	read := func(name string) int64 {
		b, _ := os.ReadFile(filepath.Join(q, name))
		s := strings.TrimSpace(string(b))
		n, _ := strconv.ParseInt(s, 10, 64)
		return n // "none": 0
	}
	if _, err := os.Stat(q); err != nil {
		return Usage{}, fmt.Errorf("no qgroup for %s (quotas off?): %w", dir, err)
	}
	return Usage{Backend: QuotaBtrfs, Bytes: read("referenced"), BytesLimit: read("max_referenced")}, nil
}
