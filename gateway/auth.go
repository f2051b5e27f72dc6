package gateway

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/keys"
)

// Reasons an authentication or a session is refused; they go to the log
// only. The client learns nothing but "permission denied".
const (
	reasonUnknownUser  = "unknown user"
	reasonKeyNotListed = "key not listed"
	reasonNoConfig     = "no configuration"
	reasonNoKey        = "connection has no public key"
	reasonNotVerified  = "public key is not the one the client proved"
	reasonKeyExpired   = "key expired (expiry-time)"
	reasonFromMismatch = "client address does not match the key's from="
)

// extVerifiedKey is the Permissions extension that carries the wire form
// of the key the client signed with. It is set only by verifiedKey, after
// x/crypto checked the signature, and ends up in ServerConn.Permissions.
const extVerifiedKey = "jailgate-verified-key@jailgate"

// connStateKey is the ssh.Context key of a connection's *connState.
type connStateKey struct{}

// connState is what the gateway keeps per connection.
type connState struct {
	id       string         // unique connection id, for env keys and logs
	cfg      *config.Config // the snapshot taken at connection start
	conn     *graceConn
	ctx      ssh.Context   // the connection's: its verified key, its ServerConn once logged in
	sessions atomic.Uint64 // session counter, for session ids
	notes    connNotes     // lines for the tenant's next session (tellConn)

	// authUser is the user name of the first authentication request. Set
	// and read only by authLog, which x/crypto calls from the handshake
	// goroutine, one request at a time.
	authUser string
	// authFailures counts refused keys; publicKeyHandler writes it, and
	// graceConn.Close (possibly from x/crypto's transport goroutine) reads it.
	authFailures atomic.Int32
}

// stateOf returns the connection state connCallback stored in ctx.
func stateOf(ctx ssh.Context) *connState {
	st, _ := ctx.Value(connStateKey{}).(*connState)
	return st
}

// graceConn is an accepted connection: it is closed unless authentication
// succeeds within the login grace time. gliderlabs v0.3.8 has no handshake
// timeout and resets the net.Conn deadline on every read, so a deadline
// cannot be used; a timer that a successful authentication stops can.
type graceConn struct {
	net.Conn
	s         *Server
	src       string     // source address, for per-source counts
	id        string     // the connection id, for logs
	st        *connState // its state, for the penalty on a failed close
	start     time.Time
	timer     *time.Timer
	closeOnce sync.Once
	startup   *startup // its place in admission's unauthenticated counts
}

// Read marks its startup heard once the client has sent something: from
// then on it is slow, not stale (evictHeardFloor).
func (c *graceConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.startup != nil && !c.startup.heard.Load() {
		c.startup.heard.Store(true)
	}
	return n, err
}

// authenticated stops the login grace timer and the connection's count as
// a startup. If the timer already fired, the connection is being closed
// anyway.
func (c *graceConn) authenticated() {
	c.timer.Stop()
	c.s.opts.Metrics.handshake(time.Since(c.start))
	c.startupOver()
}

// startupOver takes the connection out of admission's unauthenticated
// counts, once: when it authenticates or when it closes before that.
func (c *graceConn) startupOver() {
	if c.startup != nil {
		c.s.adm.startupOver(c.startup)
	}
}

