package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

const aliceKey = `["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a"]`

// parseTwo parses a configuration of alice and bob (each with aliceKey and
// a rootfs of their own) under the defaults given, with bob's own extra
// fields.
func parseTwo(t *testing.T, defaults, bob string) *Config {
	t.Helper()
	r := fixture(t)
	c, err := Parse("two.yaml", []byte(r.Replace("defaults:\n"+defaults+`users:
  alice:
    keys: `+aliceKey+`
    rootfs: $ROOT/alice
  bob:
    keys: `+aliceKey+`
    rootfs: $ROOT/bob
`+bob)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestForwardingSwitches: local on, remote and agent off by default; the
// defaults section and the tenant set each.
func TestForwardingSwitches(t *testing.T) {
	c := parseTwo(t, "  forwarding: { remote: true }\n", "    forwarding: { local: false, remote: false, agent: true }\n")
	if got, want := c.Users["alice"].Forwarding, (Forwarding{Local: true, Remote: true}); got != want {
		t.Errorf("alice: %+v, want %+v", got, want)
	}
	if got, want := c.Users["bob"].Forwarding, (Forwarding{Agent: true}); got != want {
		t.Errorf("bob: %+v, want %+v", got, want)
	}
	if got, want := defaultUser().Forwarding, (Forwarding{Local: true}); got != want {
		t.Errorf("built-in default %+v, want %+v", got, want)
	}
}

// TestRevokedKeysKRL: revoked_keys takes a binary KRL beside key lines,
// and each Parse (a reload) reads the file again.
func TestRevokedKeysKRL(t *testing.T) {
	r := fixture(t)
	dir := t.TempDir()
	krl := filepath.Join(dir, "revoked.krl")
	data, err := os.ReadFile(filepath.Join("testdata", "alice.krl"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(krl, data, 0o600); err != nil {
		t.Fatal(err)
	}
	text := []byte(r.Replace(`revoked_keys:
  - revoked.krl
  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJkrVFm5fhL54JuuA8KY7VuWhGSbIMulI1h3awFeREgw mallory
users:
  alice:
    keys: ` + aliceKey + `
    rootfs: $ROOT/alice
`))
	name := filepath.Join(dir, "jailgate.yaml")
	c, err := Parse(name, text)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.RevokedKRLs) != 1 || len(c.RevokedKeys) != 1 || c.RevokedKRLs[0].Version != 3 {
		t.Fatalf("%d KRLs, %d keys; want 1 (version 3) and 1", len(c.RevokedKRLs), len(c.RevokedKeys))
	}
	if err := os.WriteFile(krl, data[:40], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(name, text); err == nil {
		t.Error("a reload after the KRL was truncated parsed without error")
	}
}

// TestRevokedKeysPlainFile: a revoked_keys file that is not a KRL is a
// plain key list (sshd RevokedKeys), comments and blank lines allowed;
// a bad line in it is reported at its own line.
func TestRevokedKeysPlainFile(t *testing.T) {
	r := fixture(t)
	dir := t.TempDir()
	list := filepath.Join(dir, "revoked.pub")
	os.WriteFile(list, []byte("# left the company\n"+
		"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJkrVFm5fhL54JuuA8KY7VuWhGSbIMulI1h3awFeREgw mallory\n\n"+
		"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a\n"), 0o600)
	text := []byte(r.Replace("revoked_keys: revoked.pub\nusers:\n  alice:\n    keys: " + aliceKey + "\n    rootfs: $ROOT/alice\n"))
	name := filepath.Join(dir, "jailgate.yaml")
	c, err := Parse(name, text)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.RevokedKeys) != 2 || len(c.RevokedKRLs) != 0 {
		t.Fatalf("%d revoked keys and %d KRLs, want 2 and 0", len(c.RevokedKeys), len(c.RevokedKRLs))
	}
	// The parsed set answers as the list does (mallory's key and alice's
	// own are in it); another key is not.
	for _, k := range c.RevokedKeys {
		if !c.KeyListedRevoked(k) {
			t.Errorf("%s is listed but not reported revoked", gossh.FingerprintSHA256(k))
		}
	}
	other, _, _, _, err := gossh.ParseAuthorizedKey([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIdCvJXXz2YJm5e7J2o5dCRwm0JzKcJyFHRwqj2ut3Pi other"))
	if err != nil {
		t.Fatal(err)
	}
	if c.KeyListedRevoked(other) {
		t.Error("a key not in the list is reported revoked")
	}
	os.WriteFile(list, []byte("# ok\nssh-ed25519 AAAAC3Nza truncated\n"), 0o600)
	_, err = Parse(name, text)
	if want := list + ":2: revoked_keys:"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a bad line: %v, want it at %s", err, want)
	}
}
