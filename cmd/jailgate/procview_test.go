//go:build linux

package main

import (
	"strings"
	"testing"
)

// TestInitThreadFds: the init's threads are /proc entries too: /proc/<tid>
// is reachable by its number though /proc does not list it, and its fd
// table is the init's. /proc/1/fd and /proc/1/task/*/fd were masked, but
// `ls /proc/<tid>/fd` listed the init's fd numbers (issue 16, item 6).
func TestInitThreadFds(t *testing.T) {
	l := startLab(t, "")
	c := l.client(t, "alice")
	out := must(t, c, `for t in $(ls /proc/1/task); do for s in fd fdinfo map_files; do ls /proc/$t/$s /proc/1/task/$t/$s 2>/dev/null; done; done | grep -v ':$' | grep -v '^$'; echo end`)
	if out != "end\n" {
		t.Errorf("the init's threads list fds:\n%s", out)
	}
	if n := must(t, c, "ls /proc/1/task | wc -l"); strings.TrimSpace(n) == "1" {
		t.Errorf("control: the init has %s thread; the test needs its other threads", n)
	}
}
