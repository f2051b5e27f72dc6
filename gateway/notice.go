package gateway

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/jail"
)

// notice writes one line from jailgate to the tenant: in her terminal
// (CRLF, on a line of its own) or on stderr.
func (ss *session) notice(msg string) {
	ss.mu.Lock()
	started, tty := ss.started, ss.pty != nil
	ss.mu.Unlock()
	if ss.ch == nil || !started {
		return
	}
	if tty {
		io.WriteString(ss.ch, "\r\njailgate: "+msg+"\r\n")
		return
	}
	io.WriteString(ss.ch.Stderr(), "jailgate: "+msg+"\n")
}

// isLegacySCP reports whether command is the remote end of scp -O (the
// legacy protocol): OpenSSH's scp runs "scp [-v] [-r] [-p] [-d] -t|-f
// [--] PATH" over exec, with "scp" as it finds it on the remote PATH.
func isLegacySCP(command string) bool {
	f := strings.Fields(command)
	if len(f) < 2 || (f[0] != "scp" && !strings.HasSuffix(f[0], "/scp")) {
		return false
	}
	for _, a := range f[1:] {
		if a == "-t" || a == "-f" {
			return true
		}
	}
	return false
}

// noSCPNotice explains an scp -O whose scp was not found (her shell's exit
// status 127): her rootfs has no scp, but scp without -O (SFTP) needs
// none, as the jail serves SFTP itself.
func (ss *session) noSCPNotice() {
	ss.srv.log.Info("scp -O: no scp in the environment", "tenant", ss.auth.tenant.Name, "session", ss.id)
	ss.notice("scp -O (the legacy protocol) needs an scp program in your environment, and there is none; " +
		"use scp without -O (SFTP), which needs nothing in it")
}

// keysNotice ends the motd. Logins take keys only from the gateway's
// config (keys_file), never from the environment, so a key that
// ssh-copy-id appends to ~/.ssh/authorized_keys in it reports success and
// is never honoured (issue 15); this line says so where she will see it,
// once per interactive shell and never in exec or sftp output.
const keysNotice = "jailgate: login keys come from the gateway's config; ~/.ssh/authorized_keys here is not read"

// motd shows the tenant's banner (banner may be empty) and keysNotice at
// the start of an interactive shell, as sshd prints /etc/motd; with a
// terminal, lines end in CRLF.
func (ss *session) motd(banner string, tty bool) {
	if banner != "" && !strings.HasSuffix(banner, "\n") {
		banner += "\n"
	}
	banner += keysNotice + "\n"
	if tty {
		banner = strings.ReplaceAll(banner, "\n", "\r\n")
	}
	io.WriteString(ss.ch, banner)
}

// oomNotice tells the tenant, in one line, why her process was killed; the
// operator's log gets the event with the tenant and session.
func (ss *session) oomNotice() {
	limit := "the memory limit"
	if m := ss.auth.tenant.Limits.Memory; m > 0 {
		limit = "memory limit " + config.FormatSize(m)
	}
	ss.srv.log.Warn("limit.oom", "tenant", ss.auth.tenant.Name, "session", ss.id, "limit", limit)
	ss.srv.opts.Metrics.oomKilled(ss.auth.tenant.Name)
	ss.notice("killed: " + limit + " reached")
}

// fail ends a session whose command could not start (err names the
// step, see startError): the tenant gets one short line with a reference
// and exit status 255; the operator gets the full error under the same
// reference.
func (ss *session) fail(ctx context.Context, tty bool, err error) {
	if ctx.Err() != nil { // the client left while the environment started
		ss.srv.log.Info("session abandoned during start", "tenant", ss.auth.tenant.Name, "session", ss.id,
			"step", stepOf(err), "err", err)
		ss.exit = "abandoned"
		return
	}
	var big *jail.RequestTooLargeError
	if errors.As(err, &big) { // her request, not her environment: she is told why
		ss.srv.log.Warn("session refused", "tenant", ss.auth.tenant.Name, "user", ss.user, "session", ss.id, "err", err)
		ss.tenantError(tty, big.Error())
		ss.exit = "255"
		return
	}
	msg := ss.srv.startFailed("session", err, "tenant", ss.auth.tenant.Name, "user", ss.user, "session", ss.id)
	ss.tenantError(tty, msg)
	ss.exit = "255"
}

// tenantError writes msg to the tenant as jailgate's error line, sends
// exit status 255 and closes the channel. With a terminal the line goes to
// stdout (the terminal has no separate stderr) and ends in CRLF, as the
// terminal's output processing is not ours to rely on.
func (ss *session) tenantError(tty bool, msg string) {
	if tty {
		io.WriteString(ss.ch, "jailgate: "+msg+"\r\n")
	} else {
		io.WriteString(ss.ch.Stderr(), "jailgate: "+msg+"\n")
	}
	ss.sendExit(jail.ExitStatus{Code: 255})
	ss.ch.CloseWrite()
	ss.ch.Close()
}

// maxConnNotes bounds the lines a connection keeps for a session to come.
const maxConnNotes = 8

// connNotes are lines for the tenant that arose on her connection outside
// any session (an ssh -R refusal: a global request's failure reply carries
// no message), kept until a session of that connection can show them.
type connNotes struct {
	mu    sync.Mutex
	lines []string
}

func (n *connNotes) add(msg string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.lines) < maxConnNotes {
		n.lines = append(n.lines, msg)
	}
}

func (n *connNotes) take() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := n.lines
	n.lines = nil
	return out
}

// tellConn shows msg to the tenant of connection st: in a session of it
// that has started its command, or else in the next one that does (OpenSSH
// sends its -R requests before it opens the session).
func (s *Server) tellConn(st *connState, msg string) {
	st.notes.add(msg)
	for _, ss := range s.sessions.on(st) {
		ss.connNotes()
	}
}

// showNotes writes the lines a session shows once its command started
// (run calls it once): her disk quota's (diskNotice), then the
// connection's pending lines.
func (ss *session) showNotes() {
	ss.diskNotice()
	ss.connNotes()
}

// connNotes writes the connection's pending lines in ss, once its command
// started.
func (ss *session) connNotes() {
	ss.mu.Lock()
	started := ss.started
	ss.mu.Unlock()
	if !started {
		return
	}
	for _, m := range ss.st.notes.take() {
		ss.notice(m)
	}
}
