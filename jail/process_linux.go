package jail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// handle is one user's reference to an environment; Release is once-only.
type handle struct {
	*environment
	once sync.Once
}

// Release implements Env.
func (h *handle) Release() { h.once.Do(h.environment.release) }

// dialReply is the init's answer to a dial or a listen request.
type dialReply struct {
	conn net.Conn
	ln   net.Listener // for listen
	err  error
}

// release drops one of this gateway's sessions; the init ends the
// environment when no gateway holds one for its linger.
func (e *environment) release() {
	e.sup.mu.Lock()
	e.refs--
	live := e.state == envLive
	e.sup.mu.Unlock()
	if live {
		e.hold(context.Background(), -1, e.linger())
	}
}

// markClosedLocked takes the environment out of service; sup.mu is held.
func (e *environment) markClosedLocked() {
	e.state = envClosed
	e.sup.ending.Add(1) // teardown, which always follows, says Done
	if e.sup.envs[e.key] == e {
		delete(e.sup.envs, e.key)
	}
}

// close ends the environment (the init ended it, or the Supervisor closes),
// or waits for an end already under way.
func (e *environment) close() {
	s := e.sup
	s.mu.Lock()
	if e.state == envClosed {
		s.mu.Unlock()
		<-e.done
		return
	}
	e.markClosedLocked()
	s.mu.Unlock()
	e.teardown()
}

// teardown: SIGKILL to its PID 1 takes the whole pid namespace with it (the
// kernel kills and reaps every process in it before the init's exit
// completes), then the cgroup is emptied and removed. It runs once, after
// markClosedLocked.
func (e *environment) teardown() {
	s := e.sup
	defer s.ending.Done()
	e.cmd.Process.Kill()
	e.ctl.close()
	e.cmd.Wait()
	removeRecord(s.opts.RecordDir, e.name)
	forgetKey(s.opts.RecordDir, e.key, e.name)
	// Another gateway connected to it (an upgrade's other side) may have
	// removed the cgroup already.
	if err := e.cg.Destroy(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("environment cgroup", "tenant", e.spec.Tenant, "env", e.name, "err", err)
	}
	s.owners.release(e.owner)
	e.failPending()
	s.log.Info("environment end", "tenant", e.spec.Tenant, "env", e.name)
	if e.spec.OnEnd != nil {
		e.spec.OnEnd()
	}
	close(e.done)
}

// request sends one message to the init.
func (e *environment) request(m *message, fds ...int) error {
	e.sent.Lock()
	defer e.sent.Unlock()
	if err := e.ctl.send(m, fds...); err != nil {
		var big *RequestTooLargeError
		if errors.As(err, &big) {
			return err // this request fails, the environment goes on
		}
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return nil
}

// newID registers a request id, or fails if the environment is gone.
func (e *environment) newID() (uint64, error) {
	e.pmu.Lock()
	defer e.pmu.Unlock()
	if e.dead {
		return 0, ErrClosed
	}
	e.nextID++
	return e.nextID, nil
}

// dispatch handles one message from the init.
func (e *environment) dispatch(m *message, files []*os.File) {
	e.pmu.Lock()
	defer e.pmu.Unlock()
	switch m.Op {
	case opSpawned:
		p := e.procs[m.ID]
		if p == nil || p.spawned {
			closeAll(files)
			return
		}
		p.spawned = true
		if m.Err != "" {
			delete(e.procs, m.ID)
			closeAll(files)
			p.ready <- errors.New(m.Err)
			return
		}
		if p.tty {
			if len(files) != 1 {
				closeAll(files)
				delete(e.procs, m.ID)
				p.ready <- errors.New("init sent no terminal")
				return
			}
			p.setMaster(files[0])
		} else {
			closeAll(files)
		}
		p.ready <- nil
	case opExit:
		closeAll(files)
		p := e.procs[m.ID]
		if p == nil || !p.spawned {
			return
		}
		delete(e.procs, m.ID)
		st := ExitStatus{Code: m.Code, Signal: unix.Signal(m.Sig)}
		if st.Signal == unix.SIGKILL {
			// A SIGKILL while the cgroup's OOM counter moved: the limit did it.
			if n := e.cg.OOMKills(); n > e.oomSeen {
				e.oomSeen = n
				st.OOM = true
			}
		}
		p.finish(st)
	case opHeld, opStatus:
		closeAll(files)
		if c := e.replies[m.ID]; c != nil {
			delete(e.replies, m.ID)
			c <- m
		}
	case opDialed, opListening:
		c := e.dials[m.ID]
		if c == nil {
			closeAll(files)
			return
		}
		delete(e.dials, m.ID)
		if m.Op == opDialed {
			c <- dialResult(m, files)
		} else {
			c <- listenResult(m, files)
		}
	default:
		closeAll(files)
	}
}

// dialResult turns a dialed message into a connection.
func dialResult(m *message, files []*os.File) dialReply {
	defer closeAll(files)
	if m.Err != "" {
		return dialReply{err: errors.New(m.Err)}
	}
	if len(files) != 1 {
		return dialReply{err: errors.New("init sent no socket")}
	}
	c, err := net.FileConn(files[0])
	return dialReply{conn: c, err: err}
}

// Spawn implements Env.
func (e *environment) Spawn(ctx context.Context, ps *ProcSpec) (Process, error) {
	id, err := e.newID()
	if err != nil {
		return nil, err
	}
	p := &process{env: e, id: id, tty: ps.TTY != nil, ready: make(chan error, 1), done: make(chan struct{})}
	var fds []int
	if !p.tty {
		var theirs [3]*os.File
		var ours [3]*os.File
		for i := range theirs {
			r, w, err := os.Pipe()
			if err != nil {
				closeAll(theirs[:])
				closeAll(ours[:])
				return nil, err
			}
			if i == 0 {
				theirs[i], ours[i] = r, w
			} else {
				theirs[i], ours[i] = w, r
			}
		}
		defer closeAll(theirs[:])
		p.stdin, p.stdout, p.stderr = ours[0], ours[1], ours[2]
		for _, f := range theirs {
			fds = append(fds, int(f.Fd()))
		}
	}
	e.pmu.Lock()
	e.procs[id] = p
	e.pmu.Unlock()
	if err := e.request(&message{Op: opSpawn, ID: id, Proc: ps}, fds...); err != nil {
		p.abandon()
		return nil, err
	}
	select {
	case err = <-p.ready:
	case <-e.done:
		err = ErrClosed
	case <-ctx.Done():
		err = ctx.Err()
		p.Kill()
	}
	if err != nil {
		p.abandon()
		return nil, fmt.Errorf("spawn %s: %w", ps.Argv[0], err)
	}
	return p, nil
}

// Dial implements Env.
func (e *environment) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	r, err := e.ask(ctx, &message{Op: opDial, Network: network, Addr: addr})
	if err != nil {
		return nil, err
	}
	if r.conn == nil { // the init answered with a listener
		r.close()
		return nil, errors.New("init sent no socket")
	}
	return r.conn, nil
}

