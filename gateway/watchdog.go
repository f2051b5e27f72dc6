package gateway

// The watchdogs of live sessions and connections: idle_timeout with
// idle_grace and max_session_time per session (watchdog, fed by activity),
// and client_alive_interval per connection (keepalive).

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

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
	u := ss.auth.tenant
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
