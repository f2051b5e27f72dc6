package jail

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// initServer is the init's side of the control protocol, as PID 1.
type initServer struct {
	ctl   *ctlConn
	grace time.Duration
	ptys  int64 // her terminal pool (limits.ptys), for the refusal's text

	mu    sync.Mutex     // held from fork to registration, so the reaper never misses a pid
	procs map[int]uint64 // pid -> request id
	pids  map[uint64]int // request id -> pid
	sendM sync.Mutex     // one datagram at a time

	smu     sync.Mutex        // guards sockets
	sockets map[uint64]string // listen request id -> unix socket path, until unlisten
}

// serve answers the gateway until the control socket closes, then returns;
// PID 1 exiting takes every process of the environment with it.
func serve(ctl *ctlConn, cfg *initConfig) {
	s := &initServer{ctl: ctl, grace: time.Duration(cfg.KillGrace) * time.Millisecond, ptys: cfg.PTYs,
		procs: map[int]uint64{}, pids: map[uint64]int{}, sockets: map[uint64]string{}}
	if s.grace <= 0 {
		s.grace = 2 * time.Second
	}
	sigc := make(chan os.Signal, 64)
	signal.Notify(sigc, unix.SIGCHLD)
	go s.reap(sigc)
	for {
		m, files, err := ctl.recv()
		if err != nil {
			return // EOF: the gateway is gone or closed the environment
		}
		switch m.Op {
		case opSpawn:
			s.spawn(m, files)
		case opSignal:
			closeAll(files)
			s.signal(m.ID, unix.Signal(m.Sig))
		case opKill:
			closeAll(files)
			s.kill(m.ID)
		case opDial:
			closeAll(files)
			go s.dial(m)
		case opListen:
			closeAll(files)
			go s.listen(m)
		case opUnlisten:
			closeAll(files)
			s.unlisten(m.ID)
		default:
			closeAll(files)
		}
	}
}

// send writes one message to the gateway; failures end the init.
func (s *initServer) send(m *message, fds ...int) {
	s.sendM.Lock()
	defer s.sendM.Unlock()
	if err := s.ctl.send(m, fds...); err != nil {
		os.Exit(0)
	}
}

// reap collects every child, ours or orphaned, as an init must, and reports
// the ones the gateway spawned.
func (s *initServer) reap(sigc <-chan os.Signal) {
	for range sigc {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
			s.mu.Lock()
			id, ok := s.procs[pid]
			delete(s.procs, pid)
			delete(s.pids, id)
			s.mu.Unlock()
			if !ok {
				continue
			}
			m := &message{Op: opExit, ID: id}
			if ws.Signaled() {
				m.Sig = int(ws.Signal())
			} else {
				m.Code = ws.ExitStatus()
			}
			s.send(m)
		}
	}
}

// spawn starts a process. Without a TTY its stdio are the three fds that
// came with the request; with one, a PTY is allocated from the
// environment's own devpts and its master goes back to the gateway.
func (s *initServer) spawn(m *message, files []*os.File) {
	defer closeAll(files)
	p := m.Proc
	if p == nil || len(p.Argv) == 0 {
		s.send(&message{Op: opSpawned, ID: m.ID, Err: "empty command"})
		return
	}
	var stdio []*os.File
	var master *os.File
	if p.TTY != nil {
		var slave *os.File
		var err error
		master, slave, err = openPTY(p.TTY)
		if errors.Is(err, unix.ENOSPC) {
			s.refuseTTY(m.ID)
			return
		}
		if err != nil {
			s.send(&message{Op: opSpawned, ID: m.ID, Err: "allocate a terminal: " + err.Error()})
			return
		}
		defer master.Close()
		defer slave.Close()
		stdio = []*os.File{slave, slave, slave}
	} else {
		if len(files) != 3 {
			s.send(&message{Op: opSpawned, ID: m.ID, Err: "spawn without a terminal needs 3 fds"})
			return
		}
		stdio = files
	}
	path, argv, env := "", p.Argv, p.Env
	switch p.Subsystem {
	case "":
		var err error
		if path, err = lookPath(p.Argv[0], p.Env); err != nil {
			s.send(&message{Op: opSpawned, ID: m.ID, Err: err.Error()})
			return
		}
	case "sftp":
		// This very binary, reached through the forked child's own
		// /proc/self/exe (the host path is not visible in the jail).
		path, argv, env = "/proc/self/exe", []string{"jailgate", sftpArg}, append(append([]string(nil), p.Env...), sftpEnv)
	default:
		s.send(&message{Op: opSpawned, ID: m.ID, Err: "unknown subsystem " + p.Subsystem})
		return
	}
	dir := p.Dir
	if fi, err := os.Stat(dir); dir == "" || err != nil || !fi.IsDir() {
		dir = "/"
	}
	attr := &os.ProcAttr{Dir: dir, Env: env, Files: stdio,
		Sys: &unix.SysProcAttr{Setsid: true, Setctty: p.TTY != nil, Ctty: 0}}
	s.mu.Lock()
	proc, err := os.StartProcess(path, argv, attr)
	if err != nil {
		s.mu.Unlock()
		s.send(&message{Op: opSpawned, ID: m.ID, Err: err.Error()})
		return
	}
	pid := proc.Pid
	s.procs[pid] = m.ID
	s.pids[m.ID] = pid
	proc.Release() // the reaper waits for it with wait4(-1)
	// Reply before unlocking: the gateway must learn of the process before
	// it can learn of its exit.
	if master != nil {
		s.send(&message{Op: opSpawned, ID: m.ID, Pid: pid}, int(master.Fd()))
	} else {
		s.send(&message{Op: opSpawned, ID: m.ID, Pid: pid})
	}
	s.mu.Unlock()
}

