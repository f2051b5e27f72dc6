package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestE2EGatewayOOMScoreAdj is issue 16 item 8's gateway part: jailgate
// serve runs at oom_score_adj -1000, like sshd's listener, so the OOM
// killer takes a tenant's memory hog and never the gateway. A host that
// denies even root the lowering (no CAP_SYS_RESOURCE, as in some
// containers: a child shell is asked first) must get the warning that says
// so, and a gateway that runs anyway.
func TestE2EGatewayOOMScoreAdj(t *testing.T) {
	g := startServe(t)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", g.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSpace(string(b))
	if exec.Command("sh", "-c", "echo -1000 >/proc/self/oom_score_adj").Run() != nil {
		t.Logf("this host denies oom_score_adj -1000 to root; the gateway has %s", got)
		if !strings.Contains(g.log.String(), "oom_score_adj not set") {
			t.Errorf("the gateway could not set oom_score_adj and did not say so:\n%s", g.log.String())
		}
		return
	}
	if got != "-1000" {
		t.Errorf("the gateway's oom_score_adj is %s, want -1000", got)
	}
}