// process is a process inside an environment, seen from the gateway.
type process struct {
	env     *environment
	id      uint64
	tty     bool
	spawned bool // guarded by env.pmu
	ready   chan error

	master               *os.File
	stdin                io.WriteCloser
	stdout, stderr       io.Reader
	done                 chan struct{}
	status               ExitStatus
	finishOnce, killOnce sync.Once
}

// setMaster keeps the PTY master the init allocated, non-blocking so that
// reads can be given a deadline once the process has exited.
func (p *process) setMaster(f *os.File) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	f.Close()
	if err == nil {
		unix.SetNonblock(fd, true)
		f = os.NewFile(uintptr(fd), "ptmx")
	}
	p.master = f
	p.stdin, p.stdout = TTYStreams(f)
	go func() {
		// Output still held open by background jobs is read for a short
		// grace after the process exits, then ends (as sshd does).
		<-p.done
		f.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
	}()
}

// abandon forgets a process whose spawn failed.
func (p *process) abandon() {
	p.env.pmu.Lock()
	delete(p.env.procs, p.id)
	p.env.pmu.Unlock()
	p.closeFiles()
}

// finish records the exit status and wakes Wait.
func (p *process) finish(st ExitStatus) {
	p.finishOnce.Do(func() {
		p.status = st
		close(p.done)
	})
}

// closeFiles closes the gateway's ends of the stdio.
func (p *process) closeFiles() {
	for _, c := range []any{p.stdin, p.stdout, p.stderr} {
		if c, ok := c.(io.Closer); ok {
			c.Close()
		}
	}
	if p.master != nil {
		p.master.Close()
	}
}

func (p *process) Stdin() io.WriteCloser { return p.stdin }
func (p *process) Stdout() io.Reader     { return p.stdout }

func (p *process) Stderr() io.Reader {
	if p.tty {
		return nil
	}
	return p.stderr
}

func (p *process) Resize(rows, cols uint16) error {
	if p.master == nil {
		return errors.New("resize: no terminal")
	}
	// SyscallConn, not Fd: Fd would switch the master back to blocking mode.
	rc, err := p.master.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = setWinsize(int(fd), rows, cols) }); err != nil {
		return err
	}
	return serr
}

// setWinsize sets a terminal's size; zero sizes are left alone. The init's
// applyModes uses it too, for a new terminal's first size.
func setWinsize(fd int, rows, cols uint16) error {
	if rows == 0 || cols == 0 {
		return nil
	}
	return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
}

func (p *process) Signal(sig unix.Signal) error {
	select {
	case <-p.done:
		return errors.New("signal: process already ended")
	default:
	}
	return p.env.request(&message{Op: opSignal, ID: p.id, Sig: int(sig)})
}

func (p *process) Wait() (ExitStatus, error) {
	<-p.done
	return p.status, nil
}

func (p *process) Kill() error {
	p.killOnce.Do(func() {
		select {
		case <-p.done:
		default:
			p.env.request(&message{Op: opKill, ID: p.id})
		}
		if p.stdin != nil {
			p.stdin.Close()
		}
	})
	return nil
}