// lookPath resolves a command name with the PATH of the process's own
// environment, inside the jail.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: command not found", name)
}

// signal delivers sig to a spawned process.
func (s *initServer) signal(id uint64, sig unix.Signal) {
	s.mu.Lock()
	pid, ok := s.pids[id]
	s.mu.Unlock()
	if ok {
		unix.Kill(pid, sig)
	}
}

// kill hangs up a spawned process's group, then kills it after the grace
// period: a session's end, as a terminal hangup would do.
func (s *initServer) kill(id uint64) {
	s.mu.Lock()
	pid, ok := s.pids[id]
	s.mu.Unlock()
	if !ok {
		return
	}
	unix.Kill(-pid, unix.SIGHUP)
	unix.Kill(-pid, unix.SIGCONT)
	time.AfterFunc(s.grace, func() {
		s.mu.Lock()
		_, alive := s.pids[id]
		s.mu.Unlock()
		unix.Kill(-pid, unix.SIGKILL)
		if alive {
			unix.Kill(pid, unix.SIGKILL)
		}
	})
}

// dial connects from inside the environment's network namespace and hands
// the socket to the gateway.
func (s *initServer) dial(m *message) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, m.Network, m.Addr)
	if err != nil {
		s.send(&message{Op: opDialed, ID: m.ID, Err: err.Error()})
		return
	}
	defer c.Close()
	sc, ok := c.(interface{ File() (*os.File, error) })
	if !ok {
		s.send(&message{Op: opDialed, ID: m.ID, Err: "not a socket"})
		return
	}
	f, err := sc.File()
	if err != nil {
		s.send(&message{Op: opDialed, ID: m.ID, Err: err.Error()})
		return
	}
	defer f.Close()
	s.send(&message{Op: opDialed, ID: m.ID}, int(f.Fd()))
}

// listen makes a listening socket inside the environment and hands it to
// the gateway, which accepts on it: "tcp" in the network namespace (ssh
// -R), "unix" in the jail's filesystem (ssh -A's SSH_AUTH_SOCK).
func (s *initServer) listen(m *message) {
	var l net.Listener
	var err error
	switch m.Network {
	case "tcp", "tcp4", "tcp6":
		l, err = net.Listen(m.Network, m.Addr)
	case "unix":
		l, err = s.listenUnix(m.ID, m.Addr)
	default:
		err = fmt.Errorf("network %q not supported", m.Network)
	}
	if err != nil {
		s.send(&message{Op: opListening, ID: m.ID, Err: "listen: " + err.Error()})
		return
	}
	if ul, ok := l.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false) // the socket outlives this copy; unlisten removes it
	}
	f, err := l.(interface{ File() (*os.File, error) }).File()
	l.Close()
	if err != nil {
		s.unlisten(m.ID)
		s.send(&message{Op: opListening, ID: m.ID, Err: "listen: " + err.Error()})
		return
	}
	defer f.Close()
	s.send(&message{Op: opListening, ID: m.ID}, int(f.Fd()))
}

// listenUnix listens at path, in a directory it makes for the socket alone:
// mode 0700 and owned by the tenant's root (the init's own ids), so only
// she can connect, as sshd makes ssh-agent sockets. The directory must not
// exist yet, so nothing she placed there beforehand is used.
func (s *initServer) listenUnix(id uint64, path string) (net.Listener, error) {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path || len(path) >= 108 {
		return nil, fmt.Errorf("bad socket path %q", path)
	}
	dir := filepath.Dir(path)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		os.Remove(dir)
		return nil, err
	}
	os.Chmod(path, 0o600)
	s.smu.Lock()
	s.sockets[id] = path
	s.smu.Unlock()
	return l, nil
}

// unlisten removes a unix socket listen made, and its directory; the
// gateway sends it when it closes the listener.
func (s *initServer) unlisten(id uint64) {
	s.smu.Lock()
	path, ok := s.sockets[id]
	delete(s.sockets, id)
	s.smu.Unlock()
	if ok {
		os.Remove(path)
		os.Remove(filepath.Dir(path))
	}
}
