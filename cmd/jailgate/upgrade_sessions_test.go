//go:build linux

package main

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// established counts pid's established TCP connections on the gateway's
// port: which process holds which clients.
func established(t *testing.T, pid, port int) int {
	t.Helper()
	mine := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); ok {
			mine[strings.TrimSuffix(inode, "]")] = true
		}
	}
	n := 0
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(table)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st ... inode (field 9)
			if len(f) < 10 || f[3] != "01" || !strings.HasSuffix(f[1], fmt.Sprintf(":%04X", port)) {
				continue
			}
			if mine[f[9]] {
				n++
			}
		}
	}
	return n
}

// holdSession runs `ssh alice 'echo MARK; read x'` until the returned
// func answers its read.
func (u *upgradable) holdSession(t *testing.T, mark string) (end func() error) {
	t.Helper()
	cmd := exec.Command("ssh", append(append(u.clientOpts("alice", "-p"), "alice@127.0.0.1"), "echo "+mark+"; read x")...)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	gatewaytest.Expect(t, out, mark, 10*time.Second)
	return func() error { io.WriteString(in, "bye\n"); in.Close(); return cmd.Wait() }
}

// TestE2EUpgradeLoginLoop: 30 `ssh alice true` run across an upgrade with
// none refused or failed; a login after it lands on the new process and
// joins the environment from before (its /tmp); the old one keeps its
// established session and exits once it ends.
func TestE2EUpgradeLoginLoop(t *testing.T) {
	u := startUpgradable(t, "")
	endOld := u.holdSession(t, "held")
	if _, errOut, code := u.ssh(t, "alice", "", "echo before > /tmp/upgrade-mark"); code != 0 {
		t.Fatalf("write the mark: %q", errOut)
	}
	var failed []string
	done := make(chan struct{})
	started := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 30 {
			if i == 5 {
				close(started)
			}
			if out, errOut, code := u.ssh(t, "alice", "", "true"); code != 0 {
				failed = append(failed, fmt.Sprintf("login %d: exit %d %q %q", i, code, out, errOut))
			}
		}
	}()
	<-started
	newPID := u.upgraded(t)
	<-done
	if len(failed) > 0 {
		t.Errorf("%d of 30 logins across the upgrade failed:\n%s", len(failed), strings.Join(failed, "\n"))
	}
	// The new process adopted her environment: a login joins it.
	if out, errOut, code := u.ssh(t, "alice", "", "cat /tmp/upgrade-mark"); code != 0 || out != "before\n" {
		t.Errorf("a login after the upgrade does not see the environment's /tmp from before: %q %q %d", out, errOut, code)
	}
	endNew := u.holdSession(t, "new")
	if n, o := established(t, newPID, u.port), established(t, u.oldPID, u.port); n != 1 || o != 1 {
		t.Errorf("established connections: new pid %d holds %d, old pid %d holds %d; want 1 each (the login after the upgrade, the session held from before)", newPID, n, u.oldPID, o)
	}
	if _, errOut, code := u.upgrade(t); code != 1 || !strings.Contains(errOut, "still drains") {
		t.Errorf("a second upgrade while the first old process drains: exit %d %q; want 1, refused", code, errOut)
	}
	if !alive(u.oldPID) {
		t.Fatal("the old process exited while it still had a session")
	}
	if err := endOld(); err != nil {
		t.Errorf("the session held across the upgrade: %v", err)
	}
	select {
	case <-u.oldExited:
	case <-time.After(5 * time.Second):
		t.Fatal("the old process did not exit within 5s of its last connection")
	}
	if !strings.Contains(u.log(t), "stopped after the upgrade") {
		t.Error("the old process did not log its exit after the upgrade")
	}
	if out, _, code := u.ssh(t, "alice", "", "echo after"); code != 0 || out != "after\n" {
		t.Errorf("login after the old process exited: %q %d", out, code)
	}
	endNew()
}

