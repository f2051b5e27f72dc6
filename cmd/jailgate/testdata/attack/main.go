// Command attack makes, inside a jail, one call an escaping tenant would
// make and that a shell cannot, and prints one verdict line: "BLOCKED
// <errno>", "ESCAPED <detail>" or "CONTAINED <detail>". The escape tests
// copy it (static, CGO_ENABLED=0) into a tenant's rootfs.
package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Println("usage: attack tiocsti|tiocsti-hi|keyctl|io_uring|fanotify|personality|vsock|rawsock|chroot|...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "tiocsti": // push a byte into its own terminal's input queue
		c := byte('x')
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
		verdict(errno, "TIOCSTI injected a byte")
	case "tiocsti-hi": // the same with the upper 32 bits set (CVE-2019-10063)
		c := byte('x')
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCSTI|1<<32, uintptr(unsafe.Pointer(&c)))
		verdict(errno, "TIOCSTI|1<<32 injected a byte")
	case "io_uring": // a ring: syscalls run by kernel workers
		var params [120]byte // struct io_uring_params
		fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 8, uintptr(unsafe.Pointer(&params[0])), 0)
		if errno == 0 {
			unix.Close(int(fd))
		}
		verdict(errno, "io_uring_setup made a ring")
	case "fanotify": // the unprivileged form (Linux 5.13+)
		fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_REPORT_FID, unix.O_RDONLY)
		if err != nil {
			fmt.Println("BLOCKED", err)
			return
		}
		unix.Close(fd)
		fmt.Println("ESCAPED fanotify_init")
	case "personality": // switch off address-space randomization
		const addrNoRandomize = 0x0040000
		_, _, errno := unix.Syscall(unix.SYS_PERSONALITY, addrNoRandomize, 0, 0)
		verdict(errno, "personality(ADDR_NO_RANDOMIZE)")
	case "vsock": // a socket that is not network-namespaced
		fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
		if err != nil {
			fmt.Println("BLOCKED", err)
			return
		}
		unix.Close(fd)
		fmt.Println("ESCAPED AF_VSOCK socket")
	case "ptys": // hold terminals: up to os.Args[2] of them, until stdin closes
		max := 4096
		if len(os.Args) > 2 {
			max, _ = strconv.Atoi(os.Args[2])
		}
		n, err := 0, error(nil)
		for ; n < max; n++ {
			if _, err = unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY, 0); err != nil {
				break
			}
		}
		fmt.Println("OPENED", n, err)
		io.Copy(io.Discard, os.Stdin)
	case "inotify": // hold inotify instances: up to os.Args[2] of them, until stdin closes
		max := 4096
		if len(os.Args) > 2 {
			max, _ = strconv.Atoi(os.Args[2])
		}
		n, err := 0, error(nil)
		for ; n < max; n++ {
			if _, err = unix.InotifyInit1(unix.IN_CLOEXEC); err != nil {
				break
			}
		}
		fmt.Println("OPENED", n, err)
		io.Copy(io.Discard, os.Stdin)
	case "keyctl": // reach the session keyring
		_, _, errno := unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, uintptr(0xfffffffd), 1)
		verdict(errno, "keyctl answered")
	case "rawsock":
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
		if err != nil {
			fmt.Println("BLOCKED", err)
			return
		}
		unix.Close(fd)
		fmt.Println("ESCAPED raw socket")
	case "chroot": // the classic: chroot into a subdir, climb, chroot "."
		os.MkdirAll("/tmp/attack-chroot", 0o755)
		if err := unix.Chroot("/tmp/attack-chroot"); err != nil {
			fmt.Println("BLOCKED", err)
			return
		}
		for i := 0; i < 256; i++ {
			unix.Chdir("..")
		}
		unix.Chroot(".")
		// Her tree carries this marker (rootfs from-host); the host's does not.
		if _, err := os.Stat("/etc/jailgate-rootfs"); err == nil {
			fmt.Println("CONTAINED still in her own tree")
		} else {
			fmt.Println("ESCAPED left her tree")
		}
	case "ptrace-init": // attach to PID 1, the environment's init
		if err := unix.PtraceAttach(1); err != nil {
			fmt.Println("BLOCKED", err)
			return
		}
		var ws unix.WaitStatus
		unix.Wait4(1, &ws, unix.WALL, nil)
		unix.PtraceDetach(1)
		fmt.Println("ESCAPED attached to the init")
	case "write-init-exe": // overwrite the gateway binary through the init (CVE-2019-5736)
		fd, err := unix.Open("/proc/1/exe", unix.O_WRONLY, 0)
		if err != nil {
			fmt.Println("BLOCKED", err)
			return
		}
		unix.Close(fd)
		fmt.Println("ESCAPED opened the gateway binary for writing")
	case "bpf": // create a BPF map (the verifier and maps are kernel attack surface)
		attr := [5]uint32{unix.BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0}
		fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_CREATE, uintptr(unsafe.Pointer(&attr[0])), unsafe.Sizeof(attr))
		if errno == 0 {
			unix.Close(int(fd))
		}
		verdict(errno, "created a BPF map")
	case "module": // load a kernel module (an empty one: past the permission check it fails on its content)
		null, _ := unix.Open("/dev/null", unix.O_RDONLY, 0)
		_, _, errno := unix.Syscall(unix.SYS_FINIT_MODULE, uintptr(null), uintptr(unsafe.Pointer(&[1]byte{})), 0)
		pastPermission(errno, "finit_module got past the permission check")
	case "pivot-root": // pivot the mount namespace's root
		err := unix.PivotRoot(".", ".")
		errno, _ := err.(unix.Errno)
		pastPermission(errno, "pivot_root got past the permission check")
	case "btrfs-subvol": // a subvolume in her tree: its own qgroup, outside her quota
		var args struct {
			fd   int64
			name [4088]byte
		}
		copy(args.name[:], "escape")
		pastPermission(dirIoctl(os.Args[2], 0x5000940e, unsafe.Pointer(&args)), "BTRFS_IOC_SUBVOL_CREATE made a subvolume")
	case "btrfs-snap": // a snapshot of her tree: the same, with her files in it
		src, err := unix.Open(os.Args[2], unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			fmt.Println("BLOCKED", err)
			return
		}
		var args struct {
			fd, transid, flags int64
			unused             [4]uint64
			name               [4040]byte
		}
		args.fd = int64(src)
		copy(args.name[:], "snap")
		pastPermission(dirIoctl(os.Args[2], 0x50009417, unsafe.Pointer(&args)), "BTRFS_IOC_SNAP_CREATE_V2 made a snapshot")
	case "fssetxattr": // move a file to another project (project quota id)
		fssetxattr(os.Args[2])
	case "mount": // mount os.Args[2] (her disk image, say) as ext4 on a dir of hers
		os.MkdirAll("/tmp/attack-mnt", 0o755)
		err := unix.Mount(os.Args[2], "/tmp/attack-mnt", "ext4", 0, "")
		errno, _ := err.(unix.Errno)
		pastPermission(errno, "mounted "+os.Args[2])
	case "remount-root": // remount her root (the overlay on her image) without nosuid
		err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND, "")
		errno, _ := err.(unix.Errno)
		pastPermission(errno, "remounted /")
	case "reach": // stat each of os.Args[2:] (her image file, its mount, the loop devices)
		for _, p := range os.Args[2:] {
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err == nil {
				fmt.Println("ESCAPED sees", p)
				return
			}
		}
		fmt.Println("BLOCKED none is visible")
	default:
		fmt.Println("unknown attack")
		os.Exit(2)
	}
}

