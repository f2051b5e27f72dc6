package config

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStateDirHint: the state directory of a config that parses, and of
// one whose YAML is broken elsewhere, as `jailgate reload` needs it to
// reach the server; StateDirOf gives up on the broken one.
func TestStateDirHint(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
		ofFails, fails   bool
	}{
		{"valid", "state_dir: /srv/jg\nusers: {}\n", "/srv/jg", false, false},
		{"unset", "users: {}\n", DefaultStateDir, false, false},
		{"broken below", "state_dir: \"/srv/jg\" # here\nusers:\n  dave: [unclosed\n", "/srv/jg", true, false},
		{"broken, unset", "users:\n  dave: [unclosed\n", DefaultStateDir, true, false},
		{"relative", "state_dir: srv\n", "", true, true},
		{"broken, relative", "state_dir: srv\nusers: [\n", "", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "jailgate.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := StateDirOf(path); (err != nil) != tc.ofFails {
				t.Errorf("StateDirOf: %v, want failure %v", err, tc.ofFails)
			}
			got, err := StateDirHint(path)
			if (err != nil) != tc.fails || got != tc.want {
				t.Errorf("StateDirHint = %q, %v; want %q (failure %v)", got, err, tc.want, tc.fails)
			}
		})
	}
	if _, err := StateDirHint(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("StateDirHint of a missing file: no error")
	}
}
