package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/jail"
)

// maxRemoteConns bounds the connections one ssh -R listener has open at
// once (each holds a gateway fd and a channel); past it the listener stops
// accepting until one ends, so a tenant's connect storm cannot exhaust the
// gateway's descriptors.
const maxRemoteConns = 128

// maxRemoteForwards bounds the ssh -R listeners of one connection.
const maxRemoteForwards = 32

// tcpipForward is the payload of "tcpip-forward" and "cancel-tcpip-forward"
// (RFC 4254 7.1).
type tcpipForward struct {
	BindAddr string
	BindPort uint32
}

// forwardedTCPIP is the payload of a "forwarded-tcpip" channel (RFC 4254 7.2).
type forwardedTCPIP struct {
	DestAddr   string
	DestPort   uint32
	OriginAddr string
	OriginPort uint32
}

// remoteForwards are one connection's ssh -R listeners, by the address and
// port the client named ("localhost:8080"; for port 0, the port allocated).
type remoteForwards struct {
	mu     sync.Mutex
	byKey  map[string]*remoteForward
	closed bool // the connection ended
}

type remoteForwardsKey struct{}

// remoteForward is one ssh -R listener inside the tenant's environment.
type remoteForward struct {
	l      net.Listener
	env    jail.Env
	ctx    ssh.Context // the connection's, whose key admitChannel checks again for each connection
	bind   string      // the address as the client named it, echoed in forwarded-tcpip
	port   uint32      // the port listened on
	once   sync.Once
	closed chan struct{}
}

// close stops the listener and releases its environment.
func (f *remoteForward) close() {
	f.once.Do(func() {
		close(f.closed)
		f.l.Close()
		f.env.Release()
	})
}

// bindHost maps the address ssh -R asks to listen on to one inside her
// environment: OpenSSH sends "localhost" by default and "" for "*"; with
// network: none (the only mode) her namespace has nothing but loopback,
// so "", "*" and "localhost" listen on 127.0.0.1 and other addresses must
// be loopback ones (sshd GatewayPorts no keeps -R on loopback likewise).
func bindHost(addr string) (string, bool) {
	switch addr {
	case "", "*", "localhost":
		return "127.0.0.1", true
	}
	if ip := net.ParseIP(addr); ip != nil && ip.IsLoopback() {
		return ip.String(), true
	}
	return "", false
}

// remoteForwardHandler serves "tcpip-forward" (ssh -R): the tenant's
// environment listens on its own loopback (the init makes the socket in
// her network namespace and hands it over), and each connection her
// programs make to it comes out on the client as a forwarded-tcpip
// channel. The environment is chosen as for ssh -L, and the listener holds
// a reference on it until cancel-tcpip-forward or the connection's end.
func (s *Server) remoteForwardHandler(ctx ssh.Context, _ *ssh.Server, req *gossh.Request) (ok bool, reply []byte) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in remote forward", "user", ctx.User(), "err", fmt.Sprint(r), "stack", stack())
			ok, reply = false, nil
		}
	}()
	st := stateOf(ctx)
	conn, _ := ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn)
	if st == nil || conn == nil {
		return false, nil
	}
	remote := remoteOf(conn.RemoteAddr())
	a, reason := s.admitChannel(ctx, conn)
	if reason != "" {
		s.log.Warn("forward refused", "user", conn.User(), "remote", remote, "kind", "remote", "reason", reason)
		return false, nil
	}
	var p tcpipForward
	if err := gossh.Unmarshal(req.Payload, &p); err != nil || p.BindPort > 65535 {
		return false, nil
	}
	u := a.tenant
	what := "ssh -R " + forwardKey(p.BindAddr, p.BindPort) + ": "
	// The failure reply has no room for a reason (RFC 4254 4), so the
	// tenant reads msg in her session on this connection (tellConn).
	refuse := func(why, msg string) (bool, []byte) {
		s.log.Info("forward refused", "tenant", u.Name, "remote", remote, "conn", st.id, "kind", "remote",
			"port", p.BindPort, "reason", why)
		s.tellConn(st, what+msg)
		return false, nil
	}
	host, why, msg := remoteRefusal(a, p)
	key := ""
	if why == "" {
		key, why = s.channelEnvKey(u, st, "")
		msg = "your environment is one per session: forward from a connection with exactly one live session"
	}
	if why != "" {
		return refuse(why, msg)
	}
	fwds := s.remoteForwardsOf(ctx)
	if fwds.count() >= maxRemoteForwards {
		why := fmt.Sprintf("the connection has %d remote forwards already", maxRemoteForwards)
		return refuse(why, why)
	}
	f, err := s.listenRemote(ctx, a, key, host, p.BindPort)
	if err != nil {
		msg := "could not listen inside your environment; the gateway's log says why"
		if errors.Is(err, syscall.EADDRINUSE) {
			msg = "the port is in use inside your environment"
		}
		return refuse(err.Error(), msg)
	}
	f.bind, f.ctx = p.BindAddr, ctx
	if !fwds.add(f) {
		f.close()
		return refuse("the address is forwarded already, or the connection ended", "the address is forwarded already")
	}
	if !s.track() {
		fwds.remove(f.bind, f.port)
		return false, nil
	}
	go func() {
		defer s.wg.Done()
		s.acceptRemote(conn, st, u.Name, remote, f)
	}()
	s.log.Info("remote forward listening", "tenant", u.Name, "remote", remote, "conn", st.id, "port", f.port, "env", key)
	if p.BindPort == 0 {
		// The port allocated goes back in the reply, as sshd does.
		return true, gossh.Marshal(struct{ Port uint32 }{f.port})
	}
	return true, nil
}