// Close closes the connection and forgets it; gliderlabs calls it when the
// connection's handler ends.
func (c *graceConn) Close() error {
	c.closeOnce.Do(func() {
		c.timer.Stop()
		if c.startup != nil && !c.startup.over.Load() && c.st != nil && c.st.authFailures.Load() > 0 {
			c.s.adm.penalise(c.st.cfg, c.src) // ended unauthenticated after refused keys
		}
		c.startupOver()
		c.s.adm.closed()
		c.s.opts.Metrics.connClosed()
		c.s.log.Info("disconnect", "remote", c.RemoteAddr().String(), "conn", c.id,
			"duration", time.Since(c.start).Round(time.Millisecond))
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// connCallback runs first for every accepted connection: it takes the
// configuration snapshot, arms the login grace timer and logs the
// connection. Returning nil makes gliderlabs close the connection.
func (s *Server) connCallback(ctx ssh.Context, nc net.Conn) net.Conn {
	remote := nc.RemoteAddr().String()
	cfg := s.Config()
	grace := s.opts.LoginGraceTime
	if grace <= 0 {
		grace = cfg.Server.LoginGraceTime
	}
	if grace <= 0 {
		grace = DefaultLoginGraceTime
	}
	gc := &graceConn{Conn: nc, s: s, src: hostOf(nc.RemoteAddr()), start: time.Now()}
	st := &connState{id: newID(), cfg: cfg, conn: gc, ctx: ctx}
	gc.id, gc.st = st.id, st
	if s.isClosing() {
		return nil
	}
	// A connection may wait for a startup slot up to startupQueueGrace ×
	// login_grace_time, unread; its own login_grace_time starts when it has
	// one, since only then does its handshake begin (a burst behind one NAT
	// waits its turn instead of timing out in the queue).
	su, why := s.adm.admit(cfg, gc.src, gc.start.Add(startupQueueGrace*grace), func() { nc.Close() })
	if why != "" {
		s.log.Warn("connection refused", "remote", remote, "reason", why)
		return nil
	}
	gc.startup = su
	gc.timer = time.AfterFunc(grace, func() {
		s.log.Info("login grace time exceeded; closing", "remote", remote, "conn", st.id)
		nc.Close()
	})
	if !s.addConn(gc) { // Close ran while it waited: undo the admission
		gc.timer.Stop()
		gc.startupOver()
		s.adm.closed()
		return nil
	}
	ctx.SetValue(connStateKey{}, st)
	s.log.Info("connection", "remote", remote, "conn", st.id)
	s.opts.Metrics.connOpened()
	go s.keepalive(ctx, st)
	return gc
}

// connectionFailed logs a connection whose handshake or authentication
// failed (garbage, a timeout, no accepted key).
func (s *Server) connectionFailed(nc net.Conn, err error) {
	s.log.Info("connection failed before login", "remote", nc.RemoteAddr().String(), "err", err)
}

// serverConfig adds our x/crypto callbacks to the config gliderlabs builds
// for a connection (gliderlabs sets the public key callback itself).
func (s *Server) serverConfig(ctx ssh.Context) *gossh.ServerConfig {
	st := stateOf(ctx)
	maxTries := 0
	var offer gossh.Config // empty lists: x/crypto's defaults
	if st != nil {
		maxTries = st.cfg.Server.MaxAuthTries
		// The algorithm offer of the connection's snapshot: a reload
		// changes it for new connections only. The host key algorithm is
		// the host key's: ssh-ed25519, nothing else (x/crypto derives it
		// from the key's type; no rsa or SHA-1 signature is advertised).
		offer = gossh.Config{
			KeyExchanges: st.cfg.Server.Kex,
			Ciphers:      st.cfg.Server.Ciphers,
			MACs:         st.cfg.Server.MACs,
		}
	}
	return &gossh.ServerConfig{
		Config:       offer,
		MaxAuthTries: maxTries, // sshd MaxAuthTries; 0 is x/crypto's default (6)
		AuthLogCallback: func(conn gossh.ConnMetadata, method string, err error) {
			s.authLog(st, conn, method, err)
		},
		VerifiedPublicKeyCallback: s.verifiedKey,
	}
}

// publicKeyHandler is the gliderlabs PublicKeyHandler: a pure function of
// (user, key) against the connection's configuration snapshot. It writes
// nothing to ctx. x/crypto calls it once per distinct (user, key) a client
// offers, so a refusal is logged once per attempt.
func (s *Server) publicKeyHandler(ctx ssh.Context, key ssh.PublicKey) bool {
	st := stateOf(ctx)
	var cfg *config.Config
	if st != nil {
		cfg = st.cfg
	}
	// sshd's MaxAuthTries counts every refused key, offered or signed;
	// x/crypto lets that many key queries go uncounted, so a client could
	// try twice as many. Count them here (the handshake goroutine is the
	// only caller for a connection).
	if st != nil && cfg.Server.MaxAuthTries > 0 && int(st.authFailures.Load()) >= cfg.Server.MaxAuthTries {
		if int(st.authFailures.Load()) == cfg.Server.MaxAuthTries {
			s.log.Warn("auth: too many authentication failures; disconnecting", "user", ctx.User(),
				"remote", remoteOf(ctx.RemoteAddr()), "conn", st.id, "max_auth_tries", cfg.Server.MaxAuthTries)
			st.conn.Conn.Close()
		}
		st.authFailures.Add(1)
		return false
	}
	_, o, reason := keyAuth(cfg, ctxMeta{ctx}, key)
	if reason == "" {
		// The key line's own restrictions (sshd from= and expiry-time=).
		switch {
		case o.Expired(time.Now()):
			reason = reasonKeyExpired
		case !o.FromAllowed(hostOf(ctx.RemoteAddr())):
			reason = reasonFromMismatch
		}
	}
	if reason != "" {
		s.opts.Metrics.authResult(false)
		attrs := []any{"user", ctx.User(), "remote", remoteOf(ctx.RemoteAddr()),
			"fingerprint", keys.Fingerprint(key), "reason", reason}
		delay := s.adm.slowdown(hostOf(ctx.RemoteAddr()))
		if delay > 0 {
			attrs = append(attrs, "delay", delay.Round(time.Millisecond))
		}
		s.log.Info("auth failed", attrs...)
		if st != nil {
			st.authFailures.Add(1)
		}
		// An address that keeps failing waits for each refusal before it
		// is refused outright (sshd PerSourcePenalties); only this
		// connection's handshake waits.
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
			}
		}
		return false
	}
	return true
}

// verifiedKey runs once the client proved it holds an accepted key. It logs
// the login and records which key that was in the connection's
// Permissions: gliderlabs' ContextKeyPublicKey holds the last key the
// handler accepted, which need not be the one used (CVE-2024-45337).
func (s *Server) verifiedKey(conn gossh.ConnMetadata, key gossh.PublicKey, perms *gossh.Permissions, _ string) (*gossh.Permissions, error) {
	attrs := []any{"user", conn.User(), "remote", remoteOf(conn.RemoteAddr()), "fingerprint", keys.Fingerprint(key),
		"method", "publickey"}
	if cert, ok := key.(*gossh.Certificate); ok {
		attrs = append(attrs, "key_id", cert.KeyId, "serial", cert.Serial)
	} else if cfg := s.Config(); cfg != nil {
		attrs = append(attrs, "comment", cfg.Keys.Comment(conn.User(), key))
	}
	s.log.Info("auth ok", attrs...)
	s.opts.Metrics.authResult(true)
	out := &gossh.Permissions{Extensions: map[string]string{}}
	if perms != nil {
		out.CriticalOptions = perms.CriticalOptions
		for k, v := range perms.Extensions {
			out.Extensions[k] = v
		}
	}
	out.Extensions[extVerifiedKey] = string(key.Marshal())
	return out, nil
}

// authLog sees every authentication request. It stops the login grace
// timer on success, logs refused methods other than publickey (the
// handler logs those) and "none", and disconnects a client that changes
// its user name between requests, as sshd does ("change of username or
// service not allowed", auth2.c): gliderlabs fills ctx.User() from the
// first request only, so the handler could otherwise judge a key against
// the wrong user.
func (s *Server) authLog(st *connState, conn gossh.ConnMetadata, method string, err error) {
	if st == nil {
		return
	}
	switch {
	case st.authUser == "":
		st.authUser = conn.User()
	case conn.User() != st.authUser:
		s.log.Warn("auth: user name changed during authentication; disconnecting",
			"user", st.authUser, "remote", remoteOf(conn.RemoteAddr()), "conn", st.id)
		st.conn.Conn.Close()
		return
	}
	st.conn.startup.kex.Store(true) // an auth request comes after the key exchange
	if err == nil {
		st.conn.authenticated()
		return
	}
	if method != "publickey" && method != "none" {
		s.log.Info("auth failed", "user", conn.User(), "remote", remoteOf(conn.RemoteAddr()),
			"method", method, "reason", "method not offered")
	}
}

// authorize says whether key is one of user's keys in cfg, and if not why.
func authorize(cfg *config.Config, user string, key gossh.PublicKey) (*config.User, string) {
	if cfg == nil {
		return nil, reasonNoConfig
	}
	u := cfg.Users[user]
	if u == nil {
		return nil, reasonUnknownUser
	}
	if key == nil || !cfg.Keys.Authorize(user, key) {
		return nil, reasonKeyNotListed
	}
	return u, ""
}

// authorizeSession re-derives the tenant of a channel: the user is the one
// the connection authenticated as (ServerConn.User, not gliderlabs'
// ctx.User()), the key is gliderlabs' ContextKeyPublicKey, which must be
// the key the client proved it holds and must be listed for that user in
// snapshot cfg (authorizeChannel says which). This is the session-time check
// CVE-2024-45337 asks for (gliderlabs #242, #243; Soft Serve does the same).
func authorizeSession(cfg *config.Config, conn gossh.ConnMetadata, ctxKey gossh.PublicKey, perms *gossh.Permissions) (*config.User, keys.Options, string) {
	if ctxKey == nil {
		return nil, keys.Options{}, reasonNoKey
	}
	if perms == nil || perms.Extensions[extVerifiedKey] != string(ctxKey.Marshal()) {
		return nil, keys.Options{}, reasonNotVerified
	}
	return keyAuth(cfg, conn, ctxKey)
}

// authorizeLayer refuses a session channel whose connection's key is not,
// or no longer provably, the tenant's in the current snapshot, and gives
// the session its snapshot, tenant and key options (admitChannel).
func (s *Server) authorizeLayer(next sessionHandler) sessionHandler {
	return func(ss *session) {
		a, reason := s.admitChannel(ss.ctx, ss.conn)
		if reason != "" {
			s.log.Warn("session refused", "user", ss.user, "remote", ss.remote, "session", ss.id,
				"fingerprint", a.fingerprint(), "reason", reason)
			ss.nc.Reject(gossh.Prohibited, "not authorized")
			ss.exit = "refused"
			return
		}
		ss.auth = a
		next(ss)
	}
}

// remoteOf formats a remote address for the log.
func remoteOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
