package config

import (
	"slices"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// The defaults are the hardened offer: every name is one the SSH library
// implements and none is weak, so a default configuration has no warning.
func TestDefaultOfferHardened(t *testing.T) {
	c, err := Parse("min.yaml", []byte("users: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("default configuration warned: %q", c.Warnings)
	}
	for key, got := range map[string][]string{"kex": c.Server.Kex, "ciphers": c.Server.Ciphers, "macs": c.Server.MACs} {
		l := algorithmLists[key]
		if !slices.Equal(got, l.defaults) {
			t.Errorf("server.%s = %v, want the defaults %v", key, got, l.defaults)
		}
		for _, name := range l.defaults {
			if !slices.Contains(l.supported, name) {
				t.Errorf("default server.%s %s is not supported by the SSH library", key, name)
			}
			if _, weak := weakAlgorithms[name]; weak {
				t.Errorf("default server.%s %s is weak", key, name)
			}
		}
	}
	// Post-quantum first; never a NIST curve, SHA-1 or encrypt-and-MAC.
	if c.Server.Kex[0] != gossh.KeyExchangeMLKEM768X25519 {
		t.Errorf("server.kex starts with %s, want mlkem768x25519-sha256", c.Server.Kex[0])
	}
	for _, name := range slices.Concat(c.Server.Kex, c.Server.MACs) {
		if strings.Contains(name, "nistp") || strings.Contains(name, "sha1") ||
			(strings.HasPrefix(name, "hmac-") && !strings.HasSuffix(name, "-etm@openssh.com")) {
			t.Errorf("default offer has %s", name)
		}
	}
}

// A site may widen the offer with a weak but supported algorithm: the
// configuration stays valid and carries one warning per weak name, at its
// line, naming ssh-audit's verdict and the default offer.
func TestWeakOfferWarns(t *testing.T) {
	c, err := Parse("w.yaml", []byte(`server:
  kex: [curve25519-sha256, ecdh-sha2-nistp256]
  ciphers: [aes128-gcm@openssh.com, chacha20-poly1305@openssh.com, aes192-ctr]
  macs:
    - hmac-sha2-256-etm@openssh.com
    - hmac-sha1
users: {}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"w.yaml:2: server.kex[1]: ecdh-sha2-nistp256 is weak (ssh-audit: fail, NIST P-curve); the default offer is " +
			"mlkem768x25519-sha256, curve25519-sha256, curve25519-sha256@libssh.org",
		"w.yaml:6: server.macs[1]: hmac-sha1 is weak (ssh-audit: warn, encrypt-and-MAC with SHA-1); the default offer is " +
			"hmac-sha2-256-etm@openssh.com, hmac-sha2-512-etm@openssh.com",
	}
	if !slices.Equal(c.Warnings, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(c.Warnings, "\n"), strings.Join(want, "\n"))
	}
	if !slices.Equal(c.Server.Kex, []string{"curve25519-sha256", "ecdh-sha2-nistp256"}) ||
		!slices.Equal(c.Server.MACs, []string{"hmac-sha2-256-etm@openssh.com", "hmac-sha1"}) ||
		!slices.Equal(c.Server.Ciphers, []string{"aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes192-ctr"}) {
		t.Errorf("offer = %v / %v / %v, want the lists as written", c.Server.Kex, c.Server.Ciphers, c.Server.MACs)
	}
}