// remoteRefusal says why a's tenant and key may not listen as p asks (the
// reason for the log, the message for the tenant), or "" and the loopback
// address to listen on inside her environment.
func remoteRefusal(a channelAuth, p tcpipForward) (host, why, msg string) {
	host, loopback := bindHost(p.BindAddr)
	switch {
	case a.opts.NoPortForwarding:
		return "", "the key's line says no-port-forwarding (or restrict)",
			"port forwarding is disabled for this key (no-port-forwarding or restrict in its line)"
	case !a.tenant.Forwarding.Remote:
		return "", "forwarding.remote is off", fmt.Sprintf(
			"remote forwarding is disabled for %s: the gateway's config must set forwarding.remote: true", a.tenant.Name)
	case !a.opts.ListenAllowed(p.BindAddr, p.BindPort):
		return "", fmt.Sprintf("%s is not in the key's permitlisten", forwardKey(p.BindAddr, p.BindPort)),
			"the address is not in this key's permitlisten"
	case !loopback:
		return "", fmt.Sprintf("bind address %q is not loopback (network: %s)", p.BindAddr, a.tenant.Network),
			"only a loopback address inside your environment can listen (localhost, 127.0.0.1, ::1)"
	}
	return host, "", ""
}

// listenRemote starts listening on host:port inside the environment key.
func (s *Server) listenRemote(ctx context.Context, a channelAuth, key, host string, port uint32) (*remoteForward, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	env, err := s.acquireEnv(cctx, a, key)
	if err != nil {
		return nil, fmt.Errorf("environment: %w", err)
	}
	l, err := env.Listen(cctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
	if err != nil {
		env.Release()
		return nil, err
	}
	tcp, _ := l.Addr().(*net.TCPAddr)
	if tcp == nil || tcp.Port <= 0 || tcp.Port > 65535 {
		l.Close()
		env.Release()
		return nil, fmt.Errorf("listener address %v", l.Addr())
	}
	return &remoteForward{l: l, env: env, port: uint32(tcp.Port), closed: make(chan struct{})}, nil
}

// acceptRemote opens a forwarded-tcpip channel for each connection to f,
// until f is closed. A connection whose channel the client refuses is
// closed; each one's copying runs on its own, so a slow client or a slow
// program inside holds up only its own connection.
func (s *Server) acceptRemote(conn *gossh.ServerConn, st *connState, tenant, remote string, f *remoteForward) {
	acceptLoop(f.l, maxRemoteConns, f.closed, func(c net.Conn) {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("panic in remote forward", "tenant", tenant, "err", fmt.Sprint(r), "stack", stack())
			}
		}()
		s.serveRemoteConn(conn, st, tenant, remote, f, c)
	})
}

// acceptLoop hands each connection accepted on l to serve in a goroutine
// of its own, at most max at once (past that it stops accepting until one
// ends), until l fails or stop is closed.
func acceptLoop(l net.Listener, max int, stop <-chan struct{}, serve func(net.Conn)) {
	sem := make(chan struct{}, max)
	for {
		select {
		case sem <- struct{}{}:
		case <-stop:
			return
		}
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer func() { <-sem }()
			serve(c)
		}()
	}
}

