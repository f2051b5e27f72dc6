//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSystemdUnit pins what makes contrib/jailgate.service keep tenants'
// work across stop, restart and upgrade (README "Restarts and upgrades"):
// KillMode=process (control-group or mixed kill every environment's init
// under cgroup v1), PIDFile= naming the file serve --pid-file writes, so
// that MAINPID follows an upgrade, and ExecReload a SIGHUP. Where
// systemd-analyze is installed, the unit must also verify with no warning.
func TestSystemdUnit(t *testing.T) {
	unit := string(readFile(t, filepath.Join("..", "..", "contrib", "jailgate.service")))
	keys := map[string]string{}
	for _, line := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	if keys["KillMode"] != "process" {
		t.Errorf("KillMode=%s, want process: the default and mixed kill environments under cgroup v1", keys["KillMode"])
	}
	if pid := keys["PIDFile"]; pid == "" || !strings.Contains(keys["ExecStart"], "serve ") || !strings.Contains(keys["ExecStart"], "--pid-file "+pid) {
		t.Errorf("PIDFile=%s, ExecStart=%s: serve must write the file PIDFile= names", pid, keys["ExecStart"])
	}
	if !strings.Contains(keys["ExecReload"], "-HUP $MAINPID") {
		t.Errorf("ExecReload=%s, want a SIGHUP to $MAINPID (a config reload)", keys["ExecReload"])
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		return // the static checks above are what a host without systemd can check
	}
	// verify checks that ExecStart's binary exists: point it at the build.
	path := filepath.Join(t.TempDir(), "jailgate.service")
	os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/jailgate", binary(t))), 0o644)
	if out, err := exec.Command(analyze, "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestLifetimeSettingsDiff: orphan_grace and upgrade_drain are among the
// server-wide settings a reload's changes and `check --diff` show, with
// when a change applies.
func TestLifetimeSettingsDiff(t *testing.T) {
	old := parseConfig(t, "users: {}\n")
	cur := parseConfig(t, "orphan_grace: 1h\nupgrade_drain: 30m\nusers: {}\n")
	want := []string{
		"~ orphan_grace: 10m0s -> 1h0m0s (applies at the next start or upgrade: serve hands it to the jail once)",
		"~ upgrade_drain: none -> 30m0s (applies at the next upgrade)",
	}
	if got := diffConfigs(old, cur); !slices.Equal(got, want) {
		t.Errorf("diffConfigs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
