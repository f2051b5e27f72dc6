//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/jail/jailtest"
)

// upgradable is `jailgate serve` run from a copy of the built binary that
// the test replaces, as an operator installs a new one, with its log in a
// file: the new process inherits the old one's stderr, and a pipe would
// hold cmd.Wait until both had exited.
type upgradable struct {
	*e2eGateway
	config, pidFile, logFile string
	oldPID                   int
	oldExited                chan struct{}
}

// startUpgradable starts serve from a copy of the built binary, with extra
// top-level YAML in alice's and bob's config. The test's end stops the
// old process and whichever one the pid file names.
func startUpgradable(t *testing.T, extra string) *upgradable {
	t.Helper()
	bin := filepath.Join(jailtest.SearchableTempDir(t), "jailgate")
	g, path := newE2EGateway(t, bin, extra, "")
	return runUpgradable(t, g, path)
}

// runUpgradable starts g's serve on the config at path from a copy of the
// built binary at g.bin.
func runUpgradable(t *testing.T, g *e2eGateway, path string) *upgradable {
	t.Helper()
	bin := g.bin
	installBinary(t, bin, readFile(t, binary(t)))
	u := &upgradable{e2eGateway: g, config: path, pidFile: filepath.Join(g.dir, "serve.pid"),
		logFile: filepath.Join(g.dir, "serve.log"), oldExited: make(chan struct{})}
	f, err := os.OpenFile(u.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", path, "--pid-file", u.pidFile)
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	u.oldPID = cmd.Process.Pid
	go func() { cmd.Wait(); close(u.oldExited) }()
	t.Cleanup(func() { u.stop(t) })
	g.waitListening(t)
	return u
}

// stop ends every serve process of the test (SIGTERM twice: the second
// ends the drain at once) and what they left in the cgroup prefix.
func (u *upgradable) stop(t *testing.T) {
	pids := []int{u.oldPID}
	if p := u.servingPID(t); p != u.oldPID && p > 0 {
		pids = append(pids, p)
	}
	for _, p := range pids {
		unix.Kill(p, unix.SIGTERM)
		unix.Kill(p, unix.SIGTERM)
	}
	for _, p := range pids {
		if !waitGone(p, 10*time.Second) {
			unix.Kill(p, unix.SIGKILL)
			waitGone(p, 5*time.Second)
		}
	}
	sweepCgroups(u.stateDir)
	if t.Failed() {
		t.Logf("gateway log:\n%s", u.log(t))
	}
}

// log is what every serve process of the test logged.
func (u *upgradable) log(t *testing.T) string { return string(readFile(t, u.logFile)) }

// servingPID is the pid the pid file names: the process that serves.
func (u *upgradable) servingPID(t *testing.T) int {
	b, _ := os.ReadFile(u.pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// upgrade runs `jailgate upgrade` and returns its stdout, stderr and exit
// code.
func (u *upgradable) upgrade(t *testing.T) (string, string, int) {
	t.Helper()
	return cli(t, "upgrade", "--config", u.config)
}

// installBinary puts content at path as a package manager does: a new
// file renamed over the old one (the running binary cannot be written).
func installBinary(t *testing.T, path string, content []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, content, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// waitGone waits until pid no longer runs.
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// TestE2EUpgradeBrokenBinary: `jailgate upgrade` to a binary that exits at
// start says why and exits 1; the old server keeps everything: it still
// serves, the pid file still names it, its admin socket still answers.
func TestE2EUpgradeBrokenBinary(t *testing.T) {
	u := startUpgradable(t, "")
	installBinary(t, u.bin, []byte("#!/bin/sh\necho 'broken build' >&2\nexit 3\n"))
	_, errOut, code := u.upgrade(t)
	t.Logf("upgrade said: %s", errOut)
	if code != 1 || !strings.Contains(errOut, "exit status 3") || !strings.Contains(errOut, "keeps serving") {
		t.Errorf("upgrade to a binary that exits at start: exit %d, stderr %q; want 1 and the reason", code, errOut)
	}
	if out, errOut, code := u.ssh(t, "alice", "", "echo still"); code != 0 || out != "still\n" {
		t.Errorf("login after the failed upgrade: %q %q %d", out, errOut, code)
	}
	if p := u.servingPID(t); p != u.oldPID || !alive(u.oldPID) {
		t.Errorf("pid file names %d, old pid %d alive %v; want the old one serving", p, u.oldPID, alive(u.oldPID))
	}
	if _, errOut, code := cli(t, "reload", "--config", u.config); code != 0 {
		t.Errorf("reload after the failed upgrade: exit %d %q (the admin socket must stay the old one's)", code, errOut)
	}
}

// TestE2EUpgradeBadConfig: an upgrade while the config file is invalid
// exits 1 with the new process's problems, FILE:LINE each; the old server
// keeps serving on the configuration it had.
func TestE2EUpgradeBadConfig(t *testing.T) {
	u := startUpgradable(t, "")
	good := readFile(t, u.config)
	os.WriteFile(u.config, append([]byte("colour: blue\n"), good...), 0o600)
	_, errOut, code := u.upgrade(t)
	if code != 1 || !strings.Contains(errOut, "jailgate.yaml:1: colour: unknown field") {
		t.Errorf("upgrade with a bad config: exit %d, stderr %q; want 1 and the problem", code, errOut)
	}
	if out, _, code := u.ssh(t, "alice", "", "echo still"); code != 0 || out != "still\n" {
		t.Errorf("login after the failed upgrade: %q %d", out, code)
	}
	if !alive(u.oldPID) || u.servingPID(t) != u.oldPID {
		t.Error("the old server no longer serves after a failed upgrade")
	}
	if !strings.Contains(u.log(t), "upgrade failed") {
		t.Errorf("the old server did not log the failed upgrade")
	}
}

// upgraded runs `jailgate upgrade` to the same binary installed anew and
// returns the new process's pid, failing the test unless it succeeded.
func (u *upgradable) upgraded(t *testing.T) int {
	t.Helper()
	installBinary(t, u.bin, readFile(t, binary(t)))
	out, errOut, code := u.upgrade(t)
	if code != 0 {
		t.Fatalf("upgrade: exit %d, %q %q", code, out, errOut)
	}
	newPID := u.servingPID(t)
	if newPID == u.oldPID || !strings.Contains(out, fmt.Sprintf("pid %d (dev) -> pid %d (dev)", u.oldPID, newPID)) {
		t.Fatalf("upgrade said %q; pid file names %d, old pid %d", out, newPID, u.oldPID)
	}
	return newPID
}

// streamLines starts `ssh -tt` running script and sends its output lines.
func (u *upgradable) streamLines(t *testing.T, user, script string) (*exec.Cmd, io.WriteCloser, <-chan string) {
	t.Helper()
	cmd := exec.Command("ssh", append(append(u.clientOpts(user, "-p"), "-tt", user+"@127.0.0.1"), script)...)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- strings.TrimRight(sc.Text(), "\r")
		}
	}()
	return cmd, in, lines
}