// TestE2EUpgradeStream: an interactive session streaming a counter goes
// on across an upgrade (by SIGUSR2, as systemctl kill -s USR2 sends it)
// with no gap and no duplicate for 2s after it. The audit log, /readyz and
// /metrics record the handover.
func TestE2EUpgradeStream(t *testing.T) {
	audit, metrics := filepath.Join(t.TempDir(), "audit.log"), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	u := startUpgradable(t, "audit_log: "+audit+"\nmetrics_listen: "+metrics+"\n")
	_, _, lines := u.streamLines(t, "alice", "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done")
	var got []string
	for len(got) < 10 {
		got = append(got, <-lines)
	}
	unix.Kill(u.oldPID, unix.SIGUSR2)
	deadline := time.Now().Add(20 * time.Second)
	for u.servingPID(t) == u.oldPID {
		if time.Now().After(deadline) {
			t.Fatal("SIGUSR2: no new process serves after 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	newPID := u.servingPID(t)
	handover := len(got)
	after := time.After(2 * time.Second)
	for collecting := true; collecting; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the stream ended across the upgrade after %q", got[len(got)-1])
			}
			got = append(got, l)
		case <-after:
			collecting = false
		}
	}
	for i, l := range got {
		if l != strconv.Itoa(i) {
			t.Fatalf("line %d of the stream is %q, want %d (a gap, a duplicate or a notice); stream %q", i, l, i, got)
		}
	}
	if len(got)-handover < 10 { // a line per 50ms and a fork: 20 a second at most
		t.Errorf("only %d lines in the 2s after the upgrade; the stream stalled", len(got)-handover)
	}
	if b := readFile(t, audit); !strings.Contains(string(b), fmt.Sprintf(`"event":"gateway.upgrade","new_pid":%d,"new_version":"dev","old_pid":%d`, newPID, u.oldPID)) {
		t.Errorf("the audit log lacks the handover:\n%s", b)
	}
	for path, want := range map[string]string{"/readyz": fmt.Sprintf("upgraded from pid %d (version dev)", u.oldPID),
		"/metrics": `jailgate_upgrades_total{result="ok"} 1`} {
		if body := httpGet(t, "http://"+metrics+path); !strings.Contains(body, want) {
			t.Errorf("%s lacks %q:\n%s", path, want, body)
		}
	}
}

// httpGet returns url's body.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// slowHash hashes what it reads, pausing now and then: a slow reader, so
// that the transfer is in flight while the upgrade runs.
type slowHash struct {
	h     io.Writer
	n     atomic.Int64
	once  sync.Once
	begun chan struct{}
}

func (s *slowHash) Write(p []byte) (int, error) {
	if s.n.Add(int64(len(p))) > 8<<20 {
		s.once.Do(func() { close(s.begun) })
	}
	time.Sleep(10 * time.Millisecond)
	return s.h.Write(p)
}

