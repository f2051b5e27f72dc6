package rootfs

// The project disk quota backend: her tree carries a project id of its
// own, and the file system (ext4 with the project feature mounted
// prjquota, or XFS mounted prjquota/pquota) bounds the blocks and inodes
// of that project. The id is set with FS_IOC_FSSETXATTR on every file of
// her tree, with FS_XFLAG_PROJINHERIT on its directories, so what she
// makes later inherits it; the limits with quotactl's generic interface
// (Q_SETQUOTA, struct if_dqblk), which both file systems implement. How
// moby's pkg/quota (XFS) and Kubernetes' fsquota do it; see
// ioctl_xfs_fsgetxattr(2) and quotactl(2).
//
// Her root inside cannot lift it: the kernel refuses to change a project
// id or the inherit flag from any user namespace but the initial one
// (fileattr_set_prepare, fs/ioctl.c), Q_SETQUOTA needs CAP_SYS_ADMIN in
// the initial one, and a rename or hard link into a directory of another
// project fails with EXDEV (ext4_rename, xfs_rename).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel's numbers x/sys/unix does not name (include/uapi/linux/fs.h,
// include/uapi/linux/quota.h, include/uapi/linux/dqblk_xfs.h).
const (
	iocFSGetXattr = 0x801c581f // FS_IOC_FSGETXATTR, _IOR('X', 31, struct fsxattr)
	iocFSSetXattr = 0x401c5820 // FS_IOC_FSSETXATTR, _IOW('X', 32, struct fsxattr)
	xflagProjInh  = 0x200      // FS_XFLAG_PROJINHERIT

	prjQuota   = 2                      // PRJQUOTA
	qGetQuota  = 0x800007<<8 | prjQuota // QCMD(Q_GETQUOTA, PRJQUOTA)
	qSetQuota  = 0x800008<<8 | prjQuota // QCMD(Q_SETQUOTA, PRJQUOTA)
	qXGetQStat = 0x5805<<8 | prjQuota   // QCMD(Q_XGETQSTAT, PRJQUOTA)
	qifLimits  = 1 | 4                  // QIF_BLIMITS | QIF_ILIMITS
	qifBlock   = 1024                   // QIF_DQBLKSIZE: the unit of dqb_*limit

	pdqAcct = 0x10 // FS_QUOTA_PDQ_ACCT: project usage is accounted
	pdqEnfd = 0x20 // FS_QUOTA_PDQ_ENFD: project limits are enforced
)

// fsxattr is struct fsxattr.
type fsxattr struct {
	xflags, extsize, nextents, projid, cowextsize uint32
	pad                                           [8]byte
}

// dqblk is struct if_dqblk.
type dqblk struct {
	bhardlimit, bsoftlimit, curspace  uint64
	ihardlimit, isoftlimit, curinodes uint64
	btime, itime                      uint64
	valid                             uint32
	_                                 uint32
}

// ProjectTree is what the project backend needs to know about a tree.
type ProjectTree struct {
	FS       string // "ext4" or "xfs"; "" on any other file system
	Enforced bool   // project quotas are accounted and enforced there
	Why      string // why not, if FS is set and Enforced is not
}

// ProbeProject says whether dir's file system can bound a project: ext4
// or XFS with project quotas accounted and enforced (Q_XGETQSTAT).
func ProbeProject(dir string) (ProjectTree, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return ProjectTree{}, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	var t ProjectTree
	switch sfs.Type {
	case unix.EXT4_SUPER_MAGIC:
		t.FS = "ext4"
	case unix.XFS_SUPER_MAGIC:
		t.FS = "xfs"
	default:
		return t, nil
	}
	// ENOSYS: no quota of any type is on there, or the kernel has no
	// quota support for this file system (quota_getstate, fs/quota/quota.c).
	var stat [128]byte // struct fs_quota_stat: qs_version, then the u16 qs_flags
	switch err := quotactl(dir, qXGetQStat, 0, unsafe.Pointer(&stat)); {
	case err != nil && !errors.Is(err, unix.ENOSYS):
		t.Why = "quotactl Q_XGETQSTAT: " + err.Error()
	case err != nil || binary.NativeEndian.Uint16(stat[2:4])&(pdqAcct|pdqEnfd) != pdqAcct|pdqEnfd:
		t.Why = "project quotas are not on and enforced (mount option prjquota)"
	default:
		t.Enforced = true
	}
	return t, nil
}

