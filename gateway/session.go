package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/jail"
)

// session is one "session" channel. The handler goroutine owns the
// unguarded fields; the request goroutine shares the guarded ones.
type session struct {
	srv    *Server
	ctx    ssh.Context
	conn   *gossh.ServerConn
	nc     gossh.NewChannel
	st     *connState
	id     string
	user   string // the authenticated SSH user
	remote string
	begin  time.Time
	auth   channelAuth   // snapshot, tenant and key options; set by authorizeLayer
	ch     gossh.Channel // once accepted
	exit   string        // how it ended, for the log
	act    *activity     // bytes in and out, for the log
	hasEnv atomic.Bool   // its environment is up (session-mode forwards join it)
	exited bool          // exit-status or exit-signal was sent
	scp    bool          // the command is the remote end of scp -O

	mu      sync.Mutex
	pty     *jail.TTY // from pty-req; nil for none
	env     envVars   // from env requests
	started bool      // shell or exec accepted
	agent   bool      // auth-agent-req accepted: the command gets SSH_AUTH_SOCK
	proc    jail.Process
	rec     *recorder // the session's recording, if the tenant is recorded
}

// newSession builds the session of channel nc on conn.
func newSession(s *Server, ctx ssh.Context, conn *gossh.ServerConn, nc gossh.NewChannel, st *connState) *session {
	return &session{
		srv: s, ctx: ctx, conn: conn, nc: nc, st: st,
		id:     fmt.Sprintf("%s-%d", st.id, st.sessions.Add(1)),
		user:   conn.User(),
		remote: remoteOf(conn.RemoteAddr()),
		begin:  time.Now(),
		exit:   "none",
		env:    envVars{},
	}
}

// serveSession is the innermost layer: accept the channel, serve its
// requests, run the command in the tenant's environment and report how it
// ended.
func (s *Server) serveSession(ss *session) {
	ch, reqs, err := ss.nc.Accept()
	if err != nil {
		return
	}
	ss.ch = ch // closed by channelHandler, after the recover layer had its say
	ctx, cancel := context.WithCancel(ss.ctx)
	defer cancel()
	starts := make(chan startRequest, 1)
	gone := make(chan struct{}) // closed when the channel or connection is gone
	s.goSafe(ss, func() {
		defer close(gone)
		defer cancel()
		ss.serveRequests(reqs, starts)
	})
	select {
	case sr := <-starts:
		s.run(ctx, ss, sr, gone)
	case <-gone:
	}
}

