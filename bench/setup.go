package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jailgate/jailgate/jail"
)

// The jailgate tenants of the test config. Their names are unusual so that
// their cgroups (jailgate/<tenant>) hold nothing but this run's.
const (
	tenantCold = "jgbcold" // linger 0: every login starts an environment
	tenantWarm = "jgbwarm" // linger 60s: logins join a live environment
	tenantSess = "jgbsess" // environment: session: one environment per session
)

// benchCgroup names the cgroups the harness puts each server in.
const benchCgroup = "jailgate-bench-"

// cgroupRoot is the v1 hierarchy the harness reads; cpuacct and memory.
const cgroupRoot = "/sys/fs/cgroup"

// blobPath is the throughput file inside both rootfs.
const blobPath = "/bench/blob"

// server is one SSH server under test, as the client and the meters see it.
type server struct {
	name    string // "jailgate" or "openssh"
	port    int
	cmd     *exec.Cmd
	logPath string
	// cpuacct and memory cgroup dirs whose usage (hierarchical on v1)
	// together is this server's: its own group, and for jailgate the tenant
	// groups its environments live in.
	cpuDirs, memDirs []string
	group            string // the harness's own cgroup name for it
}

// testbed is everything setup made; teardown undoes it.
type testbed struct {
	o           *options
	dir         string // the run's work dir
	key         string // the client's ed25519 private key
	blob        string // the local copy of the throughput file
	jg, ossh    *server
	metricsPort int // jailgate's /metrics
	jgPort      int
	jgConfig    string
	userCreated bool
	runSSHD     bool // /run/sshd was created by us
	sshdVersion string
	jgVersion   string
}

// setup builds the rootfs, keys, the test user, both configs and cgroups,
// and starts both servers. On error the returned testbed (if any) still
// needs teardown.
func setup(ctx context.Context, o *options) (*testbed, error) {
	if _, err := os.Stat(o.jailgate); err != nil {
		return nil, fmt.Errorf("jailgate binary: %w (run make build)", err)
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		return nil, errors.New("/usr/sbin/sshd missing: apt-get install openssh-server (its service is never used)")
	}
	for _, ctrl := range []string{"cpuacct", "memory"} {
		if _, err := os.Stat(filepath.Join(cgroupRoot, ctrl, "cgroup.procs")); err != nil {
			return nil, fmt.Errorf("cgroup v1 %s hierarchy not mounted at %s/%s: this harness reads v1 counters", ctrl, cgroupRoot, ctrl)
		}
	}
	if err := os.MkdirAll(o.workBase, 0o755); err != nil {
		return nil, err
	}
	os.Chmod(o.workBase, 0o755)
	dir, err := os.MkdirTemp(o.workBase, "run-")
	if err != nil {
		return nil, err
	}
	tb := &testbed{o: o, dir: dir}
	if err := os.Chmod(dir, 0o755); err != nil {
		return tb, err
	}
	tb.sshdVersion = firstLine(exec.Command("ssh", "-V").CombinedOutput())
	tb.jgVersion = firstLine(exec.Command(o.jailgate, "version").CombinedOutput())
	step := func(name string, f func() error) error {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		fmt.Fprintf(os.Stderr, "bench: setup: %s\n", name)
		if err := f(); err != nil {
			return fmt.Errorf("setup: %s: %w", name, err)
		}
		return nil
	}
	for _, s := range []struct {
		name string
		f    func() error
	}{
		{"keys", tb.makeKeys},
		{"rootfs", tb.makeRootfs},
		{"throughput file", tb.makeBlob},
		{"test user", tb.makeUser},
		{"sshd", func() error { return tb.startSSHD(ctx) }},
		{"jailgate", func() error { return tb.startJailgate(ctx) }},
		{"first logins", func() error { return tb.probe(ctx) }},
	} {
		if err := step(s.name, s.f); err != nil {
			return tb, err
		}
	}
	return tb, nil
}

// firstLine returns the first line of a command's output, or its error.
func firstLine(out []byte, err error) string {
	if err != nil && len(out) == 0 {
		return err.Error()
	}
	l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return l
}

