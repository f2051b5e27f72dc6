package jail

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestV1StartJoinsNoGatewayThread: on cgroup v1 an environment's first
// process is started where the gateway is and then moved into her cgroup
// (Adopt); no gateway thread ever joins her cgroup, where her CPU quota
// could stall it while it holds the gateway's fork lock (issue 16, item 6).
func TestV1StartJoinsNoGatewayThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("test needs root: the jail package's tests run as root (make test-root)")
	}
	m, err := newCgroups("/sys/fs/cgroup", "jailgate-test-v1start-"+strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	v1, ok := m.(*cgroupV1)
	if !ok {
		t.Fatalf("this test is for cgroup v1 hosts (CI's is); got %T", m)
	}
	t.Cleanup(v1.Release)
	h, err := v1.Create("alice", "env", Limits{CPU: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Destroy() })
	vh := h.(*v1Handle)
	cmd := exec.Command("sleep", "30")
	if err := h.Start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	tasks := func() []string {
		var all []string
		for _, d := range vh.dirs {
			b, _ := os.ReadFile(filepath.Join(d, "tasks"))
			all = append(all, strings.Fields(string(b))...)
		}
		return all
	}
	if got := tasks(); len(got) != 0 {
		t.Fatalf("her cgroups hold %v before Adopt: Start moved something in (a gateway thread?)", got)
	}
	if err := h.Adopt(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	for _, d := range vh.dirs {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if strings.TrimSpace(string(b)) != pid {
			t.Errorf("%s/cgroup.procs = %q, want the started process %s alone", d, b, pid)
		}
	}
	self, _ := os.ReadDir("/proc/self/task")
	for _, tid := range tasks() {
		for _, e := range self {
			if e.Name() == tid {
				t.Errorf("gateway thread %s is in her cgroup", tid)
			}
		}
	}
}
