package jailtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/jail"
)

// ttyDrain is how long a terminal's output is still read after its process
// exited, for output held open by background jobs (as the real jail does).
const ttyDrain = 250 * time.Millisecond

// hostProc is a process of a HostManager environment, running on the host.
type hostProc struct {
	env  *hostEnv
	rec  Proc // guarded by env.m.mu
	cmd  *exec.Cmd
	pgid int

	master *os.File // with a TTY
	stdin  io.WriteCloser
	stdout io.Reader
	stderr io.Reader // nil with a TTY

	done     chan struct{}
	status   jail.ExitStatus
	killOnce sync.Once
	hupOnce  sync.Once
}

var _ jail.Process = (*hostProc)(nil)

// Spawn implements jail.Env: it starts ps on the host, in a session of its
// own, with exactly ps.Env as its environment (never the test's).
func (e *hostEnv) Spawn(ctx context.Context, ps *jail.ProcSpec) (jail.Process, error) {
	if ps == nil || len(ps.Argv) == 0 {
		return nil, errors.New("spawn: empty argv")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("spawn %s: %w", ps.Argv[0], err)
	}
	m := e.m
	m.mu.Lock()
	ended := e.ended
	m.mu.Unlock()
	if ended {
		return nil, fmt.Errorf("spawn %s: %w", ps.Argv[0], errEnded)
	}
	if ps.Subsystem != "" {
		// The fake records the request but runs no subsystem: the real
		// jail's SFTP server is the gateway binary itself, tested end to end.
		m.mu.Lock()
		m.procs = append(m.procs, &hostProc{rec: Proc{Key: e.key, Subsystem: ps.Subsystem, Argv: ps.Argv, Dir: ps.Dir, Exited: true}})
		m.mu.Unlock()
		return nil, fmt.Errorf("spawn %s: the host fake runs no subsystem", ps.Subsystem)
	}
	cmd := exec.Command(ps.Argv[0], ps.Argv[1:]...)
	cmd.Env = append([]string{}, ps.Env...) // non-nil: os/exec would pass os.Environ() for nil
	if usableDir(ps.Dir) {
		cmd.Dir = ps.Dir
	}
	p := &hostProc{env: e, cmd: cmd, done: make(chan struct{})}
	p.rec = Proc{Key: e.key, Argv: append([]string(nil), ps.Argv...), Env: append([]string(nil), ps.Env...), Dir: ps.Dir}
	var err error
	if ps.TTY != nil {
		t := *ps.TTY
		p.rec.TTY = &t
		err = p.startTTY(ps.TTY)
	} else {
		err = p.startPipes()
	}
	if err != nil {
		return nil, fmt.Errorf("spawn %s: %w", ps.Argv[0], err)
	}
	p.pgid = cmd.Process.Pid // Setsid made it the leader of its own group
	m.mu.Lock()
	e.procs[p] = true
	m.procs = append(m.procs, p)
	lateEnd := e.ended
	m.notifyLocked()
	m.mu.Unlock()
	go p.reap()
	if lateEnd {
		p.hangup()
	}
	return p, nil
}

// startTTY starts the command on a new host pseudo-terminal of the asked
// size. Nothing else (modes, TERM) is applied: the fake is not a terminal
// emulator, and TERM travels in ProcSpec.Env.
func (p *hostProc) startTTY(t *jail.TTY) error {
	master, err := pty.StartWithSize(p.cmd, &pty.Winsize{Rows: t.Rows, Cols: t.Cols})
	if err != nil {
		return err
	}
	// creack/pty used master.Fd(), which put it in blocking mode; a
	// non-blocking duplicate can be given the read deadline that ends the
	// output after the process exits.
	fd, err := unix.FcntlInt(master.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err == nil {
		err = unix.SetNonblock(fd, true)
		if err == nil {
			master.Close()
			master = os.NewFile(uintptr(fd), "ptmx")
		} else {
			unix.Close(fd)
		}
	}
	p.master = master
	p.stdin, p.stdout = jail.TTYStreams(master)
	return nil
}

// startPipes starts the command with three pipes, in a new session.
func (p *hostProc) startPipes() error {
	var theirs, ours [3]*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			if f != nil {
				f.Close()
			}
		}
	}
	for i := range theirs {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(theirs[:])
			closeAll(ours[:])
			return err
		}
		if i == 0 {
			theirs[i], ours[i] = r, w
		} else {
			theirs[i], ours[i] = w, r
		}
	}
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = theirs[0], theirs[1], theirs[2]
	p.cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true}
	err := p.cmd.Start()
	closeAll(theirs[:])
	if err != nil {
		closeAll(ours[:])
		return err
	}
	p.stdin, p.stdout, p.stderr = ours[0], ours[1], ours[2]
	return nil
}

