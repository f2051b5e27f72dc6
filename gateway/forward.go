package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/keys"
)

// directTCPIP is the payload of a "direct-tcpip" channel (RFC 4254 7.2).
type directTCPIP struct {
	DestAddr   string
	DestPort   uint32
	OriginAddr string
	OriginPort uint32
}

// loopbackNames are the destinations ssh -L may name: with network: none
// an environment has nothing but its own loopback.
var loopbackNames = map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true}

// forwardHandler serves "direct-tcpip" channels (ssh -L) by connecting from
// inside the tenant's environment (the init dials in its network
// namespace), never from the host: "localhost:8888" is her Jupyter, not
// the host's. In tenant mode that is her one environment, in connection
// mode the connection's; session mode has no environment to name, so it
// is refused. The channel holds a reference on the environment while open.
func (s *Server) forwardHandler(_ *ssh.Server, conn *gossh.ServerConn, nc gossh.NewChannel, ctx ssh.Context) {
	if !s.track() {
		nc.Reject(gossh.ResourceShortage, "server is shutting down")
		return
	}
	defer s.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in forward", "user", conn.User(), "err", fmt.Sprint(r), "stack", stack())
		}
	}()
	st := stateOf(ctx)
	if st == nil {
		nc.Reject(gossh.ConnectionFailed, "internal error")
		return
	}
	remote := remoteOf(conn.RemoteAddr())
	ctxKey, _ := ctx.Value(ssh.ContextKeyPublicKey).(gossh.PublicKey)
	u, opts, reason := authorizeSession(s.Config(), conn, ctxKey, conn.Permissions)
	if reason != "" {
		fp := ""
		if ctxKey != nil {
			fp = keys.Fingerprint(ctxKey)
		}
		s.log.Warn("forward refused", "user", conn.User(), "remote", remote, "fingerprint", fp, "reason", reason)
		nc.Reject(gossh.Prohibited, "not authorized")
		return
	}
	var d directTCPIP
	if err := gossh.Unmarshal(nc.ExtraData(), &d); err != nil || d.DestPort == 0 || d.DestPort > 65535 {
		nc.Reject(gossh.ConnectionFailed, "bad forwarding request")
		return
	}
	refuse := func(why, msg string) {
		s.log.Info("forward refused", "tenant", u.Name, "remote", remote, "conn", st.id, "reason", why)
		nc.Reject(gossh.Prohibited, msg)
	}
	switch {
	case opts.NoPortForwarding:
		refuse("the key's line says no-port-forwarding (or restrict)", "port forwarding is disabled for this key")
		return
	case !u.Forwarding.Local:
		refuse("forwarding.local is off", "port forwarding is disabled for you")
		return
	case !opts.OpenAllowed(d.DestAddr, d.DestPort):
		refuse(fmt.Sprintf("%s is not in the key's permitopen", net.JoinHostPort(d.DestAddr, strconv.Itoa(int(d.DestPort)))),
			"this destination is not permitted for this key")
		return
	case !loopbackNames[d.DestAddr]:
		refuse("destination is not loopback", "only localhost inside your environment can be reached")
		return
	}
	key, why := s.forwardEnvKey(u, st)
	if why != "" {
		refuse(why, "port forwarding needs exactly one live session on this connection")
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	spec, err := s.opts.Provision(cctx, u)
	if err == nil {
		var env interface {
			Dial(context.Context, string, string) (net.Conn, error)
			Release()
		}
		if env, err = s.opts.Manager.Environment(cctx, key, spec); err == nil {
			defer env.Release()
			addr := net.JoinHostPort(d.DestAddr, strconv.Itoa(int(d.DestPort)))
			var c net.Conn
			if c, err = env.Dial(cctx, "tcp", addr); err == nil {
				s.pipeForward(nc, c, u.Name, remote, st.id, d.DestPort)
				return
			}
			s.log.Info("forward failed", "tenant", u.Name, "remote", remote, "conn", st.id, "port", d.DestPort, "err", err)
			nc.Reject(gossh.ConnectionFailed, "connect failed")
			return
		}
	}
	ref := newRef()
	s.log.Error("forward could not start", "tenant", u.Name, "remote", remote, "conn", st.id, "ref", ref, "err", err)
	nc.Reject(gossh.ConnectionFailed, "your environment could not start (ref "+ref+")")
}

// forwardEnvKey names the environment a forward of u's on st joins: in
// tenant mode her one environment, in connection mode the connection's; in
// session mode each session has its own, so a forward can only join one if
// the connection has exactly one live session. why says why not.
func (s *Server) forwardEnvKey(u *config.User, st *connState) (key, why string) {
	switch u.Environment {
	case config.EnvConnection:
		return "conn/" + st.id, ""
	case config.EnvSession:
		ids := s.liveSessionsOf(st)
		if len(ids) != 1 {
			return "", fmt.Sprintf("environment: session and %d live sessions on the connection (need exactly 1)", len(ids))
		}
		return "session/" + ids[0], ""
	}
	return "tenant/" + u.Name, ""
}

// pipeForward accepts the channel and copies between it and c until both
// directions end.
func (s *Server) pipeForward(nc gossh.NewChannel, c net.Conn, tenant, remote, conn string, port uint32) {
	defer c.Close()
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	go gossh.DiscardRequests(reqs)
	begin := time.Now()
	s.log.Info("forward open", "tenant", tenant, "remote", remote, "conn", conn, "kind", "local", "port", port)
	in, out := pipe(ch, c)
	s.opts.Metrics.forwarded(in, out)
	s.log.Info("forward close", "tenant", tenant, "remote", remote, "conn", conn, "kind", "local", "port", port,
		"bytes_in", in, "bytes_out", out, "duration", time.Since(begin).Round(time.Millisecond))
}

// pipe copies between a channel and a connection inside the environment
// until both directions end, passing each EOF on; it returns the bytes
// from the client (in) and to it (out). A slow reader on either side holds
// up this pipe only: each channel has its own flow-control window.
func pipe(ch gossh.Channel, c net.Conn) (in, out int64) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		in, _ = io.Copy(c, ch)
		if tc, ok := c.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite()
		}
	}()
	go func() {
		defer wg.Done()
		out, _ = io.Copy(ch, c)
		ch.CloseWrite()
	}()
	wg.Wait()
	return in, out
}

// liveSessionsOf lists the ids of the connection's live sessions that
// started a command (and so have an environment).
func (s *Server) liveSessionsOf(st *connState) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for ss := range s.live {
		if ss.st == st && ss.hasEnv.Load() {
			ids = append(ids, ss.id)
		}
	}
	return ids
}
