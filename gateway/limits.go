package gateway

import (
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
)

// tryAdmit decides whether a new connection may start now (called under
// s.mu): sshd's MaxStartups and PerSourceMaxStartups for connections that
// have not authenticated yet, a cap on all connections, and the per-source
// penalty. It returns why not; full says the refusal is only for want of a
// startup slot, which admitWait waits for.
func (s *Server) tryAdmit(cfg *config.Config, src string) (why string, full bool) {
	sv := cfg.Server
	switch {
	case s.penalised(src, time.Now()):
		return "per_source_penalty: repeated authentication failures from " + src, false
	case sv.MaxConnections > 0 && len(s.conns) >= sv.MaxConnections:
		return fmt.Sprintf("max_connections (%d) reached", sv.MaxConnections), false
	case sv.MaxStartups > 0 && s.unauth >= sv.MaxStartups:
		return fmt.Sprintf("max_startups (%d) unauthenticated connections", sv.MaxStartups), true
	case sv.PerSourceMaxStartups > 0 && s.unauthBySrc[src] >= sv.PerSourceMaxStartups:
		return fmt.Sprintf("per_source_max_startups (%d) unauthenticated connections from %s", sv.PerSourceMaxStartups, src), true
	}
	s.unauth++
	s.unauthBySrc[src]++
	return "", false
}

// startupQueueFactor times the larger of max_startups and
// per_source_max_startups is how many connections may wait for a startup
// slot at once; past that they are refused.
const startupQueueFactor = 10

// admitWait admits a connection from src as tryAdmit does, except that one
// refused only because max_startups or per_source_max_startups is reached
// waits, unread, for a slot until deadline: a burst of logins (a class at
// 9:00, all behind one NAT) is served in turn instead of being dropped as
// sshd's MaxStartups drops it, while the handshake work at any moment stays
// bounded. A waiting connection costs a goroutine and a socket; at most
// startupQueueFactor × the larger cap wait. Called with s.mu held; it is
// released while waiting and held again on return.
func (s *Server) admitWait(cfg *config.Config, src string, deadline time.Time) string {
	why, full := s.tryAdmit(cfg, src)
	if why == "" || !full {
		return why
	}
	limit := startupQueueFactor * max(cfg.Server.MaxStartups, cfg.Server.PerSourceMaxStartups)
	if s.waiting >= limit {
		return fmt.Sprintf("%s, and %d connections already waiting", why, s.waiting)
	}
	s.waiting++
	defer func() { s.waiting-- }()
	s.log.Info("connection waiting for a startup slot", "src", src, "reason", why, "waiting", s.waiting)
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		freed := s.startupFreed
		s.mu.Unlock()
		select {
		case <-freed:
		case <-t.C:
			s.mu.Lock()
			return why + " (waited until login_grace_time)"
		case <-s.done:
			s.mu.Lock()
			return "shutting down"
		}
		s.mu.Lock()
		if s.closing {
			return "shutting down"
		}
		if why, full = s.tryAdmit(cfg, src); why == "" || !full {
			return why
		}
	}
}

// startupDone takes a connection out of the unauthenticated counts, once:
// when it authenticates or when it closes before that.
func (s *Server) startupDone(c *graceConn) {
	if !c.counted.CompareAndSwap(true, false) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unauth--
	if s.unauthBySrc[c.src]--; s.unauthBySrc[c.src] <= 0 {
		delete(s.unauthBySrc, c.src)
	}
	if s.waiting > 0 { // wake the waiting connections (admitWait)
		close(s.startupFreed)
		s.startupFreed = make(chan struct{})
	}
}

// hostOf is the address part of a remote address.
func hostOf(a net.Addr) string {
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}

// sessionLimitLayer enforces the tenant's max_sessions across all her
// connections, and keeps the registry of live sessions Shutdown tells.
func (s *Server) sessionLimitLayer(next sessionHandler) sessionHandler {
	return func(ss *session) {
		u := ss.tenant
		s.mu.Lock()
		if u.MaxSessions > 0 && s.sessionsOf[u.Name] >= u.MaxSessions {
			s.mu.Unlock()
			s.log.Info("session refused", "tenant", u.Name, "remote", ss.remote, "session", ss.id,
				"reason", fmt.Sprintf("max_sessions (%d) reached", u.MaxSessions))
			ss.nc.Reject(gossh.ResourceShortage, "too many sessions")
			ss.exit = "refused"
			return
		}
		s.sessionsOf[u.Name]++
		s.live[ss] = struct{}{}
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			if s.sessionsOf[u.Name]--; s.sessionsOf[u.Name] <= 0 {
				delete(s.sessionsOf, u.Name)
			}
			delete(s.live, ss)
			s.mu.Unlock()
		}()
		next(ss)
	}
}

// activity remembers when a session last had input or output, and how
// many bytes went each way.
type activity struct {
	last    atomic.Int64
	in, out atomic.Int64
}

func (a *activity) touch()                       { a.last.Store(time.Now().UnixNano()) }
func (a *activity) idle() time.Duration          { return time.Since(time.Unix(0, a.last.Load())) }
func (a *activity) reader(r io.Reader) io.Reader { return activeReader{r, a} }
func (a *activity) writer(w io.Writer) io.Writer { return activeWriter{w, a} }

type activeReader struct {
	r io.Reader
	a *activity
}

func (r activeReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if n > 0 {
		r.a.touch()
		r.a.in.Add(int64(n))
	}
	return n, err
}

