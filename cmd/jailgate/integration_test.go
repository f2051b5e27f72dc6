//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/keys"
	"github.com/jailgate/jailgate/provision"
	"github.com/jailgate/jailgate/rootfs"
)

// lab is an in-process gateway with the real jail and two tenants.
type lab struct {
	addr     string
	srv      *gateway.Server
	prov     *provision.Provisioner
	sup      *jail.Supervisor
	layers   *rootfs.Layers // image tenants' layers, if the test makes its own; set before serve
	stateDir string
	cgroup   string // the Supervisor's cgroup prefix, the lab's own
	keys     map[string]gossh.Signer
	rootfs   map[string]string
	log      *syncBuffer
}

// startLab writes a YAML config (extra is appended to each user), loads it
// through config.Load and serves it on 127.0.0.1:0 with a real Supervisor.
func startLab(t *testing.T, extra string) *lab {
	t.Helper()
	jailtest.RequireRoot(t)
	dir := jailtest.SearchableTempDir(t)
	l := &lab{stateDir: filepath.Join(dir, "state"), keys: map[string]gossh.Signer{},
		rootfs: map[string]string{}, log: &syncBuffer{}}
	var users strings.Builder
	for _, u := range []string{"alice", "bob"} {
		signer, pub := gatewaytest.NewKey(t)
		l.keys[u] = signer
		l.rootfs[u] = jailtest.Rootfs(t, u, "setsid")
		fmt.Fprintf(&users, "  %s:\n    keys: [%q]\n    rootfs: %s\n%s", u,
			strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pub))), l.rootfs[u], extra)
	}
	yaml := fmt.Sprintf("listen: 127.0.0.1:0\nstate_dir: %s\ndefaults:\n  hostname: \"{user}-lab\"\nusers:\n%s", l.stateDir, users.String())
	l.serve(t, dir, yaml)
	return l
}

