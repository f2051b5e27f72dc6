package jail

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// A blank init mounts its proc and sysfs, masked, over the host's /proc
// and /sys before it knows whose they will be (prepareMounts), in the
// environment's own mount namespace (made rslave first), so the host never
// sees them; nothing of the blank's may create a file there (its uid is
// not mapped yet: EOVERFLOW), so they go on directories that exist.
// stagingDir is where the init binds the tenant's rootfs before
// pivot_root (a host directory every uid can search); proc and sys then
// move into her tree.
const stagingDir = "/tmp"

// rootFd is the staged rootfs, opened once mountRootfs has bound it.
var rootFd = -1

// procFdPath names an fd through /proc/self/fd; mounting onto such a path
// mounts onto exactly the inode we opened, with no path re-resolution
// (the runc fix for CVE-2019-19921 does the same).
func procFdPath(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// errSymlink refuses a mount point the tenant turned into a symlink.
var errSymlink = errors.New("mount point is a symlink in the tenant's tree; refusing to follow it")

// openInRoot opens rel inside the tenant's tree without following any
// symlink and without leaving the tree (openat2 RESOLVE_IN_ROOT |
// RESOLVE_NO_SYMLINKS): the tree belongs to the tenant, who may have left a
// "proc -> /etc" link for the next login to follow. With mkdir, a missing
// last component is created as a directory.
func openInRoot(rel string, mkdir bool) (int, error) {
	how := &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(rootFd, rel, how)
	if errors.Is(err, unix.ENOENT) && mkdir {
		if merr := unix.Mkdirat(rootFd, rel, 0o755); merr != nil && !errors.Is(merr, unix.EEXIST) {
			return -1, merr
		}
		fd, err = unix.Openat2(rootFd, rel, how)
	}
	if errors.Is(err, unix.ELOOP) {
		return -1, errSymlink
	}
	return fd, err
}

// mountIn mounts onto rel inside the tenant's tree (see openInRoot). A
// directory mount point must be a directory, a file one a regular file.
func mountIn(rel string, dir bool, source, fstype string, flags uintptr, data string) *StepError {
	op := fmt.Sprintf("mount %s on /%s (%s)", describeSource(source, fstype), rel, mountFlags(flags))
	fd, serr := openMountPoint(rel, dir, op)
	if serr != nil {
		return serr
	}
	defer unix.Close(fd)
	if err := unix.Mount(source, procFdPath(fd), fstype, flags, data); err != nil {
		return stepErr("mount", op, "/"+rel, err)
	}
	return nil
}

// openMountPoint opens rel inside the tenant's tree (see openInRoot) as a
// mount point for op: a directory if dir, else a regular file; never a
// symlink.
func openMountPoint(rel string, dir bool, op string) (int, *StepError) {
	fd, err := openInRoot(rel, dir)
	if err != nil {
		return -1, stepErr("mount", op, "/"+rel, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, stepErr("mount", op, "/"+rel, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		unix.Close(fd)
		return -1, stepErr("mount", op, "/"+rel, errSymlink)
	}
	if isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR; dir != isDir {
		want := "a directory"
		if !dir {
			want = "a regular file"
		}
		unix.Close(fd)
		return -1, stepErr("mount", op, "/"+rel, fmt.Errorf("mount point is not %s", want))
	}
	return fd, nil
}

// describeSource names a mount source for messages.
func describeSource(source, fstype string) string {
	if fstype != "" {
		return fstype
	}
	return source
}

// mountFlags renders mount flags for messages, e.g. MS_NOSUID|MS_NODEV.
func mountFlags(flags uintptr) string {
	names := []struct {
		f uintptr
		n string
	}{{unix.MS_BIND, "MS_BIND"}, {unix.MS_REC, "MS_REC"}, {unix.MS_RDONLY, "MS_RDONLY"},
		{unix.MS_NOSUID, "MS_NOSUID"}, {unix.MS_NODEV, "MS_NODEV"}, {unix.MS_NOEXEC, "MS_NOEXEC"},
		{unix.MS_REMOUNT, "MS_REMOUNT"}, {unix.MS_MOVE, "MS_MOVE"}}
	s := ""
	for _, n := range names {
		if flags&n.f != 0 {
			if s != "" {
				s += "|"
			}
			s += n.n
		}
	}
	if s == "" {
		return "0"
	}
	return s
}

// devptsData are her devpts instance's options. Without max= every
// non-initial instance draws from the kernel's one pool (kernel.pty.max
// minus kernel.pty.reserve), and one tenant could take every terminal
// (issue 16); with it, hers end at limits.ptys.
func devptsData(ptys int64) string {
	data := "newinstance,ptmxmode=0666,mode=0620,gid=5"
	if ptys > 0 {
		data += fmt.Sprintf(",max=%d", ptys)
	}
	return data
}

// tmpData are the options of her /tmp and /dev/shm. Without size= each
// may grow to half the host's RAM, charged only to her memory limit (or,
// without one, to the host): limits.tmp bounds each.
func tmpData(size int64) string {
	if size > 0 {
		return fmt.Sprintf("mode=1777,size=%d", size)
	}
	return "mode=1777"
}

// prepareMounts is the part of her tree that does not depend on her: proc
// and sysfs of the environment's own namespaces, with their masks
// (maskPaths), mounted over /proc and /sys while the init is blank. They are
// mounted while the host's /proc is still attached: the kernel allows a
// new proc in a user namespace only where a fully visible one exists
// (mount_too_revealing). mountRootfs moves them into her tree.
func prepareMounts() *StepError {
	// Nothing we mount may propagate to the host (runsc setUpChroot).
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return stepErr("mount", "make / rslave (MS_REC|MS_SLAVE)", "/", err)
	}
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return stepErr("mount", "open", "/", err)
	}
	rootFd = fd
	defer func() { unix.Close(fd); rootFd = -1 }()
	const nsd = unix.MS_NOSUID | unix.MS_NODEV
	if serr := mountIn("proc", true, "proc", "proc", nsd|unix.MS_NOEXEC, ""); serr != nil {
		return serr
	}
	if serr := mountIn("sys", true, "sysfs", "sysfs", nsd|unix.MS_NOEXEC|unix.MS_RDONLY, ""); serr != nil {
		return serr
	}
	return maskPaths()
}

// mountRootfs builds the tenant's tree: the rootfs bound at the staging
// dir, then proc and sys moved in from /proc and /sys, dev, devpts, shm
// and tmp.
func mountRootfs(cfg *initConfig) *StepError {
	// Her rootfs comes as a detached mount tree the gateway cloned (a bind
	// of it and what is mounted under it): attached here, it is the very
	// directory the gateway opened, whatever her path names now.
	if err := unix.MoveMount(int(rootfsDir.Fd()), "", unix.AT_FDCWD, stagingDir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return stepErr("mount", "move_mount rootfs on "+stagingDir, cfg.Rootfs, err)
	}
	if err := unix.Chdir(stagingDir); err != nil {
		return stepErr("mount", "chdir", stagingDir, err)
	}
	var want, got unix.Stat_t
	if err := unix.Fstat(int(rootfsDir.Fd()), &want); err != nil {
		return stepErr("mount", "fstat rootfs fd", cfg.Rootfs, err)
	}
	if err := unix.Stat(".", &got); err != nil || got.Dev != want.Dev || got.Ino != want.Ino {
		return stepErr("mount", "verify rootfs", cfg.Rootfs, errors.New("the directory changed while the environment started"))
	}
	fd, err := unix.Open(".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return stepErr("mount", "open rootfs", stagingDir, err)
	}
	rootFd = fd
	if serr := moveProc(); serr != nil {
		return serr
	}
	const nsd = unix.MS_NOSUID | unix.MS_NODEV
	steps := []struct {
		rel, source, fstype string
		flags               uintptr
		data                string
	}{
		{"sys", "/sys", "", unix.MS_MOVE, ""},
		{"dev", "tmpfs", "tmpfs", unix.MS_NOSUID | unix.MS_NOEXEC, "mode=755,size=64k"},
		{"dev/pts", "devpts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, devptsData(cfg.PTYs)},
		{"dev/shm", "shm", "tmpfs", nsd, tmpData(cfg.Tmp)},
		{"tmp", "tmpfs", "tmpfs", nsd, tmpData(cfg.Tmp)},
	}
	for _, s := range steps {
		if err := mountIn(s.rel, true, s.source, s.fstype, s.flags, s.data); err != nil {
			return err
		}
		if s.rel == "dev" {
			if err := populateDev(); err != nil {
				return err
			}
		}
	}
	return nil
}

// moveProc moves the environment's proc (prepareMounts: over /proc) into
// her tree. Its /proc/self/fd is masked, so procFdPath cannot name the
// target: the move goes onto ".", after fchdir to it. Once moved, /proc is
// the host's again and procFdPath works for the mounts after it.
func moveProc() *StepError {
	const op = "mount /proc on /proc (MS_MOVE)"
	fd, serr := openMountPoint("proc", true, op)
	if serr != nil {
		return serr
	}
	defer unix.Close(fd)
	if err := unix.Fchdir(fd); err != nil {
		return stepErr("mount", op, "/proc", err)
	}
	err := unix.Mount("/proc", ".", "", unix.MS_MOVE, "")
	if cerr := unix.Fchdir(rootFd); err == nil {
		err = cerr
	}
	if err != nil {
		return stepErr("mount", op, "/proc", err)
	}
	return nil
}

// devices are bound from the host's /dev into the tenant's tmpfs /dev. A
// user namespace cannot mknod; binding the host's nodes is the only way, and
// the list is deliberately short: no block devices, no /dev/mem, no kmsg.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// populateDev fills the fresh tmpfs /dev: device binds, the devpts ptmx
// link and the usual fd links.
func populateDev() *StepError {
	devFd, err := openInRoot("dev", false)
	if err != nil {
		return stepErr("dev", "open", "/dev", err)
	}
	defer unix.Close(devFd)
	for _, name := range devices {
		f, err := unix.Openat(devFd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o666)
		if err != nil {
			return stepErr("dev", "create", "/dev/"+name, err)
		}
		unix.Close(f)
		if serr := mountIn("dev/"+name, false, "/dev/"+name, "", unix.MS_BIND, ""); serr != nil {
			return serr
		}
	}
	links := [][2]string{{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}}
	for _, l := range links {
		if err := unix.Symlinkat(l[0], devFd, l[1]); err != nil {
			return stepErr("dev", "symlink "+l[0], "/dev/"+l[1], err)
		}
	}
	return nil
}

// Paths hidden from the tenant (runc's default maskedPaths): kernel memory,
// keys and timing information that leak across tenants.
var maskedPaths = []string{
	"proc/acpi", "proc/kcore", "proc/keys", "proc/latency_stats", "proc/timer_list",
	"proc/timer_stats", "proc/sched_debug", "proc/scsi", "sys/firmware",
	"sys/devices/virtual/powercap",
}

// Paths made read-only (runc's default readonlyPaths): kernel tunables and
// the sysrq trigger. In a user namespace most writes there fail anyway; this
// closes the rest.
var readonlyPaths = []string{"proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"}

// initPrivate are the init's own /proc entries that would show the
// tenant its fds. Non-dumpable is not enough here: the init was exec'd in
// her user namespace, so its /proc/1 belongs to her root, who can list
// /proc/1/fd (though not follow the links). They are masked, for PID 1 and
// for each of its threads, which exist by now (prewarmThreads ran first),
// both as /proc/1/task/<tid> and as /proc/<tid>: /proc does not list a
// thread, but looks it up by number, and its fd table is the init's (issue
// 16). A thread the Go runtime makes after setup is not masked.
func initPrivate() []string {
	paths := []string{"proc/1/fdinfo", "proc/1/map_files", "proc/1/environ"} // and proc/1/fd: maskPaths
	tasks, _ := os.ReadDir("/proc/1/task")
	for _, t := range tasks {
		for _, sub := range []string{"fd", "fdinfo", "map_files", "environ"} {
			paths = append(paths, "proc/1/task/"+t.Name()+"/"+sub)
			if t.Name() != "1" {
				paths = append(paths, "proc/"+t.Name()+"/"+sub)
			}
		}
	}
	return paths
}

// maskPaths freezes readonlyPaths and hides maskedPaths and the init's
// own entries, in the blank's own proc and sys (prepareMounts), in an
// order that keeps procFdPath working until the last mount.
func maskPaths() *StepError {
	const procFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	for _, rel := range readonlyPaths {
		fd, err := openInRoot(rel, false)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return stepErr("readonly", "open", "/"+rel, err)
		}
		p := procFdPath(fd)
		err = unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, "")
		unix.Close(fd)
		if err == nil {
			// The fd names the directory under the new bind; open it again
			// to reach the bind itself. The remount must repeat the locked
			// flags of the proc mount.
			if fd, err = openInRoot(rel, false); err == nil {
				err = unix.Mount("", procFdPath(fd), "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|procFlags, "")
				unix.Close(fd)
			}
		}
		if err != nil {
			return stepErr("readonly", "bind-remount read-only", "/"+rel, err)
		}
	}
	// One empty read-only tmpfs, mounted over the first directory it masks,
	// is bound over every other: a tmpfs instance per masked directory (60
	// of them with the init's threads) was a superblock each, and every
	// memory-aware superblock on the host grows the shrinker table each new
	// memory cgroup allocates (≈ 520 B per 64 of them per cgroup), so the
	// cost of an environment grew with the number of environments (issue 20).
	empty := ""
	// proc/1/fd last: masked, it hides /proc/self/fd, which procFdPath names.
	for _, rel := range append(append(append([]string(nil), maskedPaths...), initPrivate()...), "proc/1/fd") {
		fd, err := openInRoot(rel, false)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return stepErr("mask", "open", "/"+rel, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		if err == nil {
			switch {
			case st.Mode&unix.S_IFMT == unix.S_IFDIR && empty == "":
				err = unix.Mount("tmpfs", procFdPath(fd), "tmpfs", unix.MS_RDONLY|procFlags, "size=0")
				empty = "/" + rel
			case st.Mode&unix.S_IFMT == unix.S_IFDIR: // read-only: its superblock is
				err = unix.Mount(empty, procFdPath(fd), "", unix.MS_BIND, "")
			default:
				err = unix.Mount("/dev/null", procFdPath(fd), "", unix.MS_BIND, "")
			}
		}
		unix.Close(fd)
		if err != nil {
			return stepErr("mask", "mount over", "/"+rel, err)
		}
	}
	return nil
}

// pivotRoot makes the staged rootfs "/" and detaches the old root, so that
// no path leads back to the host (runc pivotRoot; pivot_root(2) "."/"."
// idiom).
func pivotRoot(*initConfig) *StepError {
	if err := unix.PivotRoot(".", "."); err != nil {
		return stepErr("pivot_root", "pivot_root . .", stagingDir, err)
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return stepErr("pivot_root", "make old root rslave", "/", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return stepErr("pivot_root", "umount2 old root (MNT_DETACH)", "/", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return stepErr("pivot_root", "chdir", "/", err)
	}
	unix.Close(rootFd)
	rootFd = -1
	// runc verifyCwd: the cwd must be inside the new root.
	if wd, err := os.Getwd(); err != nil || wd != "/" {
		return stepErr("pivot_root", "verify cwd", wd, fmt.Errorf("cwd outside the new root: %v", err))
	}
	return nil
}

// newCgroupNS gives the environment a cgroup namespace rooted at the
// cgroup the gateway placed the init in (her environment's), so that she
// sees "/" there and nothing of the host's tree (cgroup_namespaces(7)). It
// is made now rather than at clone because a blank init is born in a pool
// cgroup. unshare(2) changes only the calling thread; every other thread
// of the init then joins the same namespace (setns on all threads), so
// whichever thread forks her processes gives them this one.
func newCgroupNS(*initConfig) *StepError {
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return stepErr("cgroupns", "unshare CLONE_NEWCGROUP", "", err)
	}
	fd, err := unix.Open("/proc/thread-self/ns/cgroup", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return stepErr("cgroupns", "open", "/proc/thread-self/ns/cgroup", err)
	}
	defer unix.Close(fd)
	if err := allThreads(unix.SYS_SETNS, uintptr(fd), unix.CLONE_NEWCGROUP, 0); err != nil {
		return stepErr("cgroupns", "setns CLONE_NEWCGROUP on every thread", "", err)
	}
	return nil
}
