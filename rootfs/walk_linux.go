//go:build linux

package rootfs

import (
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxDepth bounds the directories held open at once by a walk. A path
// deeper than this would be longer than PATH_MAX (4096) anyway, so nothing
// inside the environment can use it by name either.
const maxDepth = 2048

var errTooDeep = errors.New("directory tree too deep")

// statxMask asks for what the walk needs; STATX_MNT_ID (Linux 5.8) tells a
// bind mount of the same file system from a plain directory, which st_dev
// cannot.
const statxMask = unix.STATX_TYPE | unix.STATX_MODE | unix.STATX_UID | unix.STATX_GID |
	unix.STATX_INO | unix.STATX_NLINK | unix.STATX_MNT_ID

// openTree opens dir as the top of a walk, refusing a link in its last
// component with ErrSymlink and a non-directory with ErrNotDir.
func openTree(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		return fd, nil
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		var st unix.Stat_t
		if unix.Lstat(dir, &st) == nil {
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFLNK:
				return -1, &os.PathError{Op: "open", Path: dir, Err: ErrSymlink}
			case unix.S_IFDIR:
			default:
				return -1, &os.PathError{Op: "open", Path: dir, Err: ErrNotDir}
			}
		}
	}
	return -1, &os.PathError{Op: "open", Path: dir, Err: err}
}

type fileID struct {
	dev, ino uint64
}

// walker shifts one tree. Every operation is relative to a directory
// descriptor and never follows a link.
type walker struct {
	ids    idShift
	dev    uint64 // device of the top directory
	mnt    uint64 // mount id of the top directory, if useMnt
	useMnt bool
	seen   map[fileID]bool // hard-linked files already shifted
	stats  ShiftStats
	// visit is done to each file of the tree, top first: name in dfd, or
	// dfd itself if name is empty (every directory, opened). fix, for a
	// shift.
	visit func(dfd int, name, display string, st *unix.Statx_t) error
}

// shiftFD shifts the tree whose top directory is open as fd. Display is the
// tree's path, used in errors only.
func shiftFD(fd int, display string, ids idShift) (ShiftStats, error) {
	w := &walker{ids: ids}
	w.visit = w.fix
	err := w.walk(fd, display)
	return w.stats, err
}

// walk does w.visit to the directory fd and everything under it on the
// same mount, never following a symlink.
func (w *walker) walk(fd int, display string) error {
	w.seen = map[fileID]bool{}
	var st unix.Statx_t
	if err := statxAt(fd, "", &st); err != nil {
		return &os.PathError{Op: "statx", Path: display, Err: err}
	}
	if uint32(st.Mode)&unix.S_IFMT != unix.S_IFDIR {
		return &os.PathError{Op: "walk", Path: display, Err: ErrNotDir}
	}
	w.dev = devOf(&st)
	if st.Mask&unix.STATX_MNT_ID != 0 {
		w.mnt, w.useMnt = st.Mnt_id, true
	}
	w.stats.Entries++
	if err := w.visit(fd, "", display, &st); err != nil {
		return err
	}
	return w.dir(fd, display, 1)
}

func statxAt(dfd int, name string, st *unix.Statx_t) error {
	// AT_NO_AUTOMOUNT: looking must not mount anything.
	flags := unix.AT_SYMLINK_NOFOLLOW | unix.AT_NO_AUTOMOUNT
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	for {
		err := unix.Statx(dfd, name, flags, statxMask, st)
		if err != unix.EINTR {
			return err
		}
	}
}

func devOf(st *unix.Statx_t) uint64 { return unix.Mkdev(st.Dev_major, st.Dev_minor) }

// sameMount reports whether st is on the top directory's mount. A mount
// point below the top is not ours to change: it may be a host directory
// bind-mounted in, or the tree itself mounted again (an endless walk).
func (w *walker) sameMount(st *unix.Statx_t) bool {
	if devOf(st) != w.dev {
		return false
	}
	return !w.useMnt || st.Mask&unix.STATX_MNT_ID == 0 || st.Mnt_id == w.mnt
}

// dir shifts the entries of the directory open as dfd.
func (w *walker) dir(dfd int, display string, depth int) error {
	if depth > maxDepth {
		return &os.PathError{Op: "walk", Path: display, Err: errTooDeep}
	}
	buf := make([]byte, 8<<10)
	for {
		n, err := unix.ReadDirent(dfd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "getdents64", Path: display, Err: err}
		}
		if n == 0 {
			return nil
		}
		_, _, names := unix.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			if err := w.entry(dfd, name, display+"/"+name, depth); err != nil {
				return err
			}
		}
	}
}

