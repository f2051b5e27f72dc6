package gateway_test

import (
	"slices"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// dialCiphers logs in as alice offering only ciphers and runs `echo ok`.
func dialCiphers(t *testing.T, addr string, signer gossh.Signer, ciphers ...string) error {
	t.Helper()
	_, err := dialOffer(t, addr, signer, clientOffer{name: "ciphers " + strings.Join(ciphers, ","), ciphers: ciphers})
	return err
}

// The default server.ciphers leave chacha20-poly1305 out, so that an
// OpenSSH client (chacha20-poly1305 first) negotiates AES; an operator who
// lists chacha20-poly1305 gets it, and a reload changes what new
// connections are offered.
func TestCiphers(t *testing.T) {
	signer, pub := gatewaytest.NewKey(t)
	cfg := gatewaytest.Config(gatewaytest.User("alice", pub))
	cfg.Server.Ciphers = slices.Clone(config.DefaultCiphers)
	h := gatewaytest.Start(t, cfg, &jailtest.HostManager{})

	if err := dialCiphers(t, h.Addr, signer, "chacha20-poly1305@openssh.com"); err == nil {
		t.Error("a chacha20-only client logged in, but the defaults do not offer it")
	} else if !strings.Contains(err.Error(), "no common algorithm") {
		t.Errorf("chacha20-only client: %v, want a failed cipher negotiation", err)
	}
	for _, c := range config.DefaultCiphers {
		if err := dialCiphers(t, h.Addr, signer, c); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
	// What OpenSSH's client offers by default, in its order.
	openssh := []string{"chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr",
		"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
	if err := dialCiphers(t, h.Addr, signer, openssh...); err != nil {
		t.Errorf("OpenSSH's default cipher list: %v", err)
	}

	next := gatewaytest.Config(gatewaytest.User("alice", pub))
	next.Server.Ciphers = append(slices.Clone(config.DefaultCiphers), "chacha20-poly1305@openssh.com")
	h.Server.SetConfig(next)
	if err := dialCiphers(t, h.Addr, signer, "chacha20-poly1305@openssh.com"); err != nil {
		t.Errorf("chacha20 listed in server.ciphers: %v", err)
	}
}
