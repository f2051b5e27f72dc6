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

// initServer is the init's side of the control protocol, as PID 1. It
// serves every connected gateway (peer): the one that started it, and any
// that adopted it since (init_peers_linux.go), each with its own request ids.
type initServer struct {
	grace time.Duration
	ptys  int64  // her terminal pool (limits.ptys), for the refusal's text
	token string // what an adopting gateway's hello must show

	mu    sync.Mutex         // held from fork to registration, so the reaper never misses a pid
	procs map[int]procRef    // pid -> who spawned it
	pids  map[procRef]int    // who spawned it -> pid
	smu   sync.Mutex         // guards sockets
	socks map[procRef]string // listen request -> unix socket path, until unlisten
	life  lifetime           // peers, sessions, linger (init_peers_linux.go)
}

// procRef names a request: the gateway connection it came on and its id there.
type procRef struct {
	p  *peer
	id uint64
}

// serve answers the gateways for the environment's whole life: the one that
// started it on the control socket, later ones through the listening socket
// (nil without Options.RecordDir). It never returns: the init ends the
// environment itself (lifetime.end).
func serve(ctl *ctlConn, ln *net.UnixListener, cfg *initConfig) {
	s := &initServer{grace: time.Duration(cfg.KillGrace) * time.Millisecond, ptys: cfg.PTYs, token: cfg.Token,
		procs: map[int]procRef{}, pids: map[procRef]int{}, socks: map[procRef]string{}}
	if s.grace <= 0 {
		s.grace = 2 * time.Second
	}
	s.life.init(cfg)
	sigc := make(chan os.Signal, 64)
	signal.Notify(sigc, unix.SIGCHLD)
	go s.reap(sigc)
	if ln != nil {
		go s.accept(ln)
	}
	creator := &peer{ctl: ctl, sessions: 1} // the gateway that started it holds the first session
	s.life.join(creator)
	s.servePeer(creator)
	select {} // the init ends in lifetime.end
}

// servePeer answers one gateway until its connection closes.
func (s *initServer) servePeer(p *peer) {
	defer s.leave(p)
	for {
		m, files, err := p.ctl.recv()
		if err != nil {
			return // EOF: that gateway is gone or let go
		}
		if m.Op != opSpawn {
			closeAll(files)
		}
		switch m.Op {
		case opSpawn:
			s.spawn(p, m, files)
		case opSignal:
			s.signal(procRef{p, m.ID}, unix.Signal(m.Sig))
		case opKill:
			s.kill(procRef{p, m.ID})
		case opDial:
			go s.dial(p, m)
		case opListen:
			go s.listen(p, m)
		case opUnlisten:
			s.unlisten(procRef{p, m.ID})
		case opHold:
			s.hold(p, m)
		case opStatus:
			n, gws := s.life.status()
			p.send(&message{Op: opStatus, ID: m.ID, Code: n, Peers: gws})
		case opBye:
			s.life.bye(p)
		case opStop:
			s.life.stop(time.Duration(m.Code) * time.Millisecond)
		}
	}
}

// leave forgets a gateway that went away: what it spawned runs on (its
// terminals were hung up and its pipes closed by the gateway's end), but
// nobody is told of their exit; its agent sockets are removed.
func (s *initServer) leave(p *peer) {
	p.ctl.close()
	s.mu.Lock()
	for ref, pid := range s.pids {
		if ref.p == p {
			delete(s.pids, ref)
			delete(s.procs, pid)
		}
	}
	s.mu.Unlock()
	s.smu.Lock()
	var gone []procRef
	for ref := range s.socks {
		if ref.p == p {
			gone = append(gone, ref)
		}
	}
	s.smu.Unlock()
	for _, ref := range gone {
		s.unlisten(ref)
	}
	s.life.leave(p)
}

// reap collects every child, ours or orphaned, as an init must, and reports
// the ones a gateway spawned to that gateway.
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
			ref, ok := s.procs[pid]
			delete(s.procs, pid)
			delete(s.pids, ref)
			s.mu.Unlock()
			if !ok {
				continue
			}
			m := &message{Op: opExit, ID: ref.id}
			if ws.Signaled() {
				m.Sig = int(ws.Signal())
			} else {
				m.Code = ws.ExitStatus()
			}
			ref.p.send(m)
		}
	}
}