// run starts the command in the tenant's environment, connects it to the
// channel and reports its end.
func (s *Server) run(ctx context.Context, ss *session, sr startRequest, gone <-chan struct{}) {
	u := ss.auth.tenant
	var original *string
	if c := ss.auth.opts.Command; c != "" {
		// command= in the key's line wins over whatever the client asked
		// for (shell, exec or subsystem), as in sshd; the request goes to
		// SSH_ORIGINAL_COMMAND.
		orig := sr.command
		if sr.subsystem != "" {
			orig = sr.subsystem
		}
		original = &orig
		sr = startRequest{exec: true, command: c}
	}
	ps := ss.procSpec(sr)
	if v := string(ss.conn.ClientVersion()); ps.Subsystem == "sftp" && !strings.ContainsRune(v, 0) {
		// The client's identification decides SSH_FXP_SYMLINK's argument
		// order (jail.SFTPClientEnv). x/crypto lets a NUL through, which
		// no environment variable may hold.
		ps.Env = append(ps.Env, jail.SFTPClientEnv+"="+v)
	}
	ss.scp = sr.exec && isLegacySCP(sr.command)
	if original != nil && *original != "" {
		ps.Env = append(ps.Env, "SSH_ORIGINAL_COMMAND="+*original)
	}
	kind, pty := "shell", ""
	switch {
	case sr.subsystem != "":
		kind = sr.subsystem
	case sr.exec:
		kind = "exec"
	}
	if ps.TTY != nil {
		pty = fmt.Sprintf("%dx%d", ps.TTY.Cols, ps.TTY.Rows)
	}
	defer s.opts.Metrics.sessionStarted(kind)()
	key, _ := s.channelEnvKey(u, ss.st, ss.id) // a session names its own: never refused
	// The exec request is logged as what she ran; what she types never is.
	s.log.Info("session exec", "tenant", u.Name, "remote", ss.remote, "session", ss.id, "kind", kind,
		"command", sr.command, "pty", pty, "env", key)

	env, err := s.acquireEnv(ctx, ss.auth, key)
	if err != nil {
		ss.fail(ctx, ps.TTY != nil, err)
		return
	}
	defer env.Release()
	ss.hasEnv.Store(true)
	defer ss.hasEnv.Store(false)
	if ss.wantsAgent() && sr.subsystem == "" {
		if sock, stop := s.startAgent(ctx, ss, env); sock != "" {
			defer stop()
			ps.Env = append(ps.Env, "SSH_AUTH_SOCK="+sock)
		}
	}
	proc, err := env.Spawn(ctx, ps)
	if err != nil {
		ss.fail(ctx, ps.TTY != nil, &startError{step: "spawn", err: err})
		return
	}
	if u.Record && ps.TTY != nil {
		path := RecordingPath(ss.auth.cfg.StateDir, u.Name, ss.id, time.Now())
		rec, err := newRecorder(path, ps.TTY.Cols, ps.TTY.Rows, ps.TTY.Term, u.RecordInput, u.RecordMaxBytes, s.log)
		if err != nil {
			s.log.Error("recording not started; the session goes on", "tenant", u.Name, "session", ss.id, "err", err)
		} else {
			defer rec.close()
			ss.mu.Lock()
			ss.rec = rec
			ss.mu.Unlock()
		}
	}
	// The motd, as sshd's PrintMotd: for a shell in a terminal (and, with a
	// banner, for any shell). It ends with where login keys live.
	if !sr.exec && sr.subsystem == "" && (u.Banner != "" || ps.TTY != nil) {
		ss.motd(u.Banner, ps.TTY != nil)
	}
	ss.showNotes()
	ss.attach(proc, ps.TTY, gone)
}

// sessionStreams wraps a session channel's two directions for the copy
// loops: both count as activity (idle_timeout), and a recording gets the
// output, and the input with record_input.
func sessionStreams(act *activity, out io.Writer, in io.Reader, rec *recorder) (io.Writer, io.Reader) {
	w, r := act.writer(out), act.reader(in)
	if rec != nil {
		w = io.MultiWriter(w, recOutput{rec})
		if rec.input {
			r = io.TeeReader(r, recInput{rec})
		}
	}
	return w, r
}

// attach copies between the channel and proc until proc ended and its
// output is drained (then the exit is sent), or until the client went away
// (then her terminal is hung up, or her pipes closed). Bytes pass unchanged in both directions: no
// newline translation, unlike gliderlabs' session.Write (#129).
func (ss *session) attach(proc jail.Process, tty *jail.TTY, gone <-chan struct{}) {
	exited := false
	defer func() {
		if !exited { // a panic on the way
			proc.Kill()
		}
		closeStdio(proc)
	}()
	ss.setProc(proc, tty)

	var out sync.WaitGroup
	copyOut := func(w io.Writer, r io.Reader) {
		out.Add(1)
		ss.srv.goSafe(ss, func() {
			defer out.Done()
			io.Copy(w, r)
		})
	}
	act := &activity{}
	act.touch()
	ss.act = act
	ss.mu.Lock()
	rec := ss.rec
	ss.mu.Unlock()
	toClient, in := sessionStreams(act, ss.ch, ss.ch, rec)
	copyOut(toClient, proc.Stdout())
	if r := proc.Stderr(); r != nil {
		copyOut(act.writer(ss.ch.Stderr()), r)
	}
	watched := make(chan struct{})
	defer close(watched)
	ss.srv.goSafe(ss, func() { ss.watchdog(act, func() { proc.Kill() }, watched) })
	ss.srv.goSafe(ss, func() {
		io.Copy(proc.Stdin(), in)
		proc.Stdin().Close() // the client's EOF; with a TTY the jail makes this a no-op
	})
	drained := make(chan struct{})
	go func() { out.Wait(); close(drained) }()
	waited := make(chan jail.ExitStatus, 1)
	go func() {
		st, err := proc.Wait()
		if err != nil {
			ss.srv.log.Error("wait", "tenant", ss.auth.tenant.Name, "session", ss.id, "err", err)
			st = jail.ExitStatus{Code: 255}
		}
		waited <- st
	}()

	select {
	case st := <-waited:
		exited = true
		select { // finish copying the output first, unless the client leaves
		case <-drained:
		case <-gone:
		}
		ss.exit = describeExit(st)
		if st.OOM {
			ss.oomNotice()
		}
		if ss.scp && st.Signal == 0 && st.Code == 127 { // the shell's "command not found"
			ss.noSCPNotice()
		}
		ss.sendExit(st)
		ss.ch.CloseWrite()
		ss.ch.Close()
	case <-gone:
		// The client closed the channel or the connection first. As with
		// sshd, that hangs up her terminal (the deferred close of the PTY
		// master: the kernel's SIGHUP to the terminal's session) or closes
		// her pipes, and nothing more: what she detached from the session
		// (nohup, setsid, disown, tmux) lives as long as her environment.
		exited = true
		ss.exit = "hangup"
	}
}

