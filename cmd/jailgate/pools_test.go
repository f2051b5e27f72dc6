//go:build linux

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
)

// TestInitFatalSignals: a tenant's kill -SEGV 1 (and the other signals the
// Go runtime treats as a crash) used to end her environment with a
// goroutine dump of ~200 log lines (issue 16, item 6). PID 1 now drops
// them, like any signal it has no handler for: her environment, a second
// session in it, and the log stay as they were.
func TestInitFatalSignals(t *testing.T) {
	l := startLab(t, "")
	c := l.client(t, "alice")
	held, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	out, _ := held.StdoutPipe()
	if err := held.Start("echo held; sleep 60"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "held", 10*time.Second)
	must(t, c, "echo marker > /tmp/marker")
	for _, sig := range []string{"SEGV", "BUS", "FPE", "ILL", "ABRT", "TRAP", "SYS"} {
		must(t, c, "kill -"+sig+" 1")
	}
	time.Sleep(300 * time.Millisecond)
	if got := must(t, c, "cat /tmp/marker; tr '\\0' ' ' </proc/1/cmdline; grep -qx sleep /proc/[0-9]*/comm && echo sleeping"); got != "marker\njailgate init sleeping\n" {
		t.Errorf("after the signals: %q, want her environment (marker, init, the held session) intact", got)
	}
	if log := l.log.String(); strings.Contains(log, "goroutine ") || strings.Contains(log, "SIGSEGV") {
		t.Errorf("the init crashed: the log has a dump:\n%s", log)
	}
}
