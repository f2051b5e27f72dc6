package jail

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// initProc is the running init: the gateway's child (CLONE_PARENT, though
// the starter cloned it), or an adopted one, which is not. Process holds a
// pidfd: signals never reach a recycled pid.
type initProc struct {
	Process *os.Process
	child   bool
	pidfd   int // to watch its exit (an adopted one's opened once its start time matched the record)
}

// Wait waits for the init to exit: a child is reaped; an adopted one is
// watched through its pidfd until it has exited.
func (p *initProc) Wait() error {
	if p.child {
		_, err := p.Process.Wait()
		unix.Close(p.pidfd)
		return err
	}
	return waitExited(p.pidfd)
}

// exitedWithin reports whether the init exits within d.
func (p *initProc) exitedWithin(d time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(p.pidfd), Events: unix.POLLIN}}
	deadline := time.Now().Add(d)
	for {
		n, err := unix.Poll(fds, int(time.Until(deadline).Milliseconds()))
		if errors.Is(err, unix.EINTR) && time.Now().Before(deadline) {
			continue
		}
		return err == nil && n > 0
	}
}