// runCmd runs a host command, returning its combined output in the error.
func runCmd(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// makeKeys makes the client key and sshd's host key (jailgate makes its own).
func (tb *testbed) makeKeys() error {
	for _, d := range []string{"keys", "sshd"} {
		if err := os.Mkdir(filepath.Join(tb.dir, d), 0o755); err != nil {
			return err
		}
	}
	tb.key = filepath.Join(tb.dir, "keys", "client")
	if err := runCmd("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jailgate-bench", "-f", tb.key); err != nil {
		return err
	}
	return runCmd("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(tb.dir, "sshd", "ssh_host_ed25519_key"))
}

// makeRootfs builds one from-host rootfs per jailgate tenant and one for
// sshd's chroot, the latter with the usual ChrootDirectory extras: device
// nodes and the test user in its passwd.
func (tb *testbed) makeRootfs() error {
	if err := os.Mkdir(filepath.Join(tb.dir, "rootfs"), 0o755); err != nil {
		return err
	}
	for _, t := range []string{tenantCold, tenantWarm, tenantSess, "chroot"} {
		if err := runCmd(tb.o.jailgate, "rootfs", "from-host", "-q", filepath.Join(tb.dir, "rootfs", t)); err != nil {
			return err
		}
	}
	ch := filepath.Join(tb.dir, "rootfs", "chroot")
	for _, d := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		p := filepath.Join(ch, "dev", d.name)
		if err := syscall.Mknod(p, syscall.S_IFCHR|0o666, int(d.major<<8|d.minor)); err != nil {
			return fmt.Errorf("mknod %s: %w", p, err)
		}
		os.Chmod(p, 0o666)
	}
	return nil
}

// makeBlob writes the throughput file (pseudo-random, so no compression
// could flatter either side) locally and into the warm tenant's rootfs and
// the chroot.
func (tb *testbed) makeBlob() error {
	tb.blob = filepath.Join(tb.dir, "blob")
	f, err := os.OpenFile(tb.blob, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{'j', 'g'})
	buf := make([]byte, 1<<20)
	for i := 0; i < tb.o.sizeMiB; i++ {
		rng.Read(buf)
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	for _, t := range []string{tenantWarm, "chroot"} {
		d := filepath.Join(tb.dir, "rootfs", t, filepath.Dir(blobPath))
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
		if err := copyFile(tb.blob, filepath.Join(d, filepath.Base(blobPath))); err != nil {
			return err
		}
	}
	return nil
}

// copyFile copies src to a new file dst (0644).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// makeUser creates the sshd test user if missing (no home, shell
// /bin/bash, which the chroot has) and lists it in the chroot's passwd.
func (tb *testbed) makeUser() error {
	if _, err := user.Lookup(tb.o.user); err != nil {
		if err := runCmd("useradd", "-M", "-d", "/", "-s", "/bin/bash", "-U", tb.o.user); err != nil {
			return err
		}
		tb.userCreated = true
	}
	u, err := user.Lookup(tb.o.user)
	if err != nil {
		return err
	}
	line := fmt.Sprintf("%s:x:%s:%s::/:/bin/bash\n", tb.o.user, u.Uid, u.Gid)
	f, err := os.OpenFile(filepath.Join(tb.dir, "rootfs", "chroot", "etc", "passwd"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

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
// (reusing empty ones a killed run left) and returns their dirs.
func newGroup(name string) (cpu, mem string, err error) {
	cpu = filepath.Join(cgroupRoot, "cpuacct", benchCgroup+name)
	mem = filepath.Join(cgroupRoot, "memory", benchCgroup+name)
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

// startJailgate writes a config with the three test tenants (no limits,
// the defaults otherwise, JSON log, metrics on loopback), checks it and
// runs jailgate serve. It offers chacha20-poly1305 on top of the default
// ciphers, as the pinned runs need; offerChacha takes it away again.
func (tb *testbed) startJailgate(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	if tb.metricsPort, err = freePort(); err != nil {
		return err
	}
	d := filepath.Join(tb.dir, "jailgate")
	if err := os.Mkdir(d, 0o755); err != nil {
		return err
	}
	tb.jgPort, tb.jgConfig = port, filepath.Join(d, "jailgate.yaml")
	if err := tb.writeJailgateConfig(true); err != nil {
		return err
	}
	if err := runCmd(tb.o.jailgate, "check", "--config", tb.jgConfig); err != nil {
		return err
	}
	cpu, mem, err := newGroup("jg")
	if err != nil {
		return err
	}
	tb.jg = &server{name: "jailgate", port: port, logPath: filepath.Join(d, "serve.log"),
		cmd:     exec.Command(tb.o.jailgate, "serve", "--config", tb.jgConfig),
		cpuDirs: []string{cpu}, memDirs: []string{mem}, group: "jg"}
	for _, t := range []string{tenantCold, tenantWarm, tenantSess} {
		tb.jg.cpuDirs = append(tb.jg.cpuDirs, filepath.Join(cgroupRoot, "cpuacct", "jailgate", t))
		tb.jg.memDirs = append(tb.jg.memDirs, filepath.Join(cgroupRoot, "memory", "jailgate", t))
	}
	return tb.jg.start(ctx, cpu, mem)
}

// defaultCiphers is jailgate's default server.ciphers (config.DefaultCiphers).
const defaultCiphers = "aes128-gcm@openssh.com, aes256-gcm@openssh.com"

// writeJailgateConfig writes the jailgate config; chacha adds
// chacha20-poly1305@openssh.com to the ciphers offered.
func (tb *testbed) writeJailgateConfig(chacha bool) error {
	var users strings.Builder
	for _, t := range []struct{ name, extra string }{
		{tenantCold, ""}, {tenantWarm, "    linger: 60s\n"}, {tenantSess, "    environment: session\n"},
	} {
		fmt.Fprintf(&users, "  %s:\n    keys_file: %s.pub\n    rootfs: %s\n%s", t.name, tb.key,
			filepath.Join(tb.dir, "rootfs", t.name), t.extra)
	}
	ciphers := defaultCiphers
	if chacha {
		ciphers += ", chacha20-poly1305@openssh.com"
	}
	cfg := fmt.Sprintf("# Written by jailgate's bench: the defaults, no limits, on loopback.\n"+
		"listen: 127.0.0.1:%d\nstate_dir: %s/state\nmetrics_listen: 127.0.0.1:%d\nlog: { format: json, level: info }\n"+
		"server: { ciphers: [%s] }\nusers:\n%s", tb.jgPort, filepath.Dir(tb.jgConfig), tb.metricsPort, ciphers, users.String())
	return os.WriteFile(tb.jgConfig, []byte(cfg), 0o600)
}

// offerChacha reloads jailgate (SIGHUP) with or without chacha20-poly1305
// among its ciphers and waits until a pinned login shows it took effect.
func (tb *testbed) offerChacha(ctx context.Context, on bool) error {
	if err := tb.writeJailgateConfig(on); err != nil {
		return err
	}
	if err := tb.jg.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		err := tb.ssh(ctx, tb.jg, tenantWarm, pinned, false, "true").Run()
		if (err == nil) == on {
			return nil
		}
	}
	return fmt.Errorf("jailgate did not reload to chacha20 offered=%v within 10s", on)
}

// probe logs in once to each server and tenant, so that a broken setup
// fails here, with the server's log, rather than as a table of errors.
func (tb *testbed) probe(ctx context.Context) error {
	for _, t := range []struct {
		s    *server
		user string
	}{{tb.ossh, tb.o.user}, {tb.jg, tenantCold}, {tb.jg, tenantWarm}, {tb.jg, tenantSess}} {
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

// teardown stops both servers and every process left in their cgroups,
// removes the harness's cgroups, the work dir, the test user (if it made
// it) and /run/sshd (if it made it). It returns what it could not undo.
func (tb *testbed) teardown() []error {
	var errs []error
	for _, s := range []*server{tb.jg, tb.ossh} {
		if s == nil || s.cmd == nil || s.cmd.Process == nil {
			continue
		}
		s.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-done
		}
		// What the server started and left (sshd's session processes
		// survive the listener) is in its cgroups: end it by pid.
		for _, d := range s.memDirs[:1] {
			deadline := time.Now().Add(5 * time.Second)
			for {
				pids, _ := jail.CgroupProcs(d)
				if len(pids) == 0 {
					break
				}
				for _, p := range pids {
					syscall.Kill(p, syscall.SIGKILL)
				}
				if time.Now().After(deadline) {
					errs = append(errs, fmt.Errorf("%s: processes %v still alive", d, pids))
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		for _, ctrl := range []string{"cpuacct", "memory"} {
			if err := os.Remove(filepath.Join(cgroupRoot, ctrl, benchCgroup+s.group)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	// jailgate leaves its tenants' cgroups (jailgate/<tenant>) in place;
	// these tenants are the harness's own, so remove them once empty.
	if tb.jg != nil {
		for _, ctrl := range []string{"memory", "pids", "cpu", "cpuacct", "freezer", "blkio"} {
			for _, t := range []string{tenantCold, tenantWarm, tenantSess} {
				d := filepath.Join(cgroupRoot, ctrl, "jailgate", t)
				if ents, err := os.ReadDir(d); err == nil { // env dirs a killed gateway left
					for _, e := range ents {
						if e.IsDir() {
							os.Remove(filepath.Join(d, e.Name()))
						}
					}
				}
				deadline := time.Now().Add(5 * time.Second)
				for {
					err := os.Remove(d)
					if err == nil || errors.Is(err, os.ErrNotExist) {
						break
					}
					if time.Now().After(deadline) {
						errs = append(errs, err)
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}
	}
	if tb.dir != "" && !tb.o.keep {
		if err := os.RemoveAll(tb.dir); err != nil {
			errs = append(errs, err)
		}
	}
	if tb.userCreated {
		if err := runCmd("userdel", tb.o.user); err != nil {
			errs = append(errs, err)
		}
	}
	if tb.runSSHD {
		os.Remove("/run/sshd")
	}
	return errs
}
