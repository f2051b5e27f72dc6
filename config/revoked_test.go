package config

import (
	"os"
	"path/filepath"
	"testing"
)

const aliceKey = `["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a"]`

// TestForwardingSwitches: local on, remote and agent off by default; the
// defaults section and the tenant set each.
func TestForwardingSwitches(t *testing.T) {
	r := fixture(t)
	c, err := Parse("fwd.yaml", []byte(r.Replace(`defaults:
  forwarding: { remote: true }
users:
  alice:
    keys: `+aliceKey+`
    rootfs: $ROOT/alice
  bob:
    keys: `+aliceKey+`
    rootfs: $ROOT/bob
    forwarding: { local: false, remote: false, agent: true }
`)))
	if err != nil {
		t.Fatal(err)
	}
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