type activeWriter struct {
	w io.Writer
	a *activity
}

func (w activeWriter) Write(b []byte) (int, error) {
	n, err := w.w.Write(b)
	if n > 0 {
		w.a.touch()
		w.a.out.Add(int64(n))
	}
	return n, err
}

// watchdog ends a session that was idle for idle_timeout plus idle_grace
// (with a warning when the grace starts) or that reached
// max_session_time, telling the tenant why in her terminal or on stderr.
// It returns when done is closed.
func (ss *session) watchdog(act *activity, kill func(), done <-chan struct{}) {
	u := ss.tenant
	if u.IdleTimeout <= 0 && u.MaxSessionTime <= 0 {
		return
	}
	say := ss.notice
	tick := 250 * time.Millisecond
	if u.IdleTimeout > 0 && u.IdleTimeout/4 < tick {
		tick = u.IdleTimeout / 4
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if u.MaxSessionTime > 0 && time.Since(ss.begin) >= u.MaxSessionTime {
			ss.srv.log.Info("session timeout", "tenant", u.Name, "session", ss.id, "reason", "max_session_time")
			say(fmt.Sprintf("maximum session time (%v) reached; closing", u.MaxSessionTime))
			kill()
			return
		}
		if u.IdleTimeout <= 0 {
			continue
		}
		idle := act.idle()
		switch {
		case idle < u.IdleTimeout:
			warned = false
		case !warned:
			warned = true
			say(fmt.Sprintf("idle for %v; this session closes in %v unless there is input or output", u.IdleTimeout, u.IdleGrace))
		case idle >= u.IdleTimeout+u.IdleGrace:
			ss.srv.log.Info("session timeout", "tenant", u.Name, "session", ss.id, "reason", "idle_timeout")
			say("idle timeout; closing")
			kill()
			return
		}
	}
}

// keepalive probes an authenticated connection every client_alive_interval
// with keepalive@openssh.com and closes it after client_alive_count_max
// unanswered probes (sshd ClientAliveInterval / ClientAliveCountMax), so a
// vanished client's sessions end.
func (s *Server) keepalive(ctx ssh.Context, st *connState) {
	sv := st.cfg.Server
	if sv.ClientAliveInterval <= 0 {
		return
	}
	t := time.NewTicker(sv.ClientAliveInterval)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		conn, _ := ctx.Value(ssh.ContextKeyConn).(gossh.Conn)
		if conn == nil {
			continue // still in the handshake: the grace timer covers it
		}
		reply := make(chan struct{})
		go func() {
			conn.SendRequest("keepalive@openssh.com", true, nil)
			close(reply)
		}()
		select {
		case <-reply:
			missed = 0
		case <-time.After(sv.ClientAliveInterval):
			if missed++; missed >= sv.ClientAliveCountMax {
				s.log.Info("client not alive; closing", "remote", remoteOf(conn.RemoteAddr()), "conn", st.id,
					"missed", missed)
				st.conn.Conn.Close()
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// Penalties (sshd PerSourcePenalties, authfail only): every connection
// that ends without authenticating after refused keys adds
// per_source_penalty to its address; past penaltyThreshold of it the
// address is refused until the penalty runs out, capped at penaltyMax.
const (
	penaltyThreshold = 30 * time.Second
	penaltyMax       = 10 * time.Minute
)

// penaltySlowdown divides an address's pending penalty into the wait
// before each of its refused keys is answered, so an address that keeps
// failing is slowed down before it is refused: at the default 5s a
// connection, one failed connection makes the next refusal wait ~83ms,
// five ~417ms, and the sixth reaches the threshold.
const penaltySlowdown = 60

// slowdown is how long a refused key from src waits for its answer.
func (s *Server) slowdown(src string) time.Duration {
	s.mu.Lock()
	until, ok := s.penalties[src]
	s.mu.Unlock()
	if !ok {
		return 0
	}
	return max(time.Until(until), 0) / penaltySlowdown
}

// penalised reports whether src is refused for now (called under s.mu).
func (s *Server) penalised(src string, now time.Time) bool {
	until, ok := s.penalties[src]
	if !ok {
		return false
	}
	if !until.After(now) {
		delete(s.penalties, src)
		return false
	}
	return until.Sub(now) >= penaltyThreshold
}

// penalise adds a failed connection's penalty to its address.
func (s *Server) penalise(cfg *config.Config, src string) {
	sv := cfg.Server
	if sv.PerSourcePenalty <= 0 || exempt(sv.PerSourcePenaltyExempt, src) {
		return
	}
	now := time.Now()
	s.mu.Lock()
	was := s.penalised(src, now)
	until := s.penalties[src]
	if until.Before(now) {
		until = now
	}
	until = until.Add(sv.PerSourcePenalty)
	if until.Sub(now) > penaltyMax {
		until = now.Add(penaltyMax)
	}
	s.penalties[src] = until
	started := !was && s.penalised(src, now)
	s.mu.Unlock()
	if started {
		s.log.Warn("penalty starts: refusing the address after repeated authentication failures",
			"remote", src, "until", until.Format(time.RFC3339))
	}
}

// exempt reports whether src lies in one of the CIDRs.
func exempt(cidrs []string, src string) bool {
	ip := net.ParseIP(src)
	for _, c := range cidrs {
		if _, n, err := net.ParseCIDR(c); err == nil && ip != nil && n.Contains(ip) {
			return true
		}
	}
	return false
}
