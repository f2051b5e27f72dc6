package gateway

import (
	"fmt"
	"sync"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
)

// registry is the set of live session channels, across all connections:
// it counts each tenant's sessions for max_sessions, names the sessions a
// forward may join, and lists them for Shutdown and a reload's revoke.
type registry struct {
	mu         sync.Mutex
	sessionsOf map[string]int // live session channels per tenant
	live       map[*session]struct{}
}

func newRegistry() *registry {
	return &registry{sessionsOf: map[string]int{}, live: map[*session]struct{}{}}
}

// add registers ss, unless its tenant has max live sessions already (0:
// no limit).
func (r *registry) add(ss *session, max int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := ss.auth.tenant.Name
	if max > 0 && r.sessionsOf[name] >= max {
		return false
	}
	r.sessionsOf[name]++
	r.live[ss] = struct{}{}
	return true
}

// remove forgets ss, which add registered.
func (r *registry) remove(ss *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := ss.auth.tenant.Name
	if r.sessionsOf[name]--; r.sessionsOf[name] <= 0 {
		delete(r.sessionsOf, name)
	}
	delete(r.live, ss)
}

// all lists the live sessions.
func (r *registry) all() []*session {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*session, 0, len(r.live))
	for ss := range r.live {
		out = append(out, ss)
	}
	return out
}

// count is the number of live sessions.
func (r *registry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live)
}

// on lists the live sessions of connection st.
func (r *registry) on(st *connState) []*session {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*session
	for ss := range r.live {
		if ss.st == st {
			out = append(out, ss)
		}
	}
	return out
}

// withEnvOn lists the ids of the live sessions of connection st that
// started a command (and so have an environment).
func (r *registry) withEnvOn(st *connState) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for ss := range r.live {
		if ss.st == st && ss.hasEnv.Load() {
			ids = append(ids, ss.id)
		}
	}
	return ids
}

// sessionLimitLayer enforces the tenant's max_sessions across all her
// connections, and keeps the registry of live sessions Shutdown tells.
func (s *Server) sessionLimitLayer(next sessionHandler) sessionHandler {
	return func(ss *session) {
		u := ss.auth.tenant
		if !s.sessions.add(ss, u.MaxSessions) {
			s.log.Info("session refused", "tenant", u.Name, "remote", ss.remote, "session", ss.id,
				"reason", fmt.Sprintf("max_sessions (%d) reached", u.MaxSessions))
			ss.nc.Reject(gossh.ResourceShortage, "too many sessions")
			ss.exit = "refused"
			return
		}
		defer s.sessions.remove(ss)
		next(ss)
	}
}

// revoke ends everything a key that c no longer admits opened, unless c
// says revoke: keep-sessions: every logged-in connection whose tenant or
// key c refuses is closed, which ends its sessions (each told why, its
// process killed), its ssh -L channels, its ssh -R listeners and the
// connections to them, and its agent forwarding; the environments they
// held are released by the usual rules. Connections c still admits keep
// the settings they started with.
func (s *Server) revoke(c *config.Config) {
	if c.Revoke == config.RevokeKeepSessions {
		return
	}
	revoked := map[*connState]*gossh.ServerConn{}
	for _, st := range s.loggedIn() {
		conn, _ := st.ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn)
		if conn == nil {
			continue // still logging in: its channels are checked as they open
		}
		if _, reason := authorizeChannel(c, st.ctx, conn); reason != "" {
			revoked[st] = conn
		}
	}
	for _, ss := range s.sessions.all() {
		if _, ok := revoked[ss.st]; !ok {
			continue
		}
		s.log.Info("session revoked", "tenant", ss.auth.tenant.Name, "session", ss.id, "reason", "removed by a reload")
		ss.notice("your access was revoked; closing")
		ss.mu.Lock()
		proc := ss.proc
		ss.mu.Unlock()
		if proc != nil {
			proc.Kill()
		}
	}
	for st, conn := range revoked {
		s.log.Info("connection revoked", "user", conn.User(), "remote", remoteOf(conn.RemoteAddr()), "conn", st.id,
			"reason", "removed by a reload")
		conn.Close()
	}
}

// loggedIn lists the state of every admitted connection.
func (s *Server) loggedIn() []*connState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*connState, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c.st)
	}
	return out
}
