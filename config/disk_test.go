package config

import "testing"

// TestDiskLimits: limits.disk and limits.inodes come from the defaults or
// the tenant, have no safe default (absent: unlimited, said so), are reset
// by `limits: unlimited`, and show in the summary; disk_quota defaults to
// auto.
func TestDiskLimits(t *testing.T) {
	const key = "    keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a\"]\n"
	r := fixture(t)
	yaml := "defaults:\n  limits: { disk: 1GiB }\nusers:\n" +
		"  alice:\n" + key + "    rootfs: $ROOT/alice\n    limits: { inodes: 3000 }\n" +
		"  bob:\n" + key + "    rootfs: $ROOT/bob\n    limits: unlimited\n"
	c, err := Parse("d.yaml", []byte(r.Replace(yaml)))
	if err != nil {
		t.Fatal(err)
	}
	if c.DiskQuota != DiskQuotaAuto {
		t.Errorf("disk_quota %q, want auto", c.DiskQuota)
	}
	a, b := c.Users["alice"], c.Users["bob"]
	if a.Disk != (Disk{Bytes: 1 << 30, Inodes: 3000}) || a.LimitsFrom["disk"] != "defaults:" || a.LimitsFrom["inodes"] != "users.alice" {
		t.Errorf("alice: %+v from %q/%q", a.Disk, a.LimitsFrom["disk"], a.LimitsFrom["inodes"])
	}
	if got := DiskText(a.Disk); got != "disk=1GiB inodes=3000" {
		t.Errorf("DiskText = %q", got)
	}
	if b.Disk.Set() {
		t.Errorf("bob (limits: unlimited) has disk limits %+v", b.Disk)
	}
	c, err = Parse("d.yaml", []byte(r.Replace("users:\n  alice:\n"+key+"    rootfs: $ROOT/alice\n")))
	if err != nil {
		t.Fatal(err)
	}
	if u := c.Users["alice"]; u.Disk.Set() || u.LimitsFrom["disk"] != "default: unlimited" {
		t.Errorf("nothing said: %+v from %q, want unlimited", u.Disk, u.LimitsFrom["disk"])
	}
}