// TestE2EUpgradeSFTP: a 100 MiB sftp download with a slow reader in
// flight across an upgrade completes with the checksum of the file.
func TestE2EUpgradeSFTP(t *testing.T) {
	u := startUpgradable(t, "")
	data := make([]byte, 100<<20)
	rand.NewChaCha8([32]byte{7}).Read(data)
	if err := os.WriteFile(filepath.Join(u.rootfs["alice"], "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	f, err := u.sftpClient(t, "alice").Open("/big")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	sink := &slowHash{h: h, begun: make(chan struct{})}
	copied := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<20)
		_, err := io.CopyBuffer(sink, struct{ io.Reader }{f}, buf) // Read only: no concurrent WriteTo
		copied <- err
	}()
	<-sink.begun
	u.upgraded(t)
	if n := sink.n.Load(); n >= int64(len(data)) {
		t.Fatalf("the download was over (%d bytes) before the upgrade was: the test proves nothing", n)
	}
	select {
	case err := <-copied:
		if err != nil {
			t.Fatalf("sftp download across the upgrade: %v after %d bytes", err, sink.n.Load())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("sftp download stalled at %d bytes", sink.n.Load())
	}
	if got := h.Sum(nil); sink.n.Load() != int64(len(data)) || string(got) != string(want[:]) {
		t.Errorf("downloaded %d bytes, sha256 %x; want %d, %x", sink.n.Load(), got, len(data), want)
	}
}

// vmRSS is pid's resident memory, from /proc/PID/status.
func vmRSS(t *testing.T, pid int) string {
	t.Helper()
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// TestE2EUpgradeIdleSessions: 200 idle sessions of 50 tenants (on one
// image, a layer each) are all still open after an upgrade, held by the
// old process; a new login lands on the new one. The log reports both
// processes' RSS.
func TestE2EUpgradeIdleSessions(t *testing.T) {
	const tenants, sessions = 50, 200
	g := &e2eGateway{dir: jailtest.SearchableTempDir(t), port: freePort(t), log: &syncBuffer{}}
	g.stateDir, g.bin = filepath.Join(g.dir, "state"), filepath.Join(g.dir, "jailgate")
	sshKeygen(t, filepath.Join(g.dir, "key"))
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "listen: 127.0.0.1:%d\nstate_dir: %s\ndefaults:\n  image: base\n  keys_file: %s.pub\nusers:\n", g.port, g.stateDir, filepath.Join(g.dir, "key"))
	for i := range tenants {
		fmt.Fprintf(&cfg, "  t%02d: {}\n", i)
	}
	path := filepath.Join(g.dir, "jailgate.yaml")
	os.WriteFile(path, []byte(cfg.String()), 0o600)
	if out, errOut, code := cli(t, "rootfs", "from-host", "-q", "--image", "base", "--config", path); code != 0 {
		t.Fatalf("rootfs from-host --image: exit %d %q %q", code, out, errOut)
	}
	u := runUpgradable(t, g, path)
	signer := u.signer(t, "key")
	addr := fmt.Sprintf("127.0.0.1:%d", u.port)
	clients := make([]*gossh.Client, sessions)
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	sem := make(chan struct{}, 8) // within per_source_max_startups
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := gatewaytest.Dial(t, addr, fmt.Sprintf("t%02d", i%tenants), signer)
			if err == nil {
				err = idleSession(c)
			}
			clients[i] = c
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("open an idle session: %v", err)
		}
	}
	oldRSS := vmRSS(t, u.oldPID)
	newPID := u.upgraded(t)
	if out, _, code := u.openssh(t, "ssh", "", append(u.clientOpts("key", "-p"), "t07@127.0.0.1", "echo new")...); code != 0 || out != "new\n" {
		t.Errorf("login after the upgrade: %q %d", out, code)
	}
	for i, c := range clients {
		if _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); err != nil {
			t.Fatalf("session %d (tenant t%02d) is gone after the upgrade: %v", i, i%tenants, err)
		}
	}
	if n := established(t, u.oldPID, u.port); n != sessions {
		t.Errorf("the old process holds %d connections, want all %d", n, sessions)
	}
	t.Logf("RSS with %d idle sessions of %d tenants: old gateway (pid %d) %s before the upgrade, %s after; new gateway (pid %d) %s",
		sessions, tenants, u.oldPID, oldRSS, vmRSS(t, u.oldPID), newPID, vmRSS(t, newPID))
}

// idleSession opens a session on c running a shell that waits, and waits
// until it runs.
func idleSession(c *gossh.Client) error {
	s, err := c.NewSession()
	if err != nil {
		return err
	}
	out, err := s.StdoutPipe()
	if err != nil {
		return err
	}
	if _, err := s.StdinPipe(); err != nil {
		return err
	}
	if err := s.Start("echo idle; exec cat"); err != nil {
		return err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "idle\n" {
		return fmt.Errorf("idle session said %q: %v", line, err)
	}
	return nil
}

// TestE2EUpgradeDrainLimit: with upgrade_drain set, the old process ends
// the connections it still has once it passes, as a stop does (told, then
// shutdown_grace), and exits.
func TestE2EUpgradeDrainLimit(t *testing.T) {
	u := startUpgradable(t, "upgrade_drain: 1s\nserver:\n  shutdown_grace: 1s\n")
	cmd, errb := u.sleepingSession(t, "held")
	u.upgraded(t)
	select {
	case <-u.oldExited:
	case <-time.After(8 * time.Second):
		t.Fatal("the old process still runs 8s after an upgrade with upgrade_drain 1s, shutdown_grace 1s")
	}
	cmd.Wait()
	if !strings.Contains(errb.String(), "jailgate: the server is shutting down") {
		t.Errorf("the session past upgrade_drain was not told: stderr %q", errb.String())
	}
	if out, _, code := u.ssh(t, "alice", "", "echo new"); code != 0 || out != "new\n" {
		t.Errorf("login on the new process: %q %d", out, code)
	}
}
