package gateway

// The one path from a channel to its tenant's environment. Every channel
// type walks it: a session (shell, exec, the sftp subsystem), direct-tcpip
// (ssh -L), tcpip-forward (ssh -R) and each connection to an ssh -R
// listener; agent forwarding gets the environment its session holds.
//
//	admitChannel    which snapshot, tenant and key options the channel has
//	channelEnvKey   which environment it joins (envKey names it)
//	acquireEnv      provision the tenant's spec and ask the Manager for it

import (
	"context"
	"fmt"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/keys"
)

// channelAuth is what a channel was admitted with: the configuration
// snapshot current when it opened, the tenant in it, and the options of
// the key the connection authenticated with. The channel keeps it for its
// whole life.
type channelAuth struct {
	cfg    *config.Config
	tenant *config.User
	opts   keys.Options
	key    gossh.PublicKey // the connection's verified key; nil if none
}

// admitChannel authorizes a new channel or global request of conn
// (session, direct-tcpip, tcpip-forward, a connection to an ssh -R
// listener) and returns its snapshot, tenant and key options, or why it is
// refused. This is the one accessor of the snapshot rule (see SetConfig):
//
//   - connection-level settings (ciphers, login grace, max_auth_tries,
//     keepalive) come from the snapshot taken when the connection was
//     accepted (connState.cfg);
//   - every new channel or global request is authorized against, and takes
//     its tenant settings from, the snapshot current when it opens: a
//     reload that revokes her key refuses new channels on an old
//     connection, and changed tenant settings apply to new channels;
//   - a channel keeps what it started with for its whole life.
//
// Nothing else reads Server.Config for tenant settings.
func (s *Server) admitChannel(ctx ssh.Context, conn *gossh.ServerConn) (channelAuth, string) {
	return authorizeChannel(s.Config(), ctx, conn)
}

// authorizeChannel is admitChannel against snapshot cfg: the CVE-2024-45337
// re-check of the connection's key (authorizeSession). revoke asks it of
// a reload's new snapshot for every live session.
func authorizeChannel(cfg *config.Config, ctx ssh.Context, conn *gossh.ServerConn) (channelAuth, string) {
	key, _ := ctx.Value(ssh.ContextKeyPublicKey).(gossh.PublicKey)
	u, opts, reason := authorizeSession(cfg, conn, key, conn.Permissions)
	return channelAuth{cfg: cfg, tenant: u, opts: opts, key: key}, reason
}

// fingerprint is the fingerprint of the channel's key for the log, or "".
func (a channelAuth) fingerprint() string {
	if a.key == nil {
		return ""
	}
	return keys.Fingerprint(a.key)
}

// envScope is how widely a tenant's environment is shared.
type envScope int

const (
	scopeTenant     envScope = iota // one per tenant
	scopeConnection                 // one per connection
	scopeSession                    // one per session channel
)

// scopeOf is u's environment scope. An unknown mode (config validation
// rejects one) gets the strictest: an environment per session.
func scopeOf(u *config.User) envScope {
	switch u.Environment {
	case "", config.EnvTenant:
		return scopeTenant
	case config.EnvConnection:
		return scopeConnection
	}
	return scopeSession
}

// envKey is the one function that names environments for the Manager:
// "tenant/<name>", "conn/<connection id>" or "session/<session id>", per
// u's environment scope.
func envKey(u *config.User, conn, session string) string {
	switch scopeOf(u) {
	case scopeTenant:
		return "tenant/" + u.Name
	case scopeConnection:
		return "conn/" + conn
	}
	return "session/" + session
}

// channelEnvKey says which environment a channel of u's on connection st
// joins. A session channel passes its own id. A forward passes "": in
// tenant and connection scope it joins the same environment a session
// would; in session scope each session has its own, so a forward can only
// join one if the connection has exactly one live session. why says why
// not.
func (s *Server) channelEnvKey(u *config.User, st *connState, session string) (key, why string) {
	if session == "" && scopeOf(u) == scopeSession {
		ids := s.sessions.withEnvOn(st)
		if len(ids) != 1 {
			return "", fmt.Sprintf("environment: session and %d live sessions on the connection (need exactly 1)", len(ids))
		}
		session = ids[0]
	}
	return envKey(u, st.id, session), ""
}

// acquireEnv gets the environment key for an admitted channel: the
// tenant's spec from Options.Provision, then the Manager's environment
// (started, or joined if live), timed for the environment-wait metric.
// The caller releases it. A failure is a *startError naming the step.
func (s *Server) acquireEnv(ctx context.Context, a channelAuth, key string) (jail.Env, error) {
	spec, err := s.opts.Provision(ctx, a.tenant)
	if err != nil {
		return nil, &startError{step: "provision", err: err}
	}
	begin := time.Now()
	env, err := s.opts.Manager.Environment(ctx, key, spec)
	s.opts.Metrics.envWait(time.Since(begin))
	if err != nil {
		return nil, &startError{step: "environment", err: err}
	}
	return env, nil
}

// startError is why a channel's command or environment could not start:
// the step that failed and its error, which stays in the operator's log.
type startError struct {
	step string
	err  error
}

func (e *startError) Error() string { return e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

// stepOf is the step a start error names ("start" if it names none).
func stepOf(err error) string {
	if se, ok := err.(*startError); ok {
		return se.step
	}
	return "start"
}

// startFailed logs that what could not start, with err and a fresh
// reference, and returns the line the tenant is shown instead: no host
// path or errno reaches her (tailssh userVisibleError), only the reference
// that finds the log line.
func (s *Server) startFailed(what string, err error, attrs ...any) string {
	ref := newRef()
	s.log.Error(what+" could not start", append(attrs, "step", stepOf(err), "ref", ref, "err", err)...)
	return couldNotStart(ref)
}

// couldNotStart is the line a tenant is shown when her environment or
// command failed, with the reference of the operator's log line.
func couldNotStart(ref string) string { return "your environment could not start (ref " + ref + ")" }
