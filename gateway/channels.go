package gateway

import (
	"fmt"
	"sync"

	gossh "golang.org/x/crypto/ssh"
)

// The gateway's bound on what channels can make it hold. x/crypto grants
// every channel a fixed receive window of 2 MiB (channelWindowSize, 64
// packets of 32 KiB; a server cannot lower it) and buffers up to that much
// of what the client sent until the gateway reads it, which it does only
// as fast as the program inside (or the -L destination) takes it. So the
// data one tenant can make the gateway hold is at most her open channels
// × channelWindow, and server.max_tenant_channels bounds her channels
// (128 by default: 256 MiB); server.max_channels bounds one connection's
// (10 sessions + 64 forwarding channels: 148 MiB).
const channelWindow = 2 << 20

// Channel kinds, as counted against server.max_channels: a session, or
// one of the forwarding kinds.
const (
	chanSession        = "session"
	chanDirectTCPIP    = "direct-tcpip"    // ssh -L / -D
	chanForwardedTCPIP = "forwarded-tcpip" // a connection to an ssh -R listener
	chanAgent          = "agent"           // a connection to the ssh -A socket
)

// channels counts the open channels of each connection and each tenant,
// under its own lock, for server.max_channels and max_tenant_channels.
type channels struct {
	mu       sync.Mutex
	byConn   map[*connState]*connChannels
	byTenant map[string]int
}

// connChannels are one connection's open channels by kind.
type connChannels struct{ sessions, forwards int }

func newChannels() *channels {
	return &channels{byConn: map[*connState]*connChannels{}, byTenant: map[string]int{}}
}

// takeChannel counts a new channel of kind on connection st for a's tenant,
// unless the connection's cap (from the snapshot it was accepted with) or
// the tenant's (from the channel's snapshot) is reached. It returns the
// func that forgets the channel, or why it is refused: a line for the
// client that names the setting.
func (s *Server) takeChannel(st *connState, a channelAuth, kind string) (release func(), why string) {
	c := s.channels
	perConn := st.cfg.Server.MaxChannels
	tenant, perTenant := a.tenant.Name, a.cfg.Server.MaxTenantChannels
	c.mu.Lock()
	defer c.mu.Unlock()
	cc := c.byConn[st]
	if cc == nil {
		cc = &connChannels{}
	}
	n, limit, setting := &cc.forwards, perConn.Forwards, "max_channels.forwards"
	if kind == chanSession {
		n, limit, setting = &cc.sessions, perConn.Sessions, "max_channels.sessions"
	}
	switch {
	case limit > 0 && *n >= limit:
		return nil, fmt.Sprintf("too many %s channels on this connection (server.%s is %d)", what(kind), setting, limit)
	case perTenant > 0 && c.byTenant[tenant] >= perTenant:
		return nil, fmt.Sprintf("too many channels for %s across her connections (server.max_tenant_channels is %d)",
			tenant, perTenant)
	}
	*n++
	c.byConn[st] = cc
	c.byTenant[tenant]++
	s.opts.Metrics.channelOpened(kind)
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if *n--; cc.sessions+cc.forwards == 0 {
				delete(c.byConn, st)
			}
			if c.byTenant[tenant]--; c.byTenant[tenant] <= 0 {
				delete(c.byTenant, tenant)
			}
			s.opts.Metrics.channelClosed(kind)
		})
	}, ""
}

// what names a channel kind for a refusal.
func what(kind string) string {
	if kind == chanSession {
		return "session"
	}
	return "forwarding"
}

// channelLimitLayer refuses a session channel past server.max_channels or
// max_tenant_channels, and counts it while it is open.
func (s *Server) channelLimitLayer(next sessionHandler) sessionHandler {
	return func(ss *session) {
		release, why := s.takeChannel(ss.st, ss.auth, chanSession)
		if why != "" {
			s.channelRefused(ss.auth.tenant.Name, ss.remote, ss.st.id, chanSession, why)
			ss.nc.Reject(gossh.ResourceShortage, why)
			ss.exit = "refused"
			return
		}
		defer release()
		next(ss)
	}
}

// channelRefused logs a channel refused by a channel cap.
func (s *Server) channelRefused(tenant, remote, conn, kind, why string) {
	s.log.Info("channel refused", "tenant", tenant, "remote", remote, "conn", conn, "kind", kind, "reason", why)
}
