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
	"github.com/jailgate/jailgate/jail"
	gossh "golang.org/x/crypto/ssh"
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
// mode the connection's; in session mode the connection's one live
// session's (channelEnvKey). The channel holds a reference on the
// environment while open.
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
	a, reason := s.admitChannel(ctx, conn)
	if reason != "" {
		s.log.Warn("forward refused", "user", conn.User(), "remote", remote, "fingerprint", a.fingerprint(), "reason", reason)
		nc.Reject(gossh.Prohibited, "not authorized")
		return
	}
	var d directTCPIP
	if err := gossh.Unmarshal(nc.ExtraData(), &d); err != nil || d.DestPort == 0 || d.DestPort > 65535 {
		nc.Reject(gossh.ConnectionFailed, "bad forwarding request")
		return
	}
	u := a.tenant
	release, full := s.takeChannel(st, a, chanDirectTCPIP)
	if full != "" {
		s.channelRefused(u.Name, remote, st.id, chanDirectTCPIP, full)
		nc.Reject(gossh.ResourceShortage, full)
		return
	}
	defer release()
	why, msg := localRefusal(a, d)
	key := ""
	if why == "" {
		key, why = s.channelEnvKey(u, st, "")
		msg = "port forwarding needs exactly one live session on this connection"
	}
	if why != "" {
		s.log.Info("forward refused", "tenant", u.Name, "remote", remote, "conn", st.id, "reason", why)
		nc.Reject(gossh.Prohibited, msg)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	env, err := s.acquireEnv(cctx, a, key)
	if err != nil {
		nc.Reject(gossh.ConnectionFailed, s.startFailed("forward", err, "tenant", u.Name, "remote", remote, "conn", st.id))
		return
	}
	defer env.Release()
	c, err := env.Dial(cctx, "tcp", net.JoinHostPort(d.DestAddr, strconv.Itoa(int(d.DestPort))))
	if err != nil {
		s.log.Info("forward failed", "tenant", u.Name, "remote", remote, "conn", st.id, "port", d.DestPort, "err", err)
		nc.Reject(gossh.ConnectionFailed, "connect failed")
		return
	}
	s.pipeForward(ctx, nc, c, u.Name, remote, st.id, d.DestPort)
}

// localRefusal says why a's tenant and key may not forward to d (the
// reason for the log, the message for the client), or "".
func localRefusal(a channelAuth, d directTCPIP) (why, msg string) {
	switch {
	case a.opts.NoPortForwarding:
		return "the key's line says no-port-forwarding (or restrict)", "port forwarding is disabled for this key"
	case !a.tenant.Forwarding.Local:
		return "forwarding.local is off", "port forwarding is disabled for you"
	case !a.opts.OpenAllowed(d.DestAddr, d.DestPort):
		return fmt.Sprintf("%s is not in the key's permitopen", net.JoinHostPort(d.DestAddr, strconv.Itoa(int(d.DestPort)))),
			"this destination is not permitted for this key"
	case !loopbackNames[d.DestAddr] && a.tenant.Network != jail.NetworkNAT:
		// With network: none her namespace has nothing else; with nat the
		// init dials from inside it, under her egress policy.
		return "destination is not loopback", "only localhost inside your environment can be reached"
	}
	return "", ""
}

// pipeForward accepts the channel and copies between it and c until both
// directions end.
func (s *Server) pipeForward(ctx context.Context, nc gossh.NewChannel, c net.Conn, tenant, remote, conn string, port uint32) {
	defer c.Close()
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	go gossh.DiscardRequests(reqs)
	begin := time.Now()
	s.log.Info("forward open", "tenant", tenant, "remote", remote, "conn", conn, "kind", "local", "port", port)
	in, out := pipe(ctx, ch, c)
	s.opts.Metrics.forwarded(in, out)
	s.log.Info("forward close", "tenant", tenant, "remote", remote, "conn", conn, "kind", "local", "port", port,
		"bytes_in", in, "bytes_out", out, "duration", time.Since(begin).Round(time.Millisecond))
}

// pipe copies between a channel and a connection inside the environment
// until both directions end, passing each EOF on; it returns the bytes
// from the client (in) and to it (out). A slow reader on either side holds
// up this pipe only: each channel has its own flow-control window. When
// ctx (the SSH connection's) is done, c is closed: a program inside that
// never hangs up must not keep the pipe, and the environment it holds,
// past the connection's end (a revocation, a disconnect).
func pipe(ctx context.Context, ch gossh.Channel, c net.Conn) (in, out int64) {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
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
