package config

import (
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