// spawn starts a process. Without a TTY its stdio are the three fds that
// came with the request; with one, a PTY is allocated from the
// environment's own devpts and its master goes back to the gateway.
func (s *initServer) spawn(p *peer, m *message, files []*os.File) {
	ps := m.Proc
	defer closeAll(files)
	if ps == nil || len(ps.Argv) == 0 {
		p.send(&message{Op: opSpawned, ID: m.ID, Err: "empty command"})
		return
	}
	var stdio []*os.File
	var master *os.File
	if ps.TTY != nil {
		var slave *os.File
		var err error
		master, slave, err = openPTY(ps.TTY)
		if errors.Is(err, unix.ENOSPC) {
			s.refuseTTY(p, m.ID)
			return
		}
		if err != nil {
			p.send(&message{Op: opSpawned, ID: m.ID, Err: "allocate a terminal: " + err.Error()})
			return
		}
		defer master.Close()
		defer slave.Close()
		stdio = []*os.File{slave, slave, slave}
	} else {
		if len(files) != 3 {
			p.send(&message{Op: opSpawned, ID: m.ID, Err: "spawn without a terminal needs 3 fds"})
			return
		}
		stdio = files
	}
	path, argv, env := "", ps.Argv, ps.Env
	switch ps.Subsystem {
	case "":
		var err error
		if path, err = lookPath(ps.Argv[0], ps.Env); err != nil {
			p.send(&message{Op: opSpawned, ID: m.ID, Err: err.Error()})
			return
		}
	case "sftp":
		// This very binary, reached through the forked child's own
		// /proc/self/exe (the host path is not visible in the jail).
		path, argv, env = "/proc/self/exe", []string{"jailgate", sftpArg}, append(append([]string(nil), ps.Env...), sftpEnv)
	default:
		p.send(&message{Op: opSpawned, ID: m.ID, Err: "unknown subsystem " + ps.Subsystem})
		return
	}
	dir := ps.Dir
	if fi, err := os.Stat(dir); dir == "" || err != nil || !fi.IsDir() {
		dir = "/"
	}
	attr := &os.ProcAttr{Dir: dir, Env: env, Files: stdio,
		Sys: &unix.SysProcAttr{Setsid: true, Setctty: ps.TTY != nil, Ctty: 0}}
	s.mu.Lock()
	proc, err := os.StartProcess(path, argv, attr)
	if err != nil {
		s.mu.Unlock()
		p.send(&message{Op: opSpawned, ID: m.ID, Err: err.Error()})
		return
	}
	pid := proc.Pid
	s.procs[pid] = procRef{p, m.ID}
	s.pids[procRef{p, m.ID}] = pid
	proc.Release() // the reaper waits for it with wait4(-1)
	// Reply before unlocking: the gateway must learn of the process before
	// it can learn of its exit.
	if master != nil {
		p.send(&message{Op: opSpawned, ID: m.ID, Pid: pid}, int(master.Fd()))
	} else {
		p.send(&message{Op: opSpawned, ID: m.ID, Pid: pid})
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
func (s *initServer) signal(id procRef, sig unix.Signal) {
	s.mu.Lock()
	pid, ok := s.pids[id]
	s.mu.Unlock()
	if ok {
		unix.Kill(pid, sig)
	}
}

// kill hangs up a spawned process's group, then kills it after the grace
// period: a session's end, as a terminal hangup would do.
func (s *initServer) kill(id procRef) {
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
func (s *initServer) dial(p *peer, m *message) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, m.Network, m.Addr)
	if err != nil {
		p.send(&message{Op: opDialed, ID: m.ID, Err: err.Error()})
		return
	}
	defer c.Close()
	sc, ok := c.(interface{ File() (*os.File, error) })
	if !ok {
		p.send(&message{Op: opDialed, ID: m.ID, Err: "not a socket"})
		return
	}
	f, err := sc.File()
	if err != nil {
		p.send(&message{Op: opDialed, ID: m.ID, Err: err.Error()})
		return
	}
	defer f.Close()
	p.send(&message{Op: opDialed, ID: m.ID}, int(f.Fd()))
}

// listen makes a listening socket inside the environment and hands it to
// the gateway, which accepts on it: "tcp" in the network namespace (ssh
// -R), "unix" in the jail's filesystem (ssh -A's SSH_AUTH_SOCK).
func (s *initServer) listen(p *peer, m *message) {
	var l net.Listener
	var err error
	switch m.Network {
	case "tcp", "tcp4", "tcp6":
		l, err = net.Listen(m.Network, m.Addr)
	case "unix":
		l, err = s.listenUnix(procRef{p, m.ID}, m.Addr)
	default:
		err = fmt.Errorf("network %q not supported", m.Network)
	}
	if err != nil {
		p.send(&message{Op: opListening, ID: m.ID, Err: "listen: " + err.Error()})
		return
	}
	if ul, ok := l.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false) // the socket outlives this copy; unlisten removes it
	}
	f, err := l.(interface{ File() (*os.File, error) }).File()
	l.Close()
	if err != nil {
		s.unlisten(procRef{p, m.ID})
		p.send(&message{Op: opListening, ID: m.ID, Err: "listen: " + err.Error()})
		return
	}
	defer f.Close()
	p.send(&message{Op: opListening, ID: m.ID}, int(f.Fd()))
}

// listenUnix listens at path, in a directory it makes for the socket alone:
// mode 0700 and owned by the tenant's root (the init's own ids), so only
// she can connect, as sshd makes ssh-agent sockets. The directory must not
// exist yet, so nothing she placed there beforehand is used.
func (s *initServer) listenUnix(id procRef, path string) (net.Listener, error) {
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
	s.socks[id] = path
	s.smu.Unlock()
	return l, nil
}

// unlisten removes a unix socket listen made, and its directory; the
// gateway sends it when it closes the listener.
func (s *initServer) unlisten(id procRef) {
	s.smu.Lock()
	path, ok := s.socks[id]
	delete(s.socks, id)
	s.smu.Unlock()
	if ok {
		os.Remove(path)
		os.Remove(filepath.Dir(path))
	}
}