// reap waits for the process and records how it ended.
func (p *hostProc) reap() {
	p.cmd.Wait()
	st := jail.ExitStatus{Code: -1}
	if ps := p.cmd.ProcessState; ps != nil {
		st.Code = ps.ExitCode()
		if ws, ok := ps.Sys().(interface {
			Signaled() bool
			Signal() unix.Signal
		}); ok && ws.Signaled() {
			st = jail.ExitStatus{Signal: ws.Signal()}
		}
	}
	m := p.env.m
	m.mu.Lock()
	p.status = st
	p.rec.Exited, p.rec.Status = true, st
	delete(p.env.procs, p)
	m.notifyLocked()
	m.mu.Unlock()
	close(p.done)
	if p.master != nil {
		p.master.SetReadDeadline(time.Now().Add(ttyDrain))
	}
}

// Stdin implements jail.Process.
func (p *hostProc) Stdin() io.WriteCloser { return p.stdin }

// Stdout implements jail.Process.
func (p *hostProc) Stdout() io.Reader { return p.stdout }

// Stderr implements jail.Process; nil with a TTY.
func (p *hostProc) Stderr() io.Reader {
	if p.master != nil {
		return nil
	}
	return p.stderr
}

// Resize implements jail.Process.
func (p *hostProc) Resize(rows, cols uint16) error {
	if p.master == nil {
		return errors.New("resize: no terminal")
	}
	// SyscallConn, not Fd: Fd would put the master back in blocking mode.
	rc, err := p.master.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
	if err != nil {
		return err
	}
	return ioErr
}

// Signal implements jail.Process: sig goes to the process itself.
func (p *hostProc) Signal(sig unix.Signal) error {
	select {
	case <-p.done:
		return errors.New("signal: process already ended")
	default:
	}
	return p.cmd.Process.Signal(sig)
}

// Wait implements jail.Process.
func (p *hostProc) Wait() (jail.ExitStatus, error) {
	<-p.done
	return p.status, nil
}

// Kill implements jail.Process: SIGHUP to the process group, SIGKILL after
// the manager's KillGrace. On a process that already ended it only closes
// stdin: the group's background jobs are the environment's business.
func (p *hostProc) Kill() error {
	p.killOnce.Do(func() {
		m := p.env.m
		m.mu.Lock()
		live := !p.rec.Exited
		if live {
			p.rec.Killed = true
			m.notifyLocked()
		}
		m.mu.Unlock()
		if live {
			p.hangup()
		}
		p.stdin.Close()
	})
	return nil
}

// hangup sends SIGHUP to the process group, and SIGKILL after the grace.
func (p *hostProc) hangup() {
	p.hupOnce.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		unix.Kill(-p.pgid, unix.SIGHUP)
		go func() {
			t := time.NewTimer(p.env.m.killGrace())
			defer t.Stop()
			select {
			case <-p.done:
			case <-t.C:
			}
			// Background members of the group that ignored SIGHUP.
			unix.Kill(-p.pgid, unix.SIGKILL)
		}()
	})
}

// usableDir reports whether dir exists and can be entered.
func usableDir(dir string) bool {
	if dir == "" {
		return false
	}
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir() && unix.Access(dir, unix.X_OK) == nil
}
