//go:build linux

package jail

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeV2 lays out the files a cgroup2 mount would create for the root,
// the jailgate parent and tenant alice (a plain directory cannot create
// them on mkdir as cgroupfs does).
func fakeV2(t *testing.T, controllers string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"cgroup.controllers":                controllers,
		"cgroup.subtree_control":            "",
		"jailgate/cgroup.controllers":       controllers,
		"jailgate/cgroup.subtree_control":   "",
		"jailgate/alice/memory.max":         "max",
		"jailgate/alice/memory.swap.max":    "max",
		"jailgate/alice/pids.max":           "max",
		"jailgate/alice/cpu.max":            "max 100000",
		"jailgate/alice/io.weight":          "default 100",
		"jailgate/alice/cgroup.controllers": controllers,
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestCgroupV2Fake drives the v2 back end, which this project's CI host
// (v1 + an empty unified mount) cannot run for real, against a fake
// cgroupfs: the limits land in the right files with the right syntax.
func TestCgroupV2Fake(t *testing.T) {
	root := fakeV2(t, "cpuset cpu io memory pids")
	m := &cgroupV2{root: root, prefix: "jailgate"}
	l := Limits{Memory: 64 << 20, MemorySwap: 16 << 20, Pids: 64, CPU: 0.5, IOWeight: 300}
	h, err := m.Create("alice", "1-2-env", l)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"memory.max": "67108864", "memory.swap.max": "16777216", "pids.max": "64",
		"cpu.max": "50000 100000", "io.weight": "default 300",
	}
	for file, v := range want {
		b, err := os.ReadFile(filepath.Join(root, "jailgate/alice", file))
		if err != nil || string(b) != v {
			t.Errorf("%s = %q (%v), want %q", file, b, err, v)
		}
	}
	sub, _ := os.ReadFile(filepath.Join(root, "jailgate/cgroup.subtree_control"))
	if !strings.HasPrefix(string(sub), "+") {
		t.Errorf("controllers not enabled for the tenants' subtree: subtree_control = %q", sub)
	}
	env := filepath.Join(root, "jailgate/alice/1-2-env")
	if fi, err := os.Stat(env); err != nil || !fi.IsDir() {
		t.Fatalf("environment cgroup not created: %v", err)
	}
	os.WriteFile(filepath.Join(env, "memory.events"), []byte("low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n"), 0o644)
	if n := h.OOMKills(); n != 2 {
		t.Errorf("OOMKills = %d, want 2 (from memory.events)", n)
	}
	os.Remove(filepath.Join(env, "memory.events"))
	if err := h.Destroy(); err != nil {
		t.Errorf("destroy: %v", err)
	}
	if _, err := os.Stat(env); err == nil {
		t.Error("environment cgroup still there after Destroy")
	}
}

// TestCgroupV2MissingController: a limit needing a controller the
// hierarchy lacks is refused with the controller's name and the fix.
func TestCgroupV2MissingController(t *testing.T) {
	m := &cgroupV2{root: fakeV2(t, "cpu memory"), prefix: "jailgate"}
	err := m.Check(Limits{Pids: 10})
	if err == nil || !strings.Contains(err.Error(), `"pids"`) || !strings.Contains(err.Error(), "subtree_control") {
		t.Errorf("Check with pids missing: %v", err)
	}
	if err := m.Check(Limits{Memory: 1 << 20, CPU: 1}); err != nil {
		t.Errorf("Check with available controllers: %v", err)
	}
}

// TestBestEffortDropsWhatCannotBeEnforced: with limits_enforcement:
// best-effort, a limit whose controller is missing is dropped (and logged)
// and the others stay.
func TestBestEffortDropsWhatCannotBeEnforced(t *testing.T) {
	var logs strings.Builder
	s := &Supervisor{cg: &cgroupV2{root: fakeV2(t, "cpu memory"), prefix: "jailgate"},
		log: slog.New(slog.NewTextHandler(&logs, nil))}
	got := s.enforceable("alice", Limits{Memory: 1 << 20, Pids: 10, CPU: 1})
	if want := (Limits{Memory: 1 << 20, CPU: 1}); got != want {
		t.Errorf("enforceable = %+v, want %+v", got, want)
	}
	if !strings.Contains(logs.String(), "limit=pids") {
		t.Errorf("the dropped limit was not logged: %s", logs.String())
	}
}
