// Package gateway is jailgate's SSH server. It uses gliderlabs/ssh for
// listening, the handshake and public key authentication, and handles the
// "session" channel itself (session.go) so that terminal bytes are never
// rewritten and terminal modes, exit-signal and late pty-req rejection are
// ours. Every session runs inside the tenant's environment, which it asks
// the jail for through the jail.Manager seam: the gateway makes no
// namespace, mount or other privileged call itself.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/rootfs"
)

// DefaultLoginGraceTime is how long a client has for the handshake and
// authentication when Options.LoginGraceTime is zero (sshd's LoginGraceTime
// is 120s; ours is shorter because a tenant logs in with a key, not by typing).
const DefaultLoginGraceTime = 30 * time.Second

// Options configure a Server.
type Options struct {
	Config  *config.Config // the initial snapshot; required
	Manager jail.Manager   // hands out environments; required
	HostKey gossh.Signer   // the server's host key; required
	Logger  *slog.Logger   // nil: slog.Default()
	// Provision turns a tenant into an EnvSpec (id range, prepared rootfs;
	// see package provision); required. It is called for every environment
	// request.
	Provision func(ctx context.Context, u *config.User) (*jail.EnvSpec, error)
	// LoginGraceTime bounds the handshake plus authentication of a
	// connection; 0 means the config's server.login_grace_time.
	LoginGraceTime time.Duration
	// Metrics, if set, are kept up to date (see NewMetrics).
	Metrics *Metrics
	// DiskUsage, if set, reads what a tenant's tree holds against her disk
	// quota (provision.DiskUsage; ok false: no quota bounds it): past it,
	// her next login in a terminal says so, and limit.disk is logged.
	DiskUsage func(u *config.User) (rootfs.Usage, bool)
}

// Server is the SSH gateway. Its methods are safe for concurrent use. It
// keeps the lifecycle (listeners, connections, closing) under mu; admission
// (admission.go) and the live-session registry (registry.go) keep their
// own state under their own locks.
type Server struct {
	opts     Options
	log      *slog.Logger
	cfg      atomic.Pointer[config.Config]
	ssh      *ssh.Server
	handle   sessionHandler // the composed layers, see layers
	adm      *admission     // which connections may start
	sessions *registry      // the live session channels
	channels *channels      // open channels per connection and tenant
	disk     diskWatch      // tenants past their disk quota (own lock)

	mu        sync.Mutex
	closing   bool
	done      chan struct{} // closed by Close
	listeners map[net.Listener]struct{}
	conns     map[*graceConn]struct{}
	wg        sync.WaitGroup // connection and session handlers
}

// New returns a Server for opts; call Serve to accept connections.
func New(opts Options) (*Server, error) {
	switch {
	case opts.Config == nil:
		return nil, errors.New("new gateway: Options.Config is required")
	case opts.Manager == nil:
		return nil, errors.New("new gateway: Options.Manager is required")
	case opts.HostKey == nil:
		return nil, errors.New("new gateway: Options.HostKey is required")
	case opts.Provision == nil:
		return nil, errors.New("new gateway: Options.Provision is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		sessions:  newRegistry(),
		channels:  newChannels(),
		done:      make(chan struct{}),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*graceConn]struct{}{},
	}
	s.adm = newAdmission(opts.Logger, s.done)
	s.cfg.Store(opts.Config)
	s.handle = s.layers()
	s.ssh = &ssh.Server{
		Version:     "jailgate",
		HostSigners: []ssh.Signer{opts.HostKey},
		// Public keys only: with no PasswordHandler and no
		// KeyboardInteractiveHandler, neither method is offered.
		PublicKeyHandler:         s.publicKeyHandler,
		ConnCallback:             s.connCallback,
		ServerConfigCallback:     s.serverConfig,
		ConnectionFailedCallback: s.connectionFailed,
		// Our own session handler; any other channel type (direct-tcpip,
		// x11 …) is rejected as unknown.
		ChannelHandlers: map[string]ssh.ChannelHandler{"session": s.channelHandler, "direct-tcpip": s.forwardHandler},
		RequestHandlers: map[string]ssh.RequestHandler{ // the rest: refused
			"tcpip-forward":        s.remoteForwardHandler,
			"cancel-tcpip-forward": s.cancelRemoteForwardHandler,
		},
		SubsystemHandlers: map[string]ssh.SubsystemHandler{}, // unused: we own "session"
	}
	return s, nil
}

// SetConfig swaps in a new configuration snapshot (a reload). A nil c is
// ignored. Which snapshot applies where is one rule (admitChannel):
//
//   - Connections accepted from now on authenticate against c and take
//     their connection-level settings from it (ciphers, login grace,
//     max_auth_tries, keepalive); a live connection keeps those of the
//     snapshot it was accepted with.
//   - Every new channel or global request (session, direct-tcpip,
//     tcpip-forward, a connection to an ssh -R listener), on new and live
//     connections alike, is authorized against c and takes its tenant
//     settings from c: a tenant or key c removes opens nothing new on an
//     old connection, and changed tenant settings apply to new channels.
//   - A live channel keeps the snapshot it opened with. Unless c says
//     revoke: keep-sessions, live sessions whose tenant or key c no longer
//     admits are ended (revoke).
func (s *Server) SetConfig(c *config.Config) {
	if c == nil {
		return
	}
	old := s.cfg.Swap(c)
	s.log.Info("reloaded", "config", c.File, "tenants", len(c.Users), "changes", tenantChanges(old, c))
	s.opts.Metrics.Reload("ok")
	s.revoke(c)
}

