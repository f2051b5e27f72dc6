//go:build linux

package main

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
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
	hold(t, c)
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

// TestPTYPool: Eve holds terminals until her pool is empty. Her devpts
// was mounted without max=, so every environment drew from the kernel's
// one pool and Eve's loop (3071 ptys) left every other tenant's ssh -t
// failing (issue 16, item 1). Now her pool is limits.ptys (default 64):
// her loop stops there, Alice still gets a terminal, and Eve's own next
// terminal session reads a line that names the limit. The loop is capped
// at 200 so that, were the pool unbounded, the test would fail without
// draining the host's terminals.
func TestPTYPool(t *testing.T) {
	l := armed(t, "")
	eve := l.client(t, "bob")
	line := holdLine(t, eve, "attack ptys 200")
	if want := fmt.Sprintf("OPENED %d no space left on device", config.DefaultPTYs); line != want {
		t.Fatalf("Eve's terminal loop: %q, want %q", line, want)
	}
	if got := ptyShell(t, l.client(t, "alice"), "tty\n"); !strings.Contains(got, "/dev/pts/0") {
		t.Errorf("Alice's ssh -t while Eve holds her pool: %q", got)
	}
	got := ptyShell(t, eve, "")
	if want := fmt.Sprintf("jailgate: all %d terminals of your environment are in use (limits.ptys)", config.DefaultPTYs); !strings.Contains(got, want) {
		t.Errorf("Eve's next terminal session: %q, want the line %q", got, want)
	}
}

// ptyShell opens a terminal session with a shell, types input and exit,
// and returns everything it printed.
func ptyShell(t *testing.T, c *gossh.Client, input string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm", 24, 80, nil); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	s.Stdout = &out
	in, _ := s.StdinPipe()
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, input+"exit\n")
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Errorf("terminal session did not end; output %q", out.String())
	}
	return out.String()
}

// holdLine starts cmd in a session that stays open until the test ends,
// with its stdin open too (image_test.go's hold gives it none), and
// returns the first line it printed.
func holdLine(t *testing.T, c *gossh.Client, cmd string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	out, _ := s.StdoutPipe()
	if _, err := s.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(cmd); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(gatewaytest.Expect(t, out, "\n", 10*time.Second))
}
