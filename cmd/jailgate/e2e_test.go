//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/statedir"
)

func TestMain(m *testing.M) {
	if jail.IsInit() {
		jail.InitMain()
	}
	code := m.Run()
	for _, d := range builtDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// builtDirs are the temp dirs of the helper binaries the tests build once
// (the gateway, echoserver, attack); TestMain removes them at the end.
var builtDirs []string

// buildStatic builds package pkg (a directory of this module) as a static
// binary named name, once per test binary through the caller's OnceValues.
func buildStatic(pkg, name string, flags ...string) (string, error) {
	dir, err := os.MkdirTemp("", "jailgate-"+name+"-")
	if err != nil {
		return "", err
	}
	builtDirs = append(builtDirs, dir)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", append(append([]string{"build"}, flags...), "-o", bin, pkg)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}

// buildOnce builds the jailgate binary once per test run as make build
// does: the small init first, then jailgate with it embedded.
var buildOnce = sync.OnceValues(func() (string, error) {
	initBin, err := buildStatic("./initbin", "jailgate-init")
	if err != nil {
		return "", err
	}
	if err := copyIfChanged(initBin, filepath.Join("initbin", "jailgate-init")); err != nil {
		return "", err
	}
	return buildStatic(".", "jailgate", "-tags", "embedinit")
})

// copyIfChanged copies src over dst unless dst already has its content
// (another test run, or make build, may have put it there).
func copyIfChanged(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, b) {
		return nil
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// binary returns the built jailgate binary.
func binary(t *testing.T) string {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// e2eGateway is a `jailgate serve` process with two tenants.
type e2eGateway struct {
	bin      string // the jailgate binary; "" is binary(t), as make build builds it
	cmd      *exec.Cmd
	port     int
	dir      string // keys, config, state
	stateDir string
	rootfs   map[string]string // tenant -> host path of her tree
	log      *syncBuffer
}

// syncBuffer is a bytes.Buffer safe for the process's writer and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort finds a free loopback port.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// sshKeygen makes an ed25519 key pair with OpenSSH's ssh-keygen.
func sshKeygen(t *testing.T, path string) {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
}

// startServe writes a config for alice and bob and runs `jailgate serve`.
func startServe(t *testing.T) *e2eGateway {
	t.Helper()
	return startServeWith(t, "")
}

// startServeWith is startServe with extra top-level YAML in the config.
func startServeWith(t *testing.T, extra string) *e2eGateway {
	t.Helper()
	return startServeBin(t, "", extra)
}

// startServeBin is startServeWith with the jailgate binary bin ("": as make
// build builds it).
func startServeBin(t *testing.T, bin, extra string) *e2eGateway {
	t.Helper()
	return startServeFull(t, bin, extra, "")
}

// startServeFull is startServeBin with extra lines in the config's
// defaults: block (indented two spaces, e.g. "  linger: 1h\n").
func startServeFull(t *testing.T, bin, extra, defaults string) *e2eGateway {
	t.Helper()
	g, path := newE2EGateway(t, bin, extra, defaults)
	g.start(t, path)
	return g
}

// newE2EGateway writes a config for alice and bob (with extra top-level
// YAML and extra defaults: lines) for the jailgate binary bin and returns
// the gateway, not started, and the config's path.
func newE2EGateway(t *testing.T, bin, extra, defaults string) (*e2eGateway, string) {
	t.Helper()
	jailtest.RequireRoot(t)
	g := &e2eGateway{bin: bin, dir: jailtest.SearchableTempDir(t), port: freePort(t), log: &syncBuffer{}, rootfs: map[string]string{}}
	g.stateDir = filepath.Join(g.dir, "state")
	var users strings.Builder
	for _, u := range []string{"alice", "bob"} {
		sshKeygen(t, filepath.Join(g.dir, u))
		root := jailtest.Rootfs(t, u)
		g.rootfs[u] = root
		fmt.Fprintf(&users, "  %s:\n    keys_file: %s.pub\n    rootfs: %s\n", u, filepath.Join(g.dir, u), root)
	}
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\nstate_dir: %s\n%sdefaults:\n  hostname: \"{user}-lab\"\n%susers:\n%s",
		g.port, g.stateDir, extra, defaults, users.String())
	path := filepath.Join(g.dir, "jailgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return g, path
}

// start runs `jailgate serve --config path` and waits until it listens on
// g.port; the test's end kills it.
func (g *e2eGateway) start(t *testing.T, path string) {
	t.Helper()
	bin := g.bin
	if bin == "" {
		bin = binary(t)
	}
	g.cmd = exec.Command(bin, "serve", "--config", path)
	g.cmd.Stderr = g.log
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := g.cmd
	t.Cleanup(func() {
		// SIGTERM twice (the second ends the drain at once), so the
		// gateway unmounts its tenants' layers as a real stop does; a
		// SIGKILL would leave them mounted under /run/jailgate.
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		cmd.Process.Signal(unix.SIGTERM)
		cmd.Process.Signal(unix.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		sweepCgroups(g.stateDir) // a gateway killed by the test, or past the 10 s
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.log.String())
		}
	})
	g.waitListening(t)
}

// waitListening waits until the gateway listens on g.port.
func (g *e2eGateway) waitListening(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", g.port))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not listening after 10s; log:\n%s", g.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sweepCgroups ends the environments that outlived a test's `jailgate
// serve` on stateDir (they follow their linger, and the test's state_dir
// has no next serve), as `jailgate env stop --all` does, and removes what a
// killed one left in its cgroup prefix.
func sweepCgroups(stateDir string) {
	if stateDir == "" {
		return
	}
	l := statedir.New(stateDir)
	opts := jail.Options{Logger: slog.New(slog.DiscardHandler), CgroupPrefix: l.Cgroup(), RecordDir: l.Environments()}
	jail.StopEnvironments(context.Background(), opts, "", 0)
	opts.RecordDir = ""
	s, err := jail.New(opts)
	if err == nil {
		s.Close()
	}
	os.Remove(l.Environments())
	jail.RemoveNetwork(l.Hash()) // the table a killed or lingering gateway left
}

// cli runs the built `jailgate ARGS…` and returns its stdout, stderr and
// exit code.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return cliIn(t, "", args...)
}

// cliIn is cli with stdin.
func cliIn(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatal(err)
		}
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// ssh runs OpenSSH's ssh client as user with stdin, returning stdout,
// stderr and the exit code.
func (g *e2eGateway) ssh(t *testing.T, user, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return g.openssh(t, "ssh", stdin, append(append(g.clientOpts(user, "-p"), user+"@127.0.0.1"), args...)...)
}

// clientOpts are the OpenSSH client options for user's key and the test
// gateway; port is -p for ssh and -P for scp and sftp.
func (g *e2eGateway) clientOpts(user, port string) []string {
	return []string{"-i", filepath.Join(g.dir, user), port, strconv.Itoa(g.port),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"}
}

// openssh runs one of OpenSSH's clients with stdin and returns stdout,
// stderr and the exit code.
func (g *e2eGateway) openssh(t *testing.T, tool, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(tool, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	return out.String(), errb.String(), code
}

// idBase reads a tenant's allocated host id base from the state dir.
func (g *e2eGateway) idBase(t *testing.T, tenant string) uint32 {
	t.Helper()
	b, err := os.ReadFile(statedir.New(g.stateDir).IDs())
	if err != nil {
		t.Fatal(err)
	}
	var ids map[string]struct{ Base uint32 }
	if err := json.Unmarshal(b, &ids); err != nil {
		t.Fatal(err)
	}
	return ids[tenant].Base
}

func TestE2EOpenSSH(t *testing.T) {
	g := startServe(t)
	out, errOut, code := g.ssh(t, "alice", "", "echo hi; echo oops >&2; exit 7")
	if out != "hi\n" || code != 7 || !strings.Contains(errOut, "oops") {
		t.Errorf("ssh 'echo hi; exit 7': stdout %q stderr %q code %d; want hi, oops on stderr, 7", out, errOut, code)
	}
	if out, _, code := g.ssh(t, "alice", "x\n", "cat"); out != "x\n" || code != 0 {
		t.Errorf("echo x | ssh cat: %q, code %d", out, code)
	}
	if out, _, _ := g.ssh(t, "bob", "", "hostname; id -u"); out != "bob-lab\n0\n" {
		t.Errorf("bob's hostname and uid: %q", out)
	}
	if out, _, code := g.ssh(t, "alice", "", "-tt", "tty"); code != 0 || !strings.HasPrefix(out, "/dev/pts/") {
		t.Errorf("ssh -tt tty: %q, code %d", out, code)
	}
}

func TestE2ECheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen: 127.0.0.1:2222\nusers:\n  alice:\n    rootfs: relative/path\n    keys: [\"not a key\"]\n    colour: blue\n"), 0o600)
	cmd := exec.Command(binary(t), "check", "--config", bad)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("check of a bad config: err %v, want exit 2; output:\n%s", err, out)
	}
	for _, want := range []string{"bad.yaml:6:", "colour", "bad.yaml:4:", "rootfs", "bad.yaml:5:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
}

func TestE2EGracefulShutdown(t *testing.T) {
	auditLog := filepath.Join(t.TempDir(), "audit.log")
	g := startServeWith(t, "server:\n  shutdown_grace: 1s\naudit_log: "+auditLog+"\n")
	cmd, errb := g.sleepingSession(t, "ready")
	base := g.idBase(t, "alice")
	g.cmd.Process.Signal(unix.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- g.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("serve after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop within 10s of SIGTERM (grace 1s)")
	}
	cmd.Wait()
	if !strings.Contains(errb.String(), "jailgate: the server is shutting down") {
		t.Errorf("the tenant was not told: stderr %q", errb.String())
	}
	jailtest.WaitNoProcs(t, base, 65536, time.Second)
	if left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/pids", statedir.New(g.stateDir).Cgroup(), "alice/*-*-*")); len(left) > 0 {
		t.Errorf("environment cgroups left after shutdown: %v", left)
	}
	// The audit log: owner-only, one JSON object per event.
	fi, err := os.Stat(auditLog)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit log %v, mode %v; want 0600", err, fi.Mode())
	}
	b, _ := os.ReadFile(auditLog)
	for _, ev := range []string{`"event":"auth.success"`, `"event":"session.start"`, `"event":"env.start"`, `"event":"env.end"`} {
		if !strings.Contains(string(b), ev) {
			t.Errorf("audit log lacks %s:\n%s", ev, b)
		}
	}
}

// sleepingSession runs `ssh alice 'echo MARK; exec sleep 1000'` until it
// has said MARK, returning it and its stderr; the test's end kills it.
func (g *e2eGateway) sleepingSession(t *testing.T, mark string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command("ssh", append(append(g.clientOpts("alice", "-p"), "alice@127.0.0.1"), "echo "+mark+"; exec sleep 1000")...)
	errb := &syncBuffer{}
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	gatewaytest.Expect(t, out, mark, 10*time.Second)
	return cmd, errb
}