// tenantChanges summarises a reload for the log: tenants added and removed.
func tenantChanges(old, c *config.Config) string {
	var added, removed []string
	for _, n := range c.Names() {
		if old == nil || old.Users[n] == nil {
			added = append(added, n)
		}
	}
	if old != nil {
		for _, n := range old.Names() {
			if c.Users[n] == nil {
				removed = append(removed, n)
			}
		}
	}
	if len(added)+len(removed) == 0 {
		return "no tenant added or removed"
	}
	return fmt.Sprintf("added %v, removed %v", added, removed)
}

// Metrics returns the server's metrics (nil if it keeps none).
func (s *Server) Metrics() *Metrics { return s.opts.Metrics }

// Config returns the current configuration snapshot.
func (s *Server) Config() *config.Config { return s.cfg.Load() }

// Serve accepts connections on l until l is closed or Close is called;
// then it returns nil. Other accept errors are returned.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.isClosing() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !retryableAccept(err) {
				return fmt.Errorf("accept: %w", err)
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "err", err, "delay", delay)
			select {
			case <-time.After(delay):
			case <-s.done:
				return nil
			}
			continue
		}
		delay = 0
		if !s.track() {
			nc.Close()
			continue
		}
		go func() {
			defer s.wg.Done()
			defer s.recoverConn(nc)
			s.ssh.HandleConn(quickAck(nc))
		}()
	}
}

// Shutdown drains the server: it stops accepting connections, tells every
// live session msg (in its terminal, or on stderr), waits until the
// sessions end or ctx is done, and then closes everything as Close does.
func (s *Server) Shutdown(ctx context.Context, msg string) error {
	s.mu.Lock()
	var ls []net.Listener
	for l := range s.listeners {
		ls = append(ls, l)
	}
	s.mu.Unlock()
	live := s.sessions.all()
	for _, l := range ls {
		l.Close()
	}
	s.log.Info("shutting down", "sessions", len(live))
	for _, ss := range live {
		ss.notice(msg)
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		n := s.sessions.count()
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			s.log.Info("shutdown grace over; ending the remaining sessions", "sessions", n)
			return s.Close()
		case <-t.C:
		}
	}
	return s.Close()
}

// Close stops every listener, closes every connection (the processes of
// their sessions are killed, their environments released) and waits for
// the handlers to finish. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.done)
	}
	var ls []net.Listener
	for l := range s.listeners {
		ls = append(ls, l)
	}
	var cs []*graceConn
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	var err error
	for _, l := range ls {
		if cerr := l.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
			err = cerr
		}
	}
	for _, c := range cs {
		c.Conn.Close() // the handler's own Close of the wrapper follows
	}
	s.wg.Wait()
	return err
}

// track counts a handler in, unless the server is closing. Counting under
// mu, never after Close set closing, keeps wg.Add from racing wg.Wait.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	return true
}

// addConn registers an admitted connection for Close, unless the server
// is closing.
func (s *Server) addConn(c *graceConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// isClosing reports whether Close was called.
func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// recoverConn is the connection-level recover: a panic while handling one
// connection (handshake, auth callbacks) is logged and closes only that
// connection. It must be deferred directly.
func (s *Server) recoverConn(nc net.Conn) {
	if r := recover(); r != nil {
		s.log.Error("panic in connection handler", "remote", nc.RemoteAddr().String(), "err", fmt.Sprint(r), "stack", stack())
		nc.Close()
	}
}

// sessionHandler handles one session channel; the layers wrap one another.
type sessionHandler func(ss *session)

// layers composes the handling of a session channel in one place, outermost
// first: recover (a panic ends that session only, after wish's recover
// middleware), log (session start and end lines), authorize (the CVE-2024-45337
// re-check of the connection's key), the channel caps (server.max_channels,
// max_tenant_channels), max_sessions, then the session itself.
func (s *Server) layers() sessionHandler {
	return s.recoverLayer(s.logLayer(s.authorizeLayer(s.channelLimitLayer(s.sessionLimitLayer(s.serveSession)))))
}

// channelHandler is the ssh.ChannelHandler of "session" channels.
func (s *Server) channelHandler(_ *ssh.Server, conn *gossh.ServerConn, nc gossh.NewChannel, ctx ssh.Context) {
	if !s.track() {
		nc.Reject(gossh.ResourceShortage, "server is shutting down")
		return
	}
	defer s.wg.Done()
	st := stateOf(ctx)
	if st == nil { // every connection passes connCallback; never expected
		nc.Reject(gossh.ConnectionFailed, "internal error")
		return
	}
	ss := newSession(s, ctx, conn, nc, st)
	s.handle(ss)
	if ss.ch != nil {
		ss.ch.Close()
	}
}

// retryableAccept reports whether an accept error is transient (out of
// file descriptors or buffers, an aborted connection).
func retryableAccept(err error) bool {
	for _, e := range []error{unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM, unix.ECONNABORTED, unix.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
