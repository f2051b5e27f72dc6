package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/statedir"
)

// This file runs the two servers under test: each in cgroups of the
// harness, sshd and jailgate on private configs, and the client command
// that logs in to either.

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// newGroup creates the harness's cpuacct and memory cgroups for a server
// (this run's: see groupName) and returns their dirs.
func newGroup(name string) (cpu, mem string, err error) {
	cpu = filepath.Join(cgroupRoot, "cpuacct", groupName(name))
	mem = filepath.Join(cgroupRoot, "memory", groupName(name))
	for _, d := range []string{cpu, mem} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", "", err
		}
		if pids, _ := jail.CgroupProcs(d); len(pids) > 0 {
			return "", "", fmt.Errorf("cgroup %s still has processes %v from an earlier run", d, pids)
		}
	}
	return cpu, mem, nil
}

// startServer starts cmd with its stderr in logPath and moves it into its
// cgroups before it serves anything (children inherit them), then waits
// until the port accepts.
func (s *server) start(ctx context.Context, cpu, mem string) error {
	lf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	s.cmd.Stdout, s.cmd.Stderr = lf, lf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = s.cmd.Start()
	lf.Close()
	if err != nil {
		return err
	}
	pid := strconv.Itoa(s.cmd.Process.Pid)
	for _, d := range []string{cpu, mem} {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(pid), 0); err != nil {
			return fmt.Errorf("join %s: %w", d, err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			log, _ := os.ReadFile(s.logPath)
			return fmt.Errorf("%s not listening on %d after 15s; log:\n%s", s.name, s.port, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startSSHD writes a private sshd config (Debian's defaults plus a loopback
// port, its own host key, and Match User + ChrootDirectory for the test
// user) and runs sshd -D on it.
func (tb *testbed) startSSHD(ctx context.Context) error {
	if _, err := os.Stat("/run/sshd"); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir("/run/sshd", 0o755); err != nil { // sshd's privilege separation dir
			return err
		}
		tb.runSSHD = true
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	d := filepath.Join(tb.dir, "sshd")
	ak := filepath.Join(d, "authorized_keys")
	pub, err := os.ReadFile(tb.key + ".pub")
	if err != nil {
		return err
	}
	if err := os.WriteFile(ak, pub, 0o644); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`# Written by jailgate's bench: Debian 12's sshd_config defaults, on loopback.
Port %d
ListenAddress 127.0.0.1
HostKey %s/ssh_host_ed25519_key
PidFile %s/sshd.pid
AuthorizedKeysFile %s
AllowUsers %s
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
Match User %s
	ChrootDirectory %s
	AllowTcpForwarding no
`, port, d, d, ak, tb.o.user, tb.o.user, filepath.Join(tb.dir, "rootfs", "chroot"))
	path := filepath.Join(d, "sshd_config")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return err
	}
	if err := runCmd("/usr/sbin/sshd", "-t", "-f", path); err != nil {
		return err
	}
	cpu, mem, err := newGroup("sshd")
	if err != nil {
		return err
	}
	tb.ossh = &server{name: "openssh", port: port, logPath: filepath.Join(d, "sshd.log"),
		cmd:     exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", path),
		cpuDirs: []string{cpu}, memDirs: []string{mem}, group: "sshd"}
	return tb.ossh.start(ctx, cpu, mem)
}

// startJailgate writes a config with the test tenants (no limits but the
// sessions tenant's pids, the defaults otherwise, JSON log, metrics on
// loopback), checks it and runs jailgate serve.
func (tb *testbed) startJailgate(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	if tb.metricsPort, err = freePort(); err != nil {
		return err
	}
	d := filepath.Join(tb.dir, "jailgate")
	if err := os.MkdirAll(d, 0o755); err != nil { // the morning image may have made it
		return err
	}
	tb.jgPort, tb.jgConfig = port, filepath.Join(d, "jailgate.yaml") // state_dir: its dir's state/
	tb.jgs.chacha = true
	if err := tb.writeJailgateConfig(); err != nil {
		return err
	}
	if err := runCmd(tb.o.jailgate, "check", "--config", tb.jgConfig); err != nil {
		return err
	}
	cpu, mem, err := newGroup("jg")
	if err != nil {
		return err
	}
	// Its own group (serve, and an init until the gateway moves it) and
	// the whole state_dir prefix: every tenant's <prefix>/<tenant>/<env>
	// and the pool's <prefix>/pool-<n>/<env>, live or removed. The two are
	// disjoint, so nothing is counted twice.
	tb.jg = &server{name: "jailgate", port: port, logPath: filepath.Join(d, "serve.log"),
		cmd:     exec.Command(tb.o.jailgate, "serve", "--config", tb.jgConfig),
		cpuDirs: []string{cpu, filepath.Join(cgroupRoot, "cpuacct", tb.jgCgroup())},
		memDirs: []string{mem, filepath.Join(cgroupRoot, "memory", tb.jgCgroup())}, group: "jg"}
	return tb.jg.start(ctx, cpu, mem)
}

// probe logs in once to each server and tenant, so that a broken setup
// fails here, with the server's log, rather than as a table of errors.
func (tb *testbed) probe(ctx context.Context) error {
	for _, t := range []struct {
		s    *server
		user string
	}{{tb.ossh, tb.o.user}, {tb.jg, tenantCold}, {tb.jg, tenantWarm}, {tb.jg, tenantSess}, {tb.jg, tenantSessK}} {
		if t.user == tenantSessK && !tb.o.want("sessions") {
			continue
		}
		out, err := tb.ssh(ctx, t.s, t.user, pinned, false, "echo ok").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "ok" {
			log, _ := os.ReadFile(t.s.logPath)
			return fmt.Errorf("ssh %s@%s: %v: %s\nserver log:\n%s", t.user, t.s.name, err, out, tail(log, 3000))
		}
	}
	return nil
}

// tail returns the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// cipherMode says which client algorithms a run uses.
type cipherMode int

const (
	pinned   cipherMode = iota // curve25519-sha256 + chacha20-poly1305@openssh.com
	defaults                   // whatever the client and server negotiate
)

// String names the mode as the table does.
func (m cipherMode) String() string {
	if m == pinned {
		return "chacha20"
	}
	return "defaults"
}

// ssh returns an OpenSSH client command for user on s; tty asks for -tt.
// No config file is read, host keys are not checked (both servers are
// ours, on loopback), and only the harness's key is offered.
func (tb *testbed) ssh(ctx context.Context, s *server, user string, mode cipherMode, tty bool, args ...string) *exec.Cmd {
	a := []string{"-F", "none", "-i", tb.key, "-p", strconv.Itoa(s.port),
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=30"}
	if mode == pinned {
		a = append(a, "-o", "KexAlgorithms=curve25519-sha256", "-o", "Ciphers=chacha20-poly1305@openssh.com")
	}
	if tty {
		a = append(a, "-tt")
	} else {
		a = append(a, "-T")
	}
	a = append(a, user+"@127.0.0.1")
	a = append(a, args...)
	return exec.CommandContext(ctx, "ssh", a...)
}

// userOf returns the login name the harness uses on s.
func (tb *testbed) userOf(s *server, tenant string) string {
	if s == tb.ossh {
		return tb.o.user
	}
	return tenant
}

// jgCgroup is the cgroup prefix of the benchmarked gateway: one per
// state_dir (statedir.Layout.Cgroup), its config's dir/state.
func (tb *testbed) jgCgroup() string {
	return statedir.New(tb.jgStateDir()).Cgroup()
}