// entry shifts the entry name of the directory dfd, and its contents if it
// is a directory.
func (w *walker) entry(dfd int, name, display string, depth int) error {
	var st unix.Statx_t
	if err := statxAt(dfd, name, &st); err != nil {
		if err == unix.ENOENT { // removed meanwhile
			return nil
		}
		return &os.PathError{Op: "statx", Path: display, Err: err}
	}
	w.stats.Entries++
	if !w.sameMount(&st) {
		w.stats.Mounts++
		return nil
	}
	if uint32(st.Mode)&unix.S_IFMT != unix.S_IFDIR {
		if st.Nlink > 1 {
			id := fileID{devOf(&st), st.Ino}
			if w.seen[id] {
				return nil
			}
			w.seen[id] = true
		}
		return w.visit(dfd, name, display, &st)
	}
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return &os.PathError{Op: "openat", Path: display, Err: err}
	}
	defer unix.Close(fd)
	// From here on work on what was opened, not on what was looked at: the
	// name may have been swapped for another directory meanwhile.
	if err := statxAt(fd, "", &st); err != nil {
		return &os.PathError{Op: "statx", Path: display, Err: err}
	}
	if !w.sameMount(&st) {
		w.stats.Mounts++
		return nil
	}
	if err := w.visit(fd, "", display, &st); err != nil {
		return err
	}
	return w.dir(fd, display, depth+1)
}

// fix changes the owner of name in dfd (of dfd itself if name is empty)
// as the shift says.
func (w *walker) fix(dfd int, name, display string, st *unix.Statx_t) error {
	uid, u := w.ids.mapID(st.Uid)
	gid, g := w.ids.mapID(st.Gid)
	if u || g {
		w.stats.Unmapped++
	}
	if uid == st.Uid && gid == st.Gid {
		return nil
	}
	flags := unix.AT_SYMLINK_NOFOLLOW // re-own a link, never its target
	if name == "" {
		flags = unix.AT_EMPTY_PATH
	}
	if err := unix.Fchownat(dfd, name, int(uid), int(gid), flags); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return &os.PathError{Op: "fchownat", Path: display, Err: err}
	}
	w.stats.Changed++
	mode := uint32(st.Mode)
	if mode&unix.S_IFMT == unix.S_IFREG && mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		return restoreMode(dfd, name, display, st)
	}
	return nil
}

// restoreMode sets the mode bits of the regular file name again: chown(2)
// clears setuid and setgid even when root calls it (since Linux 2.2.13).
// The file is opened with O_PATH|O_NOFOLLOW and checked to be the inode
// that was shifted, so a link or another file swapped in is never changed.
func restoreMode(dfd int, name, display string, st *unix.Statx_t) error {
	fd, err := openSame(dfd, name, st.Ino, unix.O_PATH)
	if err != nil {
		return &os.PathError{Op: "open", Path: display, Err: err}
	} else if fd < 0 {
		return nil // gone or replaced meanwhile: not the file that was shifted
	}
	defer unix.Close(fd)
	mode := uint32(st.Mode) & 0o7777
	// fchmod(2) refuses O_PATH descriptors; chmod through the descriptor's
	// /proc link reaches exactly the inode it holds, link or not.
	err = unix.Fchmodat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), mode, 0)
	if err == unix.ENOENT { // no /proc: open the file itself
		err = chmodOpened(dfd, name, st.Ino, mode)
	}
	if err != nil {
		return &os.PathError{Op: "chmod", Path: display, Err: err}
	}
	return nil
}

func chmodOpened(dfd int, name string, ino uint64, mode uint32) error {
	fd, err := openSame(dfd, name, ino, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil || fd < 0 {
		return err
	}
	defer unix.Close(fd)
	return unix.Fchmod(fd, mode)
}

// openSame opens the regular file name in dfd (flags, with O_NOFOLLOW and
// O_CLOEXEC) if it is still inode ino; fd -1 and no error if it is gone,
// a link now, or another file: a hostile tree may swap files between a
// look and an open.
func openSame(dfd int, name string, ino uint64, flags int) (int, error) {
	fd, err := unix.Openat(dfd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT || err == unix.ELOOP {
		return -1, nil
	} else if err != nil {
		return -1, err
	}
	var now unix.Stat_t
	if err := unix.Fstat(fd, &now); err != nil || now.Ino != ino || now.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
