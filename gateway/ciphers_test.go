package gateway_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// dialCiphers logs in as user offering only ciphers and runs `echo ok`.
func dialCiphers(t *testing.T, addr, user string, signer gossh.Signer, ciphers ...string) error {
	t.Helper()
	c, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
		Config:          gossh.Config{Ciphers: ciphers},
		User:            user,
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), //nolint:gosec // G106: a test server with a throwaway host key
		Timeout:         10 * time.Second,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	out, err := s.Output("echo ok")
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("echo ok printed %q", out)
	}
	return nil
}

// The default server.ciphers offer AES-GCM only, so that an OpenSSH client
// (chacha20-poly1305 first) negotiates AES-GCM; an operator who lists
// chacha20-poly1305 gets it, and a reload changes what new connections
// are offered.
func TestCiphers(t *testing.T) {
	signer, pub := gatewaytest.NewKey(t)
	cfg := gatewaytest.Config(gatewaytest.User("alice", pub))
	cfg.Server.Ciphers = slices.Clone(config.DefaultCiphers)
	h := gatewaytest.Start(t, cfg, &jailtest.HostManager{})

	if err := dialCiphers(t, h.Addr, "alice", signer, "chacha20-poly1305@openssh.com"); err == nil {
		t.Error("a chacha20-only client logged in, but the defaults do not offer it")
	} else if !strings.Contains(err.Error(), "no common algorithm") {
		t.Errorf("chacha20-only client: %v, want a failed cipher negotiation", err)
	}
	for _, c := range config.DefaultCiphers {
		if err := dialCiphers(t, h.Addr, "alice", signer, c); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
	// What OpenSSH's client offers by default, in its order.
	openssh := []string{"chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr",
		"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
	if err := dialCiphers(t, h.Addr, "alice", signer, openssh...); err != nil {
		t.Errorf("OpenSSH's default cipher list: %v", err)
	}

	next := gatewaytest.Config(gatewaytest.User("alice", pub))
	next.Server.Ciphers = append(slices.Clone(config.DefaultCiphers), "chacha20-poly1305@openssh.com")
	h.Server.SetConfig(next)
	if err := dialCiphers(t, h.Addr, "alice", signer, "chacha20-poly1305@openssh.com"); err != nil {
		t.Errorf("chacha20 listed in server.ciphers: %v", err)
	}
}
