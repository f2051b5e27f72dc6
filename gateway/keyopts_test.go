package gateway_test

import (
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/keys"
)

// optLab starts a gateway whose tenant alice has one key with the given
// authorized_keys options.
func optLab(t *testing.T, opts ...string) (*gatewaytest.Harness, gossh.Signer) {
	t.Helper()
	return limitLab(t, func(_ *config.Config, u *config.User) {
		u.Keys[0].Options = opts
	})
}

func TestKeyOptionCommand(t *testing.T) {
	h, signer := optLab(t, `command="echo forced:$SSH_ORIGINAL_COMMAND"`)
	c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := c.NewSession()
	defer s.Close()
	out, err := s.Output("rm -rf /")
	if err != nil || string(out) != "forced:rm -rf /\n" {
		t.Errorf("command= ran %q (%v), want the forced command with SSH_ORIGINAL_COMMAND", out, err)
	}
}

func TestKeyOptionRestrict(t *testing.T) {
	h, signer := optLab(t, "restrict")
	c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := c.NewSession()
	defer s.Close()
	if err := s.RequestPty("xterm", 24, 80, nil); err == nil {
		t.Error("pty-req accepted for a restrict key")
	}
	if _, err := c.Dial("tcp", "127.0.0.1:22"); err == nil {
		t.Error("port forwarding accepted for a restrict key")
	}
	if !strings.Contains(h.Logs(), "no-port-forwarding") {
		t.Errorf("refusal not logged:\n%s", h.Logs())
	}
	// restrict,pty gives the terminal back.
	h2, signer2 := optLab(t, "restrict", "pty")
	c2, err := gatewaytest.Dial(t, h2.Addr, "alice", signer2)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := c2.NewSession()
	defer s2.Close()
	if err := s2.RequestPty("xterm", 24, 80, nil); err != nil {
		t.Errorf("restrict,pty: pty-req refused: %v", err)
	}
}

func TestKeyOptionFromAndExpiry(t *testing.T) {
	cases := []struct {
		name string
		opts []string
		ok   bool
	}{
		{"from matches", []string{`from="127.0.0.0/8"`}, true},
		{"from wildcard", []string{`from="127.0.0.*"`}, true},
		{"from other network", []string{`from="10.0.0.0/8"`}, false},
		{"from negated", []string{`from="!127.0.0.1,127.0.0.0/8"`}, false},
		{"expired", []string{`expiry-time="20200101"`}, false},
		{"not yet expired", []string{`expiry-time="` + time.Now().AddDate(1, 0, 0).Format("20060102") + `"`}, true},
	}
	for _, tc := range cases {
		h, signer := optLab(t, tc.opts...)
		c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
		if c != nil {
			c.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s: login err = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestParseOptionsRejectsUnknown(t *testing.T) {
	if _, err := keys.ParseOptions([]string{"no-pty", "frobnicate"}); err == nil {
		t.Error("unknown option accepted")
	}
}
