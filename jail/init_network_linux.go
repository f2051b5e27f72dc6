package jail

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// networkUp builds the inside of the environment's network mode
// (initConfig.Network, which the gateway checked before clone): lo up in
// every mode, and for NetworkNone nothing else. What the gateway made from
// outside (networkModes) is already there: for NetworkNAT, eth0.
func networkUp(cfg *initConfig) *StepError {
	switch cfg.Network {
	case NetworkNone:
		return loopbackUp()
	case NetworkNAT:
		if cfg.NAT == nil {
			return &StepError{Step: "network", Op: "nat", Err: "no eth0 settings from the gateway"}
		}
		for _, step := range []func(*natNet) *StepError{
			func(*natNet) *StepError { return loopbackUp() },
			eth0Up,       // her address, the uplink's MTU, a default route via the host end
			resolvConfUp, // her resolvers, over /etc/resolv.conf while the environment lives
		} {
			if err := step(cfg.NAT); err != nil {
				return err
			}
		}
		return nil
	default:
		return &StepError{Step: "network", Op: "network mode", Err: fmt.Sprintf("%q is not supported", cfg.Network)}
	}
}

// loopbackUp brings up lo in the environment's network namespace.
func loopbackUp() *StepError {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return stepErr("network", "socket", "", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return stepErr("network", "ifreq lo", "", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return stepErr("network", "SIOCGIFFLAGS lo", "", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return stepErr("network", "SIOCSIFFLAGS lo up", "", err)
	}
	return nil
}

// eth0Up addresses eth0 (the veth end the gateway made in this namespace),
// sets the uplink's MTU, brings it up and routes everything via the host.
func eth0Up(n *natNet) *StepError {
	link, err := netlink.LinkByName("eth0")
	if err != nil {
		return stepErr("network", "find eth0", "", err)
	}
	addr, err := netlink.ParseAddr(n.Address)
	if err != nil {
		return stepErr("network", "parse address "+n.Address, "", err)
	}
	gw, err := netip.ParseAddr(n.Gateway)
	if err != nil {
		return stepErr("network", "parse gateway "+n.Gateway, "", err)
	}
	if n.MTU > 0 {
		if err := netlink.LinkSetMTU(link, n.MTU); err != nil {
			return stepErr("network", fmt.Sprintf("eth0 mtu %d", n.MTU), "", err)
		}
	}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return stepErr("network", "address "+n.Address+" on eth0", "", err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return stepErr("network", "eth0 up", "", err)
	}
	route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.IP(gw.AsSlice())}
	if err := netlink.RouteAdd(route); err != nil {
		return stepErr("network", "default route via "+n.Gateway, "", err)
	}
	return nil
}

// resolvStaging is where resolvConfUp writes her resolv.conf before the
// bind: the init's own tmpfs /dev, unlinked once bound.
const resolvStaging = "/dev/.jailgate-resolv.conf"

// resolvConfUp shows n.Resolv at /etc/resolv.conf: a file on the init's
// tmpfs bound over hers, so her tree keeps its own. A missing file, or a
// symlink to nothing (systemd-resolved's stub-resolv.conf), is made a
// plain empty file first. This runs after pivot_root: a symlink resolves
// inside her tree and the bind lands in her mount namespace only.
func resolvConfUp(n *natNet) *StepError {
	if err := os.WriteFile(resolvStaging, []byte(n.Resolv), 0o644); err != nil {
		return stepErr("network", "write resolv.conf", resolvStaging, err)
	}
	defer os.Remove(resolvStaging)
	fd, err := resolvTarget()
	if err != nil {
		return stepErr("network", "open resolv.conf", "/etc/resolv.conf", err)
	}
	defer unix.Close(fd)
	// By fds (open_tree, move_mount): /proc/self/fd is masked by now.
	tree, err := unix.OpenTree(unix.AT_FDCWD, resolvStaging, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return stepErr("network", "open_tree resolv.conf (OPEN_TREE_CLONE)", resolvStaging, err)
	}
	defer unix.Close(tree)
	if err := unix.MoveMount(tree, "", fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return stepErr("network", "move_mount resolv.conf", "/etc/resolv.conf", err)
	}
	return nil
}

// resolvTarget opens /etc/resolv.conf (O_PATH), making it a plain empty
// file if it is missing or a dangling symlink.
func resolvTarget() (int, error) {
	const path = "/etc/resolv.conf"
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(root)
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(root, path[1:], how)
	if !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	var st unix.Stat_t
	if unix.Lstat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		if err := unix.Unlink(path); err != nil {
			return -1, err
		}
	}
	f, err := unix.Open(path, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return -1, err
	}
	unix.Close(f)
	return unix.Openat2(root, path[1:], how)
}
