package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
)

// The jailgate tenants of the test config. Their names are unusual so that
// their cgroups (<prefix>/<tenant>, see jgCgroup) hold nothing but this run's.
const (
	tenantCold = "jgbcold" // linger 0: every login starts an environment
	tenantWarm = "jgbwarm" // linger 60s: logins join a live environment
	tenantSess = "jgbsess" // environment: session: one environment per session
)

// benchCgroup names the cgroups the harness puts each server in:
// benchCgroup<name>-<run>, <run> the work dir's suffix, so that two runs
// at once (a helper's partial run beside another's) never share one.
const benchCgroup = "jailgate-bench-"

// runTag is this run's suffix of its cgroup names (setup sets it).
var runTag string

// groupName is the harness's cgroup name for name in this run.
func groupName(name string) string { return benchCgroup + name + "-" + runTag }

// sweepGroups removes the empty harness cgroups of runs whose work dir is
// gone (a run killed before its teardown); a group still in use, or of a
// run still going, stays.
func sweepGroups(workBase string) {
	dirs, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", benchCgroup+"*-*"))
	for _, d := range dirs {
		tag := d[strings.LastIndexByte(d, '-')+1:]
		if _, err := os.Stat(filepath.Join(workBase, "run-"+tag)); errors.Is(err, os.ErrNotExist) {
			os.Remove(d)
		}
	}
}

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
	jgs         jgState // what the config says besides the options
	poolShown   bool    // the pool overhead row is in the report
	userCreated bool
	runSSHD     bool   // /run/sshd was created by us
	ipForward   []byte // net.ipv4.ip_forward before the run, put back at the end
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
	runTag = strings.TrimPrefix(filepath.Base(dir), "run-")
	sweepGroups(o.workBase)
	tb.ipForward, _ = os.ReadFile(ipForwardPath) // network_forwarding: auto may turn it on
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
	rootfs := []string{tenantCold, tenantWarm, tenantSess, "chroot"}
	if tb.o.want("network") {
		rootfs = append(rootfs, tenantNAT)
	}
	if tb.o.want("sessions") {
		rootfs = append(rootfs, tenantSessK)
	}
	if tb.o.want("morning") {
		if err := tb.makeImage(); err != nil {
			return err
		}
	}
	for _, t := range rootfs {
		if err := runCmd(tb.o.jailgate, "rootfs", "from-host", "-q", "--minimal", filepath.Join(tb.dir, "rootfs", t)); err != nil {
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