// quotactl runs quotactl cmd for id on the file system holding dir:
// quotactl_fd(2) on dir, or, on kernels before 5.14, quotactl(2) on the
// device /proc/self/mountinfo names for it.
func quotactl(dir string, cmd uintptr, id uint32, addr unsafe.Pointer) error {
	fd, err := openTree(dir)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, _, e := unix.Syscall6(unix.SYS_QUOTACTL_FD, uintptr(fd), cmd, uintptr(id), uintptr(addr), 0, 0)
	if e != unix.ENOSYS {
		return errnoErr(e)
	}
	_, _, src := MountOf(dir)
	dev, err := unix.BytePtrFromString(src)
	if err != nil {
		return err
	}
	_, _, e = unix.Syscall6(unix.SYS_QUOTACTL, cmd, uintptr(unsafe.Pointer(dev)), uintptr(id), uintptr(addr), 0, 0)
	return errnoErr(e)
}

// errnoErr is e as an error, nil for 0.
func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// SetProject gives every directory and regular file of the tree dir
// project id, and its directories the inherit flag, so that what is made
// there later carries id too. The tree is hostile: the walk never follows
// a symlink, stays on dir's mount, and opens each file with O_NOFOLLOW,
// checking it is the one it looked at. Symlinks and special files are
// left alone (they cannot be opened safely; ones made later inherit id).
func SetProject(dir string, id uint32) error {
	fd, err := openTree(dir)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	w := &walker{}
	w.visit = func(dfd int, name, display string, st *unix.Statx_t) error {
		return setProjectAt(dfd, name, display, st, id)
	}
	return w.walk(fd, dir)
}

// setProjectAt sets project id on name in dfd (dfd itself, a directory, if
// name is empty), if it is a directory or a regular file.
func setProjectAt(dfd int, name, display string, st *unix.Statx_t, id uint32) error {
	typ := uint32(st.Mode) & unix.S_IFMT
	fd := dfd
	if name != "" {
		if typ != unix.S_IFREG {
			return nil
		}
		var err error
		if fd, err = openSame(dfd, name, st.Ino, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY); err != nil {
			return &os.PathError{Op: "open", Path: display, Err: err}
		} else if fd < 0 {
			return nil // gone or replaced meanwhile: not the file looked at
		}
		defer unix.Close(fd)
	}
	var x fsxattr
	if err := ioctlPtr(fd, iocFSGetXattr, unsafe.Pointer(&x)); err != nil {
		return &os.PathError{Op: "FS_IOC_FSGETXATTR", Path: display, Err: err}
	}
	want := x
	want.projid = id
	if typ == unix.S_IFDIR {
		want.xflags |= xflagProjInh
	}
	if want == x {
		return nil
	}
	if err := ioctlPtr(fd, iocFSSetXattr, unsafe.Pointer(&want)); err != nil {
		return &os.PathError{Op: "FS_IOC_FSSETXATTR", Path: display, Err: err}
	}
	return nil
}

// ioctlPtr calls ioctl req on fd with arg.
func ioctlPtr(fd int, req uintptr, arg unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	return errnoErr(e)
}

// ProjectOf is the project id dir carries, and whether it has the
// inherit flag.
func ProjectOf(dir string) (id uint32, inherit bool, err error) {
	fd, err := openTree(dir)
	if err != nil {
		return 0, false, err
	}
	defer unix.Close(fd)
	var x fsxattr
	if err := ioctlPtr(fd, iocFSGetXattr, unsafe.Pointer(&x)); err != nil {
		return 0, false, &os.PathError{Op: "FS_IOC_FSGETXATTR", Path: dir, Err: err}
	}
	return x.projid, x.xflags&xflagProjInh != 0, nil
}

// SetProjectLimit bounds project id on dir's file system to bytes and
// inodes (0: unlimited).
func SetProjectLimit(dir string, id uint32, bytes, inodes int64) error {
	d := dqblk{bhardlimit: uint64(bytes+qifBlock-1) / qifBlock, ihardlimit: uint64(inodes), valid: qifLimits}
	if err := quotactl(dir, qSetQuota, id, unsafe.Pointer(&d)); err != nil {
		return fmt.Errorf("quotactl Q_SETQUOTA project %d on %s: %w", id, dir, err)
	}
	return nil
}

// projectUsage reads what project id holds on dir's file system, and its
// limits.
func projectUsage(dir string, id uint32) (Usage, error) {
	var d dqblk
	if err := quotactl(dir, qGetQuota, id, unsafe.Pointer(&d)); err != nil {
		if errors.Is(err, unix.ESRCH) {
			err = fmt.Errorf("%w: project quotas are off", err)
		}
		return Usage{}, fmt.Errorf("quotactl Q_GETQUOTA project %d on %s: %w", id, dir, err)
	}
	return Usage{Backend: QuotaProject, Bytes: int64(d.curspace), BytesLimit: int64(d.bhardlimit * qifBlock),
		Inodes: int64(d.curinodes), InodesLimit: int64(d.ihardlimit)}, nil
}
