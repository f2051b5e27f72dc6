//go:build linux

package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// TestOversizedRequest: a session whose command and environment together
// are larger than one control message (64 KiB; here 64 variables of 4 KB,
// as many as the gateway accepts) used to end her whole shared environment
// (issue 16, item 6). Now only that session fails, with a line on its
// stderr that says why, while her other session and its environment live on.
func TestOversizedRequest(t *testing.T) {
	l := startLab(t, "")
	c := l.client(t, "alice")
	hold(t, c)
	must(t, c, "echo marker > /tmp/marker")
	// 20 variables (80 KB) fit the socket's buffer but not the init's
	// message, which it read truncated and ended on; 64 (256 KB) do not fit
	// the buffer (EMSGSIZE).
	for _, n := range []int{20, 64} {
		if stderr, err := bigEnvSession(t, c, n); err == nil ||
			!strings.Contains(stderr, "jailgate: this session's command and environment are too large") {
			t.Errorf("the session with %d variables of 4 KB: err %v, stderr %q; want it refused with a line that says why", n, err, stderr)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if got := must(t, c, "cat /tmp/marker; grep -qx sleep /proc/[0-9]*/comm && echo sleeping"); got != "marker\nsleeping\n" {
		t.Errorf("after the oversized session: %q, want her environment and her held session intact", got)
	}
}

// bigEnvSession runs echo in a session with n variables of 4 KB and
// returns its stderr and error.
func bigEnvSession(t *testing.T, c *gossh.Client, n int) (string, error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < n; i++ {
		if err := s.Setenv(fmt.Sprintf("LC_BIG%02d", i), strings.Repeat("x", 4000)); err != nil {
			t.Fatalf("env %d: %v", i, err)
		}
	}
	var stderr syncBuffer
	s.Stderr = &stderr
	err = s.Run("echo ran")
	return stderr.String(), err
}
