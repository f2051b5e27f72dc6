package jail

import (
	"crypto/subtle"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// helloTimeout bounds how long an accepted connection may take to say hello.
const helloTimeout = 5 * time.Second

// peer is one gateway connected to the init.
type peer struct {
	ctl   *ctlConn
	sendM sync.Mutex // one datagram at a time

	// Guarded by lifetime.mu.
	sessions int  // what this gateway holds (hold +1/-1)
	gateway  int  // its host pid, as it said in hello (0: the one that started the init)
	bye      bool // it let go cleanly (stop, upgrade): no orphan grace when it was the last
}

// send writes one message to this gateway. A failure means it is gone;
// its read loop sees that too and leaves.
func (p *peer) send(m *message, fds ...int) {
	p.sendM.Lock()
	defer p.sendM.Unlock()
	p.ctl.send(m, fds...)
}

// accept admits later gateways (a restart, an upgrade) on the listening
// socket for the environment's whole life.
func (s *initServer) accept(ln *net.UnixListener) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(100 * time.Millisecond) // EMFILE and the like: her pids and fds are hers to exhaust
			continue
		}
		go s.admit(c)
	}
}

// admit checks a connection before it is served. Every byte on it is
// untrusted. The socket's directory (0700 root) is the first gate; the
// kernel translates SO_PEERCRED into her namespaces, where no host process
// has a pid (and host root's uid has no name), so a peer with a pid here
// is one of her own processes and is refused; the second gate is the
// record's token, which only root can read.
func (s *initServer) admit(c *net.UnixConn) {
	refuse := func() { c.Close() }
	raw, err := c.SyscallConn()
	if err != nil {
		refuse()
		return
	}
	var cred *unix.Ucred
	var cerr error
	raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if cerr != nil || cred.Pid != 0 {
		refuse()
		return
	}
	p := &peer{ctl: &ctlConn{c: c}}
	c.SetReadDeadline(time.Now().Add(helloTimeout))
	m, files, err := p.ctl.recv()
	closeAll(files)
	if err != nil || m.Op != opHello || s.token == "" ||
		subtle.ConstantTimeCompare([]byte(m.Token), []byte(s.token)) != 1 {
		refuse()
		return
	}
	c.SetReadDeadline(time.Time{})
	p.gateway = m.Pid
	if m.Code == helloObserver { // jailgate env list/stop: not a gateway, holds nothing
		n, _ := s.life.status()
		p.send(&message{Op: opWelcome, Code: n})
		s.serveObserver(p)
		return
	}
	n, ok := s.life.join(p)
	if !ok {
		refuse()
		return
	}
	p.send(&message{Op: opWelcome, Code: n})
	s.servePeer(p)
}

// helloObserver in a hello's Code: the peer only looks (status) or ends the
// environment (stop); it does not count as a gateway.
const helloObserver = 1

// serveObserver answers status and stop until the observer leaves.
func (s *initServer) serveObserver(p *peer) {
	defer p.ctl.close()
	for {
		m, files, err := p.ctl.recv()
		closeAll(files)
		if err != nil {
			return
		}
		switch m.Op {
		case opStatus:
			n, gws := s.life.status()
			p.send(&message{Op: opStatus, ID: m.ID, Code: n, Peers: gws})
		case opStop:
			s.life.stop(time.Duration(m.Code) * time.Millisecond)
		}
	}
}

// hold counts a session more or fewer for p, and answers a hold with an id.
func (s *initServer) hold(p *peer, m *message) {
	n, ok := s.life.hold(p, m)
	if m.ID == 0 {
		return
	}
	if !ok {
		p.send(&message{Op: opHeld, ID: m.ID, Err: "ending"})
		return
	}
	p.send(&message{Op: opHeld, ID: m.ID, Code: n})
}

