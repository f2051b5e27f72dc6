//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
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

// TestLimitDefaultsInCgroup: with no limits: in the config, a tenant had
// no pids, memory or swap bound, and one fork bomb could take the host's
// pid space (issue 16, item 8). Now the documented defaults land in her
// cgroup files (pids 1024, memory half of RAM, swap as much again, /tmp
// as much as memory), and a fork bomb ends at her bound while Bob's login
// works.
func TestLimitDefaultsInCgroup(t *testing.T) {
	limNoSessionCgroups(t)
	l := startLab(t, "")
	a := l.client(t, "alice")
	hold(t, a)
	want := l.srv.Config().Users["alice"].Limits
	if want.Pids != config.DefaultPids || want.Memory <= 0 || !want.SwapAsMemory || want.MemorySwap != 0 || want.Tmp != want.Memory {
		t.Fatalf("alice's limits with none configured: %+v", want)
	}
	const cg = "/sys/fs/cgroup"
	if got := readInt(t, cg+"/pids/"+l.cgroup+"/alice/pids.max"); got != config.DefaultPids {
		t.Errorf("pids.max = %d, want %d", got, config.DefaultPids)
	}
	page := int64(os.Getpagesize())
	mem := int64(readInt(t, cg+"/memory/"+l.cgroup+"/alice/memory.limit_in_bytes"))
	if mem > want.Memory || mem < want.Memory-page {
		t.Errorf("memory.limit_in_bytes = %d, want %d", mem, want.Memory)
	}
	if _, err := os.Stat(cg + "/memory/" + l.cgroup + "/alice/memory.memsw.limit_in_bytes"); err == nil {
		sw := int64(readInt(t, cg+"/memory/"+l.cgroup+"/alice/memory.memsw.limit_in_bytes"))
		if sw > 2*want.Memory || sw < 2*want.Memory-page {
			t.Errorf("memory.memsw.limit_in_bytes = %d, want memory + swap = %d", sw, 2*want.Memory)
		}
	} else {
		t.Logf("no swap accounting on this host (memory.memsw.*): swap default not checked")
	}
	mounts := must(t, a, "grep -E ' /(tmp|dev/shm) ' /proc/mounts")
	tmpK := (want.Tmp + page - 1) / page * page / 1024 // tmpfs rounds up to whole pages
	if n := strings.Count(mounts, fmt.Sprintf("size=%dk", tmpK)); n != 2 {
		t.Errorf("/tmp and /dev/shm: %q, want both size=%dk", mounts, tmpK)
	}
	// A bounded fork loop past the default bound.
	runSSH(t, a, `exec sh -c 'i=0; while [ $i -lt 1100 ]; do sleep 1000 </dev/null >/dev/null 2>&1 & i=$((i+1)); done'`)
	if cur := readInt(t, cg+"/pids/"+l.cgroup+"/alice/pids.current"); cur > config.DefaultPids || cur < config.DefaultPids/2 {
		t.Errorf("pids.current = %d after the fork loop, want the default bound (%d) reached but not passed", cur, config.DefaultPids)
	}
	if out := must(t, l.client(t, "bob"), "echo bob-ok"); out != "bob-ok\n" {
		t.Errorf("bob's session during alice's fork bomb: %q", out)
	}
}

// TestExplainLimitsFrom: explain says where each limit came from: the
// built-in default, the defaults: section, or the tenant's own entry.
func TestExplainLimitsFrom(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(dir+"/alice", 0o755)
	path := dir + "/c.yaml"
	os.WriteFile(path, []byte("state_dir: "+dir+"/state\ndefaults:\n  limits: { memory: 2GiB }\nusers:\n  alice:\n"+
		"    keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a\"]\n"+
		"    rootfs: "+dir+"/alice\n    limits: { pids: 50 }\n"), 0o600)
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(explainLines(c.Users["alice"]), "\n")
	for _, want := range []string{"memory=2GiB memory_swap=as-memory pids=50 ptys=64 tmp=2GiB",
		"memory (defaults:)", "pids (users.alice)", "ptys (default)", "memory_swap (default: as much as memory)"} {
		if !strings.Contains(text, want) {
			t.Errorf("explain lacks %q:\n%s", want, text)
		}
	}
}