// serveRemoteConn carries one connection made to an ssh -R listener.
func (s *Server) serveRemoteConn(conn *gossh.ServerConn, st *connState, tenant, remote string, f *remoteForward, c net.Conn) {
	defer c.Close()
	// Each connection opens a new channel, admitted against the current
	// snapshot: a reload may have revoked her key or turned
	// forwarding.remote off since the listener was made, and then it ends
	// here.
	a, reason := s.admitChannel(f.ctx, conn)
	if reason == "" && (!a.tenant.Forwarding.Remote || a.opts.NoPortForwarding || !a.opts.ListenAllowed(f.bind, f.port)) {
		reason = "forwarding.remote is off (or the key forbids it: no-port-forwarding, permitlisten) since a reload"
	}
	if reason != "" {
		s.log.Info("forward refused", "tenant", tenant, "remote", remote, "conn", st.id, "kind", "remote", "port", f.port,
			"reason", reason)
		f.close()
		return
	}
	release, full := s.takeChannel(st, a, chanForwardedTCPIP)
	if full != "" {
		s.channelRefused(tenant, remote, st.id, chanForwardedTCPIP, full)
		return
	}
	defer release()
	origin, oport := "127.0.0.1", 0
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		origin, oport = a.IP.String(), a.Port
	}
	ch, reqs, err := conn.OpenChannel("forwarded-tcpip", gossh.Marshal(&forwardedTCPIP{
		DestAddr: f.bind, DestPort: f.port, OriginAddr: origin, OriginPort: uint32(oport)}))
	if err != nil {
		s.log.Info("forward failed", "tenant", tenant, "remote", remote, "conn", st.id, "kind", "remote", "port", f.port, "err", err)
		return
	}
	defer ch.Close()
	go gossh.DiscardRequests(reqs)
	begin := time.Now()
	s.log.Info("forward open", "tenant", tenant, "remote", remote, "conn", st.id, "kind", "remote", "port", f.port)
	in, out := pipe(f.ctx, ch, c)
	s.opts.Metrics.forwarded(in, out)
	s.log.Info("forward close", "tenant", tenant, "remote", remote, "conn", st.id, "kind", "remote", "port", f.port,
		"bytes_in", in, "bytes_out", out, "duration", time.Since(begin).Round(time.Millisecond))
}

// cancelRemoteForwardHandler serves "cancel-tcpip-forward" (ssh -O cancel,
// or the client's own cleanup): the listener is closed.
func (s *Server) cancelRemoteForwardHandler(ctx ssh.Context, _ *ssh.Server, req *gossh.Request) (bool, []byte) {
	var p tcpipForward
	if err := gossh.Unmarshal(req.Payload, &p); err != nil {
		return false, nil
	}
	if !s.remoteForwardsOf(ctx).remove(p.BindAddr, p.BindPort) {
		return false, nil
	}
	s.log.Info("remote forward cancelled", "user", ctx.User(), "remote", remoteOf(ctx.RemoteAddr()), "port", p.BindPort)
	return true, nil
}

// remoteForwardsOf returns the connection's ssh -R listeners, starting the
// watch that closes them all when the connection ends.
func (s *Server) remoteForwardsOf(ctx ssh.Context) *remoteForwards {
	// Global requests of one connection are handled one at a time, so
	// this check-then-set does not race.
	if f, ok := ctx.Value(remoteForwardsKey{}).(*remoteForwards); ok {
		return f
	}
	f := &remoteForwards{byKey: map[string]*remoteForward{}}
	ctx.SetValue(remoteForwardsKey{}, f)
	go func() {
		<-ctx.Done()
		f.closeAll()
	}()
	return f
}

func forwardKey(bind string, port uint32) string {
	return net.JoinHostPort(bind, strconv.Itoa(int(port)))
}

func (r *remoteForwards) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byKey)
}

// add registers f, unless its address is taken or the connection ended.
func (r *remoteForwards) add(f *remoteForward) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := forwardKey(f.bind, f.port)
	if r.closed || r.byKey[k] != nil {
		return false
	}
	r.byKey[k] = f
	return true
}

// remove closes and forgets the listener at bind:port.
func (r *remoteForwards) remove(bind string, port uint32) bool {
	r.mu.Lock()
	k := forwardKey(bind, port)
	f := r.byKey[k]
	delete(r.byKey, k)
	r.mu.Unlock()
	if f == nil {
		return false
	}
	f.close()
	return true
}

// closeAll closes every listener: the connection ended.
func (r *remoteForwards) closeAll() {
	r.mu.Lock()
	r.closed = true
	all := r.byKey
	r.byKey = map[string]*remoteForward{}
	r.mu.Unlock()
	for _, f := range all {
		f.close()
	}
}