// lifetime is the init's account of its environment's life: the init, not
// any gateway, ends it (issue 17). It has ended when no gateway has held a
// session for linger; when no gateway is connected at all (a crash, kill
// -9), it first waits orphan grace for one to come back.
type lifetime struct {
	mu      sync.Mutex
	peers   map[*peer]bool
	clean   bool // the last gateway to leave said bye
	linger  time.Duration
	orphan  time.Duration
	timer   *time.Timer
	gen     uint64 // bumped at every evaluation: an older timer does nothing
	ending  bool
	stopped bool // the operator ends it (stop): nothing joins, nothing re-arms
}

func (l *lifetime) init(cfg *initConfig) {
	l.peers = map[*peer]bool{}
	l.linger = time.Duration(cfg.Linger) * time.Millisecond
	l.orphan = time.Duration(cfg.Orphan) * time.Millisecond
}

// join counts p as connected and says how many sessions are held; false
// if the environment is already ending.
func (l *lifetime) join(p *peer) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ending || l.stopped {
		return 0, false
	}
	l.peers[p] = true
	l.evaluateLocked()
	return l.sessionsLocked(), true
}

// leave forgets p: the sessions it held went with it.
func (l *lifetime) leave(p *peer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.peers[p] {
		return
	}
	delete(l.peers, p)
	l.clean = p.bye
	l.evaluateLocked()
}

// bye marks p's coming departure as clean.
func (l *lifetime) bye(p *peer) {
	l.mu.Lock()
	p.bye = true
	l.mu.Unlock()
}

// hold applies a hold message from p; false if the environment is ending
// (a session joining now must start a new one).
func (l *lifetime) hold(p *peer, m *message) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ending || l.stopped {
		return 0, false
	}
	if m.Linger != nil && *m.Linger >= 0 {
		l.linger = time.Duration(*m.Linger) * time.Millisecond
	}
	if m.Orphan != nil && *m.Orphan >= 0 {
		l.orphan = time.Duration(*m.Orphan) * time.Millisecond
	}
	switch {
	case m.Code > 0:
		p.sessions++
	case m.Code < 0 && p.sessions > 0:
		p.sessions--
	}
	l.evaluateLocked()
	return l.sessionsLocked(), true
}

// status says how many sessions are held and by which gateways.
func (l *lifetime) status() (int, []int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var gws []int
	for p := range l.peers {
		gws = append(gws, p.gateway)
	}
	return l.sessionsLocked(), gws
}

func (l *lifetime) sessionsLocked() int {
	n := 0
	for p := range l.peers {
		n += p.sessions
	}
	return n
}

// evaluateLocked arms the end: linger after the last session, orphan grace
// before that when no gateway is connected and the last one did not say bye.
func (l *lifetime) evaluateLocked() {
	if l.stopped {
		return
	}
	l.gen++
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if l.sessionsLocked() > 0 {
		return
	}
	wait := l.linger
	if len(l.peers) == 0 && !l.clean {
		wait += l.orphan
	}
	if wait <= 0 {
		l.endLocked()
		return
	}
	gen := l.gen
	l.timer = time.AfterFunc(wait, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.gen == gen && !l.ending {
			l.endLocked()
		}
	})
}

// stop ends the environment on the operator's word: SIGTERM to every
// process inside now, the end after grace (at once if grace is 0).
func (l *lifetime) stop(grace time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ending || l.stopped {
		return
	}
	l.stopped = true
	unix.Kill(-1, unix.SIGTERM)
	l.gen++
	if l.timer != nil {
		l.timer.Stop()
	}
	if grace <= 0 {
		l.endLocked()
		return
	}
	gen := l.gen
	l.timer = time.AfterFunc(grace, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.gen == gen && !l.ending {
			l.endLocked()
		}
	})
}

// endLocked ends the environment: PID 1's exit makes the kernel kill every
// process of her pid namespace; each connected gateway sees EOF and cleans
// up on the host.
func (l *lifetime) endLocked() {
	l.ending = true
	unix.Kill(-1, unix.SIGKILL) // everything but PID 1 itself, at once
	os.Exit(0)
}
