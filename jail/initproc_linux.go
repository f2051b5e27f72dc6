package jail

import (
	"context"
	"errors"
	"fmt"
	"net"
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

// openInit opens a recorded init by pidfd, checking after it is open that
// its start time is the record's, so the pidfd names that very process.
func openInit(r *EnvRecord) (*initProc, error) {
	pidfd, err := unix.PidfdOpen(r.Pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd: %w", err)
	}
	if start, err := procStart(r.Pid); err != nil || start != r.Start {
		unix.Close(pidfd)
		return nil, errors.New("its init is gone")
	}
	proc, err := os.FindProcess(r.Pid)
	if err != nil {
		unix.Close(pidfd)
		return nil, err
	}
	return &initProc{Process: proc, pidfd: pidfd}, nil
}

// release closes the init's pidfd without waiting for it (a detached
// environment: a child is reaped by the kernel's reparenting once this
// gateway is gone, or by Process.Wait in a later teardown).
func (p *initProc) release() { unix.Close(p.pidfd) }

// dialInit connects to a recorded init and says hello; it answers with the
// sessions held.
func dialInit(ctx context.Context, dir string, r *EnvRecord) (*ctlConn, int, *initProc, error) {
	return dialAs(ctx, dir, r, 0)
}

// dialAs is dialInit as a gateway (0) or an observer (helloObserver).
func dialAs(ctx context.Context, dir string, r *EnvRecord, as int) (*ctlConn, int, *initProc, error) {
	proc, err := openInit(r)
	if err != nil {
		return nil, 0, nil, err
	}
	fail := func(err error) (*ctlConn, int, *initProc, error) {
		proc.release()
		return nil, 0, nil, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unixpacket", socketPath(dir, r.Name))
	if err != nil {
		return fail(err)
	}
	ctl := &ctlConn{c: c.(*net.UnixConn)}
	if err := ctl.send(&message{Op: opHello, Token: r.Token, Pid: os.Getpid(), Code: as}); err != nil {
		ctl.close()
		return fail(err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetReadDeadline(dl)
	}
	m, files, err := ctl.recv()
	closeAll(files)
	c.SetReadDeadline(time.Time{})
	if err != nil || m.Op != opWelcome {
		ctl.close()
		if err == nil {
			err = fmt.Errorf("init said %q", m.Op)
		}
		return fail(fmt.Errorf("hello: %w", err))
	}
	return ctl, m.Code, proc, nil
}

// waitExited waits until the process behind pidfd has exited, and closes it.
func waitExited(pidfd int) error {
	defer unix.Close(pidfd)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err == nil || !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
