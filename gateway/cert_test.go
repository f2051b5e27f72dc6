package gateway_test

import (
	"crypto/rand"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
)

// certFor signs a user certificate for key with ca, shaped by edit.
func certFor(t *testing.T, ca, key gossh.Signer, edit func(*gossh.Certificate)) gossh.Signer {
	t.Helper()
	c := &gossh.Certificate{
		Key: key.PublicKey(), CertType: gossh.UserCert, KeyId: "alice@ca", ValidPrincipals: []string{"alice"},
		ValidAfter: uint64(time.Now().Add(-time.Hour).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix()),
		Permissions: gossh.Permissions{CriticalOptions: map[string]string{}, Extensions: map[string]string{"permit-pty": ""}},
	}
	if edit != nil {
		edit(c)
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewCertSigner(c, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestUserCertificates(t *testing.T) {
	ca, _ := gatewaytest.NewKey(t)
	other, _ := gatewaytest.NewKey(t)
	revokedKey, _ := gatewaytest.NewKey(t)
	key, _ := gatewaytest.NewKey(t)
	h, _ := limitLab(t, func(c *config.Config, _ *config.User) {
		c.TrustedUserCAKeys = []gossh.PublicKey{ca.PublicKey()}
		c.RevokedKeys = []gossh.PublicKey{revokedKey.PublicKey()}
	})
	cases := []struct {
		name   string
		signer gossh.Signer
		ok     bool
	}{
		{"valid", certFor(t, ca, key, nil), true},
		{"expired", certFor(t, ca, key, func(c *gossh.Certificate) { c.ValidBefore = uint64(time.Now().Add(-time.Minute).Unix()) }), false},
		{"wrong principal", certFor(t, ca, key, func(c *gossh.Certificate) { c.ValidPrincipals = []string{"bob"} }), false},
		{"untrusted CA", certFor(t, other, key, nil), false},
		{"revoked key", certFor(t, ca, revokedKey, nil), false},
		{"source-address matches", certFor(t, ca, key, func(c *gossh.Certificate) { c.CriticalOptions["source-address"] = "127.0.0.0/8" }), true},
		{"source-address mismatch", certFor(t, ca, key, func(c *gossh.Certificate) { c.CriticalOptions["source-address"] = "10.0.0.0/8" }), false},
	}
	for _, tc := range cases {
		c, err := gatewaytest.Dial(t, h.Addr, "alice", tc.signer)
		if c != nil {
			c.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s: login err = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	// force-command binds the session like command= does.
	c, err := gatewaytest.Dial(t, h.Addr, "alice", certFor(t, ca, key, func(c *gossh.Certificate) {
		c.CriticalOptions["force-command"] = "echo forced"
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, _ := c.NewSession()
	defer s.Close()
	if out, err := s.Output("id"); err != nil || string(out) != "forced\n" {
		t.Errorf("force-command: %q, %v", out, err)
	}
}
