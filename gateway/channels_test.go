package gateway_test

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
)

// refusedShort checks that err is a channel refusal for lack of resources
// whose message names setting.
func refusedShort(t *testing.T, what string, err error, setting string) {
	t.Helper()
	var oe *gossh.OpenChannelError
	switch {
	case err == nil:
		t.Errorf("%s: opened, want refused past %s", what, setting)
	case !errors.As(err, &oe) || oe.Reason != gossh.ResourceShortage:
		t.Errorf("%s: %v, want a resource shortage refusal", what, err)
	case !strings.Contains(oe.Message, setting):
		t.Errorf("%s: message %q does not name %s", what, oe.Message, setting)
	}
}

// TestMaxChannelsSessions is issue 16 item 4's session half: one
// connection opened 500 session channels. With the defaults (OpenSSH's
// MaxSessions 10) the 11th and every later one is refused as a resource
// shortage naming the setting; closing one makes room again.
func TestMaxChannelsSessions(t *testing.T) {
	h, signer := limitLab(t, func(c *config.Config, _ *config.User) {
		c.Server.MaxChannels = config.DefaultMaxChannels
	})
	c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	var open []*gossh.Session
	refused := 0
	for i := 0; i < 500; i++ {
		s, err := c.NewSession()
		if err != nil {
			if refused == 0 {
				refusedShort(t, "session "+strconv.Itoa(i+1), err, "server.max_channels.sessions is 10")
			}
			refused++
			continue
		}
		open = append(open, s)
	}
	if len(open) != 10 || refused != 490 {
		t.Errorf("of 500 session channels on one connection %d opened and %d were refused, want 10 and 490", len(open), refused)
	}
	open[0].Close()
	if !waitUntil(func() bool {
		s, err := c.NewSession()
		if err == nil {
			s.Close()
		}
		return err == nil
	}) {
		t.Error("no session opens after one of the 10 closed")
	}
}

// TestMaxChannelsForwards is item 4's direct-tcpip half (3000 -L channels
// gave the gateway 3019 fds): past max_channels.forwards they are refused,
// to a destination that holds every connection open.
func TestMaxChannelsForwards(t *testing.T) {
	port := strconv.Itoa(silentListener(t))
	h, signer := limitLab(t, func(c *config.Config, alice *config.User) {
		c.Server.MaxChannels = config.DefaultMaxChannels
		alice.Forwarding.Local = true
	})
	c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	var fcs []net.Conn
	for i := 0; i < 64; i++ {
		fc, err := c.Dial("tcp", "localhost:"+port)
		if err != nil {
			t.Fatalf("ssh -L channel %d of 64: %v", i+1, err)
		}
		fcs = append(fcs, fc)
	}
	_, err = c.Dial("tcp", "localhost:"+port)
	refusedShort(t, "ssh -L channel 65", err, "server.max_channels.forwards is 64")
	for _, fc := range fcs {
		fc.Close()
	}
}

// waitUntil polls cond until it holds or wait passes.
func waitUntil(cond func() bool) bool {
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// TestMaxTenantChannels: a tenant's channels across all her connections
// are capped too, so more connections do not buy more gateway memory.
func TestMaxTenantChannels(t *testing.T) {
	port := strconv.Itoa(silentListener(t))
	h, signer := limitLab(t, func(c *config.Config, alice *config.User) {
		c.Server.MaxChannels, c.Server.MaxTenantChannels = config.DefaultMaxChannels, 3
		alice.Forwarding.Local = true
	})
	var conns []*gossh.Client
	for i := 0; i < 2; i++ {
		c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i, c := range []*gossh.Client{conns[0], conns[0], conns[1]} {
		s, err := c.NewSession()
		if err != nil {
			t.Fatalf("session %d of 3: %v", i+1, err)
		}
		defer s.Close()
	}
	_, err := conns[1].NewSession()
	refusedShort(t, "a 4th session on her second connection", err, "server.max_tenant_channels is 3")
	_, err = conns[1].Dial("tcp", "localhost:"+port)
	refusedShort(t, "an ssh -L channel past her 3", err, "server.max_tenant_channels is 3")
	if !strings.Contains(h.Logs(), "channel refused") {
		t.Errorf("no channel refused line:\n%s", h.Logs())
	}
}
