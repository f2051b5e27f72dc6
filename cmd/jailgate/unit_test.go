//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
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
