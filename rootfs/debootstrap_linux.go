package rootfs

import (
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// isolate runs cmd in a mount namespace of its own (Go makes its mounts
// private, so nothing propagates to the host): debootstrap mounts /proc
// and /sys inside the tree it builds, and a debootstrap that is killed
// would leave them mounted there, under a directory about to be removed.
// In its own namespace they go when its last process does. It also gets
// a process group of its own, which is killed when the context is done:
// dpkg and the package scripts run as its children.
func isolate(cmd *exec.Cmd) {
	cmd.SysProcAttr = &unix.SysProcAttr{Unshareflags: unix.CLONE_NEWNS, Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
}
