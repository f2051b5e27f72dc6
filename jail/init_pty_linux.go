package jail

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openPTY allocates a terminal pair from /dev/ptmx, which inside the jail is
// the environment's own devpts instance, so the host's terminals stay
// invisible and `tty` prints /dev/pts/N of the environment.
func openPTY(t *TTY) (master, slave *os.File, err error) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	master = os.NewFile(uintptr(mfd), "ptmx")
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, err
	}
	// TIOCGPTPEER opens the peer without a path lookup (ioctl_tty(2)).
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER,
		uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		master.Close()
		return nil, nil, errno
	}
	slave = os.NewFile(sfd, "pts")
	if err := applyModes(int(sfd), t.Modes, t.Rows, t.Cols); err != nil {
		master.Close()
		slave.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

// ptyRefusal is the line a tenant reads when her terminals are all in
// use: it names the limit, so she knows what to close or ask for.
func ptyRefusal(ptys int64) string {
	if ptys > 0 {
		return fmt.Sprintf("jailgate: all %d terminals of your environment are in use (limits.ptys)", ptys)
	}
	return "jailgate: the host has no free terminal (kernel.pty.max; set limits.ptys to give each environment its own pool)"
}

// refuseTTY answers a terminal spawn when her pool is full (ENOSPC from
// /dev/ptmx): in place of a terminal the gateway gets one end of a socket
// pair that carries ptyRefusal and then EOF, and the "process" exits 1 at
// once. The gateway's session copies that line to her screen like any
// output, so the reason reaches her without a new kind of reply; the
// operator's log gets it through the init's stderr.
func (s *initServer) refuseTTY(p *peer, id uint64) {
	msg := ptyRefusal(s.ptys)
	fmt.Fprintln(os.Stderr, "terminal refused:", msg)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		p.send(&message{Op: opSpawned, ID: id, Err: "allocate a terminal: " + msg})
		return
	}
	unix.Write(fds[1], []byte(msg+"\r\n"))
	unix.Close(fds[1])
	p.send(&message{Op: opSpawned, ID: id}, fds[0])
	unix.Close(fds[0])
	p.send(&message{Op: opExit, ID: id, Code: 1})
}