// serve loads yamlText (written to dir) and serves it in-process with a
// real Supervisor; the lab's keys must already be set.
func (l *lab) serve(t *testing.T, dir, yaml string) {
	t.Helper()
	path := filepath.Join(dir, "jailgate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	log := slog.New(slog.NewTextHandler(l.log, nil))
	l.cgroup = jailtest.CgroupPrefix(cfg.StateDir)
	sup, err := jail.New(jail.Options{Logger: log, CgroupPrefix: l.cgroup, KillGrace: 300 * time.Millisecond,
		Network: labNetwork(t, cfg, log)})
	if err != nil {
		t.Fatal(err)
	}
	hostKey, _ := gatewaytest.NewKey(t)
	l.prov = provision.New(provision.Options{StateDir: cfg.StateDir, Layers: l.layers, HostIDs: jailtest.HostIDs(),
		Current: func() *config.Config { return l.srv.Config() }})
	l.sup = sup
	d := &daemon{cfg: cfg} // serve's DiskUsage: her login's line past her disk quota
	l.srv, err = gateway.New(gateway.Options{Config: cfg, Manager: sup, HostKey: hostKey, Logger: log, Provision: l.prov.Provision,
		DiskUsage: d.diskUsage})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.addr = ln.Addr().String()
	go l.srv.Serve(ln)
	t.Cleanup(func() {
		l.srv.Close()
		sup.Close()
		l.prov.Close()
		if t.Failed() {
			t.Logf("gateway log:\n%s", l.log.String())
		}
	})
}

// dial logs in as user with key.
func (l *lab) dial(t *testing.T, user string, key gossh.Signer) (*gossh.Client, error) {
	t.Helper()
	return gatewaytest.Dial(t, l.addr, user, key)
}

// client logs in as user with her own key, closed at test end.
func (l *lab) client(t *testing.T, user string) *gossh.Client {
	t.Helper()
	c, err := l.dial(t, user, l.keys[user])
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// runSSH execs cmd in a new session and returns stdout, stderr and the exit error.
func runSSH(t *testing.T, c *gossh.Client, cmd string) (string, string, error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	err = s.Run(cmd)
	return out.String(), errb.String(), err
}

// must runs cmd and fails the test unless it exits 0.
func must(t *testing.T, c *gossh.Client, cmd string) string {
	t.Helper()
	out, errOut, err := runSSH(t, c, cmd)
	if err != nil {
		t.Fatalf("%q: %v (stdout %q, stderr %q)", cmd, err, out, errOut)
	}
	return out
}

// base is a tenant's host id base, as provisioned.
func (l *lab) base(t *testing.T, user string) uint32 {
	t.Helper()
	b, err := jail.NewIDPool(l.stateDir, jail.WithRegistry(jailtest.HostIDs())).Allocate(user, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIntegrationInsideTheJail(t *testing.T) {
	l := startLab(t, "")
	c := l.client(t, "alice")
	t.Run("exit status and streams", func(t *testing.T) {
		out, errOut, err := runSSH(t, c, "echo hi; echo oops >&2; exit 7")
		var ee *gossh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 7 || out != "hi\n" || errOut != "oops\n" {
			t.Errorf("got stdout %q stderr %q err %v; want hi, oops, exit 7", out, errOut, err)
		}
	})
	t.Run("exit signal", func(t *testing.T) {
		_, _, err := runSSH(t, c, "kill -TERM $$")
		var ee *gossh.ExitError
		if !errors.As(err, &ee) || ee.Signal() != "TERM" {
			t.Errorf("kill -TERM $$: err %v, want exit-signal TERM", err)
		}
	})
	t.Run("pid 1 is jailgate's init and proc lists only the environment", func(t *testing.T) {
		out := must(t, c, "tr '\\0' ' ' </proc/1/cmdline; echo; cd /proc && echo [0-9]*")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if lines[0] != "jailgate init " {
			t.Errorf("PID 1 is %q", lines[0])
		}
		if pids := strings.Fields(lines[1]); len(pids) > 3 {
			t.Errorf("/proc lists %v: more than init, the shell and its child", pids)
		}
	})
	t.Run("host pid cannot be signalled", func(t *testing.T) {
		if _, _, err := runSSH(t, c, fmt.Sprintf("kill -0 %d", os.Getpid())); err == nil {
			t.Error("kill -0 of the gateway's pid succeeded from inside")
		}
	})
	t.Run("hostname", func(t *testing.T) {
		if out := must(t, c, "hostname"); out != "alice-lab\n" {
			t.Errorf("hostname %q", out)
		}
	})
	t.Run("root inside, tenant base outside", func(t *testing.T) {
		if out := must(t, c, "id -u; echo x > /root/made-by-alice"); out != "0\n" {
			t.Errorf("id -u = %q", out)
		}
		fi, err := os.Stat(filepath.Join(l.rootfs["alice"], "root/made-by-alice"))
		if err != nil {
			t.Fatal(err)
		}
		if uid := fileUID(fi); uid != l.base(t, "alice") {
			t.Errorf("file owned by host uid %d, want alice's base %d", uid, l.base(t, "alice"))
		}
	})
}

func TestIntegrationPTY(t *testing.T) {
	l := startLab(t, "")
	c := l.client(t, "alice")
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm", 24, 80, gossh.TerminalModes{gossh.ECHO: 0}); err != nil {
		t.Fatal(err)
	}
	in, _ := s.StdinPipe()
	out, _ := s.StdoutPipe()
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, "tty; echo TERM=$TERM\n")
	gatewaytest.Expect(t, out, "/dev/pts/", 10*time.Second)
	gatewaytest.Expect(t, out, "TERM=xterm", 5*time.Second)
	if err := s.WindowChange(33, 111); err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, "stty size\n")
	gatewaytest.Expect(t, out, "33 111", 5*time.Second)
	io.WriteString(in, "exit 3\n")
	var ee *gossh.ExitError
	if err := s.Wait(); !errors.As(err, &ee) || ee.ExitStatus() != 3 {
		t.Errorf("shell exit: %v, want 3", err)
	}
}

func TestIntegrationAuth(t *testing.T) {
	l := startLab(t, "")
	stranger, _ := gatewaytest.NewKey(t)
	cases := []struct {
		name, user string
		key        gossh.Signer
	}{
		{"bob's key for alice", "alice", l.keys["bob"]},
		{"unknown key", "alice", stranger},
		{"unknown user", "mallory", l.keys["alice"]},
	}
	for _, tc := range cases {
		if c, err := l.dial(t, tc.user, tc.key); err == nil {
			c.Close()
			t.Errorf("%s: login succeeded", tc.name)
		}
	}
	if !strings.Contains(l.log.String(), keys.Fingerprint(stranger.PublicKey())) {
		t.Errorf("the log does not name the rejected key's fingerprint:\n%s", l.log.String())
	}
}

func TestIntegrationTeardown(t *testing.T) {
	l := startLab(t, "")
	c := l.client(t, "alice")
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := s.StdoutPipe()
	// A job in the session's group and a daemon that left it.
	if err := s.Start("sleep 1000 </dev/null >/dev/null 2>&1 & setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo started; exec sleep 1000"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "started", 10*time.Second)
	base := l.base(t, "alice")
	if n := len(jailtest.RangeProcs(base, 65536)); n < 3 {
		t.Fatalf("expected alice's init and sleeps on the host, found %d processes", n)
	}
	c.Close() // her last connection: the environment ends with it
	jailtest.WaitNoProcs(t, base, 65536, 2*time.Second)
}

func TestIntegrationTenantModeShares(t *testing.T) {
	l := startLab(t, "")
	a, b := l.client(t, "alice"), l.client(t, "alice")
	// A live session on the first connection keeps the environment up
	// (linger 0 ends it with the last session).
	s, err := a.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, _ := s.StdoutPipe()
	if err := s.Start("echo started; exec sleep 1000"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "started", 10*time.Second)
	if out := must(t, b, "ps -eo comm"); !strings.Contains(out, "sleep") {
		t.Errorf("tenant mode: alice's second connection does not see the first one's sleep:\n%s", out)
	}
	// Bob, at the same time, sees neither her processes nor her files.
	must(t, a, "echo secret > /root/alice-only")
	bob := l.client(t, "bob")
	if out := must(t, bob, "ps -eo comm; ls /root"); strings.Contains(out, "sleep") || strings.Contains(out, "alice-only") {
		t.Errorf("bob sees alice's processes or files:\n%s", out)
	}
}

func TestIntegrationSessionModeIsolates(t *testing.T) {
	l := startLab(t, "    environment: session\n")
	a := l.client(t, "alice")
	s, err := a.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, _ := s.StdoutPipe()
	if err := s.Start("echo started; exec sleep 1000"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "started", 10*time.Second)
	if got := must(t, a, "ps -eo comm"); strings.Contains(got, "sleep") {
		t.Errorf("session mode: a second session sees the first one's sleep:\n%s", got)
	}
}

func TestIntegrationBrokenRootfs(t *testing.T) {
	l := startLab(t, "")
	if err := os.RemoveAll(filepath.Join(l.rootfs["alice"], "bin")); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(l.rootfs["alice"], "usr"))
	c := l.client(t, "alice")
	_, errOut, err := runSSH(t, c, "true")
	var ee *gossh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 255 || !strings.Contains(errOut, "jailgate: your environment could not start") {
		t.Errorf("broken rootfs: err %v, stderr %q; want exit 255 and the short message", err, errOut)
	}
	if strings.Contains(errOut, l.rootfs["alice"]) {
		t.Errorf("the tenant's message reveals a host path: %q", errOut)
	}
}