// procSpec builds the ProcSpec of sr from the requests received so far.
func (ss *session) procSpec(sr startRequest) *jail.ProcSpec {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return procSpec(ss.auth.tenant, sr, ss.pty, ss.env, ss.conn.LocalAddr(), ss.conn.RemoteAddr())
}

// setProc makes proc the target of window-change and signal requests, and
// applies a window-change that arrived while it was being spawned.
func (ss *session) setProc(proc jail.Process, tty *jail.TTY) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.proc = proc
	if tty != nil && (ss.pty.Rows != tty.Rows || ss.pty.Cols != tty.Cols) {
		proc.Resize(ss.pty.Rows, ss.pty.Cols)
	}
}

// hasPTY reports whether the session asked for a terminal.
func (ss *session) hasPTY() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.pty != nil
}

// sendExit reports how the process ended: exit-signal when a signal ended
// it, exit-status otherwise (RFC 4254 section 6.10).
func (ss *session) sendExit(st jail.ExitStatus) {
	ss.exited = true
	if st.Signal != 0 {
		msg := struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{Signal: signalName(st.Signal)}
		ss.ch.SendRequest("exit-signal", false, gossh.Marshal(&msg))
		return
	}
	code := uint32(255)
	if st.Code >= 0 {
		code = uint32(st.Code)
	}
	ss.ch.SendRequest("exit-status", false, gossh.Marshal(&struct{ Status uint32 }{code}))
}

// procSpec builds what to run: the tenant's shell, as a login shell or
// with -c command, as root of the environment in /root.
func procSpec(u *config.User, sr startRequest, pty *jail.TTY, vars envVars, local, remote net.Addr) *jail.ProcSpec {
	shell := u.Shell
	if shell == "" {
		shell = "/bin/sh"
	}
	ps := &jail.ProcSpec{Argv: []string{shell, "-l"}, Dir: "/root"}
	switch {
	case sr.subsystem != "":
		// The jail's own SFTP server, inside the environment; never a
		// terminal, whatever pty-req came first.
		ps.Subsystem, ps.Argv = sr.subsystem, []string{sr.subsystem + "-server"}
		pty = nil
	case sr.exec:
		ps.Argv = []string{shell, "-c", sr.command}
	}
	if pty != nil {
		t := *pty // a copy: window-change keeps updating ours
		ps.TTY = &t
	}
	ps.Env = processEnv(shell, ps.TTY, vars, local, remote)
	return ps
}

// closeStdio closes the gateway's ends of proc's stdio; the jail leaves
// them to the caller.
func closeStdio(proc jail.Process) {
	proc.Stdin().Close()
	for _, r := range []io.Reader{proc.Stdout(), proc.Stderr()} {
		if c, ok := r.(io.Closer); ok {
			c.Close()
		}
	}
}
