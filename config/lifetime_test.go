package config

import (
	"strings"
	"testing"
	"time"
)

// TestOrphanGraceAndUpgradeDrain: the defaults (10m, none), an explicit 0
// kept as 0 (no orphan grace, not the default), and values as written. The
// bad values are in testdata/bad/upgrade.yaml.
func TestOrphanGraceAndUpgradeDrain(t *testing.T) {
	for _, tc := range []struct {
		yaml         string
		grace, drain time.Duration
	}{
		{"users: {}\n", DefaultOrphanGrace, 0},
		{"orphan_grace: 0\nupgrade_drain: 0\nusers: {}\n", 0, 0},
		{"orphan_grace: 90s\nupgrade_drain: 2h\nusers: {}\n", 90 * time.Second, 2 * time.Hour},
	} {
		c, err := Parse("c.yaml", []byte(tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if c.OrphanGrace != tc.grace || c.UpgradeDrain != tc.drain {
			t.Errorf("%q: orphan_grace %v, upgrade_drain %v; want %v, %v", tc.yaml, c.OrphanGrace, c.UpgradeDrain, tc.grace, tc.drain)
		}
	}
}

// TestPrestart: prestart defaults to DefaultPrestart, 0 turns the pool off,
// and a value past MaxPrestart is a FILE:LINE error.
func TestPrestart(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want int
	}{{"users: {}\n", DefaultPrestart}, {"prestart: 0\nusers: {}\n", 0}, {"prestart: 12\nusers: {}\n", 12}} {
		c, err := Parse("jailgate.yaml", []byte(tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if c.Prestart != tc.want {
			t.Errorf("%q: prestart %d, want %d", tc.yaml, c.Prestart, tc.want)
		}
	}
	_, err := Parse("jailgate.yaml", []byte("users: {}\nprestart: 1000\n"))
	if err == nil || !strings.Contains(err.Error(), "jailgate.yaml:2") || !strings.Contains(err.Error(), "prestart") {
		t.Errorf("prestart: 1000: %v; want a jailgate.yaml:2 error naming prestart", err)
	}
}