// pastPermission reports a call refused for lack of permission as
// BLOCKED, and one that got further (success, or failing on its arguments)
// as ESCAPED.
func pastPermission(errno unix.Errno, escaped string) {
	if errno == unix.EPERM || errno == unix.EACCES {
		fmt.Println("BLOCKED", errno)
		return
	}
	if errno == unix.ENOSYS {
		fmt.Println("UNSUPPORTED by this kernel")
		return
	}
	fmt.Println("ESCAPED", escaped, errno)
}

// verdict prints the outcome of a raw syscall.
func verdict(errno unix.Errno, escaped string) {
	if errno != 0 {
		fmt.Println("BLOCKED", errno)
		return
	}
	fmt.Println("ESCAPED", escaped)
}

// FS_IOC_FSGETXATTR and FS_IOC_FSSETXATTR (include/uapi/linux/fs.h).
const (
	fsGetXattr = 0x801c581f
	fsSetXattr = 0x401c5820
)

// dirIoctl calls ioctl req with arg on the directory dir.
func dirIoctl(dir string, req uintptr, arg unsafe.Pointer) unix.Errno {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err.(unix.Errno)
	}
	defer unix.Close(fd)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	return errno
}

// fssetxattr sets file's project id to 4242 with FS_IOC_FSSETXATTR and
// reads it back: refused (BLOCKED), accepted but unchanged (CONTAINED), or
// changed (ESCAPED).
func fssetxattr(file string) {
	var x struct {
		xflags, extsize, nextents, projid, cowextsize uint32
		pad                                           [8]byte
	}
	fd, err := unix.Open(file, unix.O_RDONLY, 0)
	if err != nil {
		fmt.Println("BLOCKED", err)
		return
	}
	defer unix.Close(fd)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsGetXattr, uintptr(unsafe.Pointer(&x))); e != 0 {
		fmt.Println("BLOCKED FS_IOC_FSGETXATTR", e)
		return
	}
	x.projid = 4242
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsSetXattr, uintptr(unsafe.Pointer(&x))); e != 0 {
		fmt.Println("BLOCKED", e)
		return
	}
	unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsGetXattr, uintptr(unsafe.Pointer(&x)))
	if x.projid != 4242 {
		fmt.Println("CONTAINED project id still", x.projid)
		return
	}
	fmt.Println("ESCAPED project id now 4242")
}
