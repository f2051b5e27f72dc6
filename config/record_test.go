package config

import "testing"

// TestRecordMaxBytes: record_max_bytes defaults to 100MiB, takes a size
// per tenant or in defaults, 0 turns the cap off, and a non-size is a
// config error naming the field.
func TestRecordMaxBytes(t *testing.T) {
	r := fixture(t)
	const key = `["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a"]`
	c, err := Parse("rec.yaml", []byte(r.Replace("defaults:\n  record_max_bytes: 1MiB\nusers:\n"+
		"  alice:\n    keys: "+key+"\n    rootfs: $ROOT/alice\n"+
		"  bob:\n    keys: "+key+"\n    rootfs: $ROOT/bob\n    record_max_bytes: 0\n")))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Users["alice"].RecordMaxBytes; got != 1<<20 {
		t.Errorf("alice's record_max_bytes from defaults: %d, want %d", got, 1<<20)
	}
	if got := c.Users["bob"].RecordMaxBytes; got != 0 {
		t.Errorf("bob's record_max_bytes: 0: %d, want 0 (no cap)", got)
	}
	if got := defaultUser().RecordMaxBytes; got != 100<<20 {
		t.Errorf("default record_max_bytes %d, want 100MiB", got)
	}
	_, err = Parse("bad.yaml", []byte(r.Replace("users:\n  alice:\n    keys: "+key+"\n    rootfs: $ROOT/alice\n    record_max_bytes: lots\n")))
	if want := `bad.yaml:5: users.alice.record_max_bytes: "lots" is not a size (use e.g. 100MiB; 0: no cap)`; err == nil || err.Error() != want {
		t.Errorf("a bad record_max_bytes: %v, want %s", err, want)
	}
}
