package gateway

import (
	"context"
	"fmt"
	"net"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/jail"
)

// maxAgentConns bounds the agent connections of one session open at once;
// past it the socket stops accepting until one ends.
const maxAgentConns = 32

// agentRefusal says why the session may not forward the client's agent
// (ssh -A), or "". Called with ss.mu held.
func (ss *session) agentRefusal() string {
	switch {
	case ss.started:
		return "auth-agent-req after the command started"
	case !ss.auth.tenant.Forwarding.Agent:
		return "forwarding.agent is off"
	case ss.auth.opts.NoAgentForwarding:
		return "the key's line says no-agent-forwarding (or restrict), or the certificate lacks permit-agent-forwarding"
	}
	return ""
}

// wantsAgent reports whether auth-agent-req was accepted.
func (ss *session) wantsAgent() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.agent
}

// startAgent makes the session's agent socket inside env, as sshd makes
// one for ssh -A: a unix socket in a fresh directory under the jail's /tmp
// (mode 0700, owned by her root), whose every connection becomes an
// auth-agent@openssh.com channel to the client. It returns the socket's
// path for SSH_AUTH_SOCK and a stop func that closes and removes it, or ""
// if the socket could not be made (the session goes on without it).
func (s *Server) startAgent(ctx context.Context, ss *session, env jail.Env) (string, func()) {
	path := "/tmp/jailgate-agent-" + randHex(8) + "/agent.sock"
	l, err := env.Listen(ctx, "unix", path)
	if err != nil {
		s.log.Warn("agent forwarding not started; the session goes on", "tenant", ss.auth.tenant.Name, "session", ss.id, "err", err)
		return "", nil
	}
	s.log.Info("agent forwarding", "tenant", ss.auth.tenant.Name, "remote", ss.remote, "session", ss.id)
	done, stop := make(chan struct{}), make(chan struct{})
	s.goSafe(ss, func() {
		defer close(done)
		acceptLoop(l, maxAgentConns, stop, func(c net.Conn) { s.serveAgentConn(ss, c) })
	})
	return path, func() {
		close(stop)
		l.Close()
		<-done
	}
}

// serveAgentConn carries one connection to the agent socket over an
// auth-agent@openssh.com channel; a slow agent holds up only itself.
func (s *Server) serveAgentConn(ss *session, c net.Conn) {
	defer c.Close()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in agent forwarding", "tenant", ss.auth.tenant.Name, "session", ss.id, "err", fmt.Sprint(r), "stack", stack())
		}
	}()
	release, full := s.takeChannel(ss.st, ss.auth, chanAgent)
	if full != "" {
		s.channelRefused(ss.auth.tenant.Name, ss.remote, ss.st.id, chanAgent, full)
		return
	}
	defer release()
	ch, reqs, err := ss.conn.OpenChannel("auth-agent@openssh.com", nil)
	if err != nil {
		s.log.Debug("agent channel refused", "tenant", ss.auth.tenant.Name, "session", ss.id, "err", err)
		return
	}
	defer ch.Close()
	go gossh.DiscardRequests(reqs)
	in, out := pipe(ss.ctx, ch, c)
	s.log.Debug("agent connection", "tenant", ss.auth.tenant.Name, "session", ss.id, "bytes_in", in, "bytes_out", out)
}
