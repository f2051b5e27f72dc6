package jail_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
)

func TestMain(m *testing.M) {
	if jail.IsInit() {
		jail.InitMain()
	}
	if path := os.Getenv(dialEnv); path != "" { // TestControlSocketRefusesStrangers' non-root dialer
		if dialRefused(nil, path, "garbage from a stranger") {
			fmt.Println("refused")
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// nextBase hands each test its own host id range, far from the pool's.
var nextBase atomic.Uint32

func init() { nextBase.Store(3 << 29) }

// newSpec builds a rootfs shifted into a fresh id range and a spec for it.
func newSpec(t *testing.T, tenant string, with ...string) *jail.EnvSpec {
	t.Helper()
	base := nextBase.Add(1<<16) - 1<<16
	dir := jailtest.ShiftedRootfs(t, tenant, base, 1<<16, with...)
	return &jail.EnvSpec{Tenant: tenant, Rootfs: dir, Hostname: tenant + "-lab",
		IDMap: jail.IDMap{UID: base, GID: base, Size: 1 << 16}, Network: "none"}
}

// newSupervisor starts a Supervisor closed at the end of the test.
func newSupervisor(t *testing.T) *jail.Supervisor {
	t.Helper()
	jailtest.RequireRoot(t)
	s, err := jail.New(jail.Options{CgroupPrefix: jailtest.CgroupPrefix(t.TempDir()), KillGrace: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sh runs a shell script with pipes in env and returns stdout, failing the
// test on a spawn error or a non-zero exit.
func sh(t *testing.T, env jail.Env, script string) string {
	t.Helper()
	out, st := shStatus(t, env, script)
	if st.Code != 0 || st.Signal != 0 {
		t.Fatalf("%q: exit %+v, output %q", script, st, out)
	}
	return out
}

// shStatus runs a script and returns its stdout+stderr and exit status.
func shStatus(t *testing.T, env jail.Env, script string) (string, jail.ExitStatus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := env.Spawn(ctx, &jail.ProcSpec{Argv: []string{"/bin/sh", "-c", script},
		Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}, Dir: "/root"})
	if err != nil {
		t.Fatalf("spawn %q: %v", script, err)
	}
	p.Stdin().Close()
	errc := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(p.Stderr()); errc <- b }()
	out, _ := io.ReadAll(p.Stdout())
	stderr := <-errc
	st, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return string(out) + string(stderr), st
}

// environment starts (or joins) an environment, released at test end.
func environment(t *testing.T, s *jail.Supervisor, key string, spec *jail.EnvSpec) jail.Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := s.Environment(ctx, key, spec)
	if err != nil {
		t.Fatalf("environment: %v", err)
	}
	t.Cleanup(e.Release)
	return e
}

func TestConformance(t *testing.T) {
	s := newSupervisor(t)
	jailtest.RunConformance(t, s, newSpec(t, "conform"))
}

func TestIsolation(t *testing.T) {
	s := newSupervisor(t)
	spec := newSpec(t, "alice")
	e := environment(t, s, "iso", spec)

	t.Run("pid 1 is the init", func(t *testing.T) {
		if got := sh(t, e, "tr '\\0' ' ' </proc/1/cmdline"); got != "jailgate init " {
			t.Errorf("/proc/1/cmdline = %q", got)
		}
	})
	t.Run("proc lists only the environment", func(t *testing.T) {
		got := strings.Fields(sh(t, e, "cd /proc && echo [0-9]*"))
		// PID 1 (init), the shell, and possibly the echo's own subshell.
		if len(got) > 3 || got[0] != "1" {
			t.Errorf("/proc pids = %v, want the init and the shell only", got)
		}
	})
	t.Run("host process cannot be signalled", func(t *testing.T) {
		out, st := shStatus(t, e, fmt.Sprintf("kill -0 %d", os.Getpid()))
		if st.Code == 0 {
			t.Errorf("kill -0 of the host pid %d succeeded: %q", os.Getpid(), out)
		}
	})
	t.Run("uid map is the tenant range", func(t *testing.T) {
		got := strings.Fields(sh(t, e, "cat /proc/self/uid_map"))
		want := []string{"0", strconv.Itoa(int(spec.IDMap.UID)), "65536"}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("uid_map = %v, want %v", got, want)
		}
	})
	t.Run("hostname", func(t *testing.T) {
		if got := sh(t, e, "hostname"); got != "alice-lab\n" {
			t.Errorf("hostname = %q, want alice-lab", got)
		}
	})
	t.Run("caps no_new_privs", func(t *testing.T) {
		status := sh(t, e, "cat /proc/self/status")
		mask, _ := jail.CapMask(jail.DefaultCaps)
		want := fmt.Sprintf("CapEff:\t%016x", mask)
		for _, w := range []string{want, fmt.Sprintf("CapBnd:\t%016x", mask), "NoNewPrivs:\t1"} {
			if !strings.Contains(status, w) {
				t.Errorf("status lacks %q:\n%s", w, status)
			}
		}
	})
	t.Run("only stdio fds", func(t *testing.T) {
		got := strings.Fields(sh(t, e, "ls /proc/self/fd"))
		// ls holds one more fd for the directory it reads.
		if len(got) != 4 || got[0] != "0" || got[1] != "1" || got[2] != "2" {
			t.Errorf("fds = %v, want 0 1 2 and ls's own", got)
		}
	})
	t.Run("files are owned by the tenant base on the host", func(t *testing.T) {
		sh(t, e, "id -u; echo x > /root/made-inside")
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(spec.Rootfs, "root/made-inside"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != spec.IDMap.UID || st.Gid != spec.IDMap.GID {
			t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, spec.IDMap.UID, spec.IDMap.GID)
		}
	})
	t.Run("pty comes from the environment's devpts", func(t *testing.T) {
		p, err := e.Spawn(context.Background(), &jail.ProcSpec{Argv: []string{"/bin/sh", "-c", "tty"},
			TTY: &jail.TTY{Rows: 24, Cols: 80}})
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(p.Stdout())
		p.Wait()
		if !strings.HasPrefix(string(out), "/dev/pts/") {
			t.Errorf("tty printed %q", out)
		}
	})
}

func TestHostnameChangeStaysInside(t *testing.T) {
	s := newSupervisor(t)
	spec := newSpec(t, "hal")
	// The default caps cannot set the hostname at all; with CAP_SYS_ADMIN
	// the tenant can, and only in her UTS namespace.
	spec.Caps = append([]string{"CAP_SYS_ADMIN"}, jail.DefaultCaps...)
	e := environment(t, s, "h", spec)
	host, _ := os.Hostname()
	if got := sh(t, e, "hostname; hostname changed; hostname"); got != "hal-lab\nchanged\n" {
		t.Errorf("hostname output %q", got)
	}
	if now, _ := os.Hostname(); now != host {
		t.Errorf("host's hostname changed from %q to %q", host, now)
	}
}

func TestReleaseEndsEverything(t *testing.T) {
	s := newSupervisor(t)
	spec := newSpec(t, "bob", "setsid")
	e, err := s.Environment(context.Background(), "rel", spec)
	if err != nil {
		t.Fatal(err)
	}
	// A daemon that left the session's process group must die too.
	sh(t, e, "setsid sleep 1000 </dev/null >/dev/null 2>&1 & sleep 1000 </dev/null >/dev/null 2>&1 &")
	if n := len(jailtest.RangeProcs(spec.IDMap.UID, spec.IDMap.Size)); n < 3 {
		t.Fatalf("expected init and two sleeps on the host, found %d: %v", n, jailtest.RangeProcs(spec.IDMap.UID, spec.IDMap.Size))
	}
	e.Release()
	jailtest.WaitNoProcs(t, spec.IDMap.UID, spec.IDMap.Size, time.Second)
}

func TestSharingByKey(t *testing.T) {
	s := newSupervisor(t)
	spec := newSpec(t, "carol")
	a := environment(t, s, "tenant/carol", spec)
	b := environment(t, s, "tenant/carol", spec)
	c := environment(t, s, "session/x", spec)
	sh(t, a, "sleep 1000 </dev/null >/dev/null 2>&1 &")
	if got := sh(t, b, "ps -eo comm"); !strings.Contains(got, "sleep") {
		t.Errorf("same key: second handle does not see the first one's sleep:\n%s", got)
	}
	if got := sh(t, c, "ps -eo comm"); strings.Contains(got, "sleep") {
		t.Errorf("other key sees the sleep:\n%s", got)
	}
}

func TestLinger(t *testing.T) {
	s := newSupervisor(t)
	spec := newSpec(t, "dave")
	spec.Linger = 500 * time.Millisecond
	e, err := s.Environment(context.Background(), "l", spec)
	if err != nil {
		t.Fatal(err)
	}
	sh(t, e, "sleep 1000 </dev/null >/dev/null 2>&1 &")
	e.Release()
	e2 := environment(t, s, "l", spec) // within the linger: the same environment
	if got := sh(t, e2, "ps -eo comm"); !strings.Contains(got, "sleep") {
		t.Fatalf("rejoined within linger but the sleep is gone:\n%s", got)
	}
	e2.Release()
	time.Sleep(spec.Linger)
	jailtest.WaitNoProcs(t, spec.IDMap.UID, spec.IDMap.Size, time.Second)
}

func TestHostileRootfs(t *testing.T) {
	s := newSupervisor(t)
	spec := newSpec(t, "eve")
	before, _ := os.ReadDir("/etc")
	if err := os.RemoveAll(filepath.Join(spec.Rootfs, "proc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(spec.Rootfs, "proc")); err != nil {
		t.Fatal(err)
	}
	_, err := s.Environment(context.Background(), "eve", spec)
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("environment with proc -> /etc: err = %v, want a refusal naming the symlink", err)
	}
	after, _ := os.ReadDir("/etc")
	if len(after) != len(before) {
		t.Errorf("host /etc changed: %d entries before, %d after", len(before), len(after))
	}
	jailtest.WaitNoProcs(t, spec.IDMap.UID, spec.IDMap.Size, time.Second)
}

func TestMissingRootfs(t *testing.T) {
	s := newSupervisor(t)
	spec := newSpec(t, "frank")
	spec.Rootfs += "-missing"
	if _, err := s.Environment(context.Background(), "f", spec); err == nil {
		t.Fatal("environment with a missing rootfs started")
	}
}

func TestSeccomp(t *testing.T) {
	s := newSupervisor(t)
	spec := newSpec(t, "sec", "unshare")
	e := environment(t, s, "sec", spec)
	if status := sh(t, e, "cat /proc/self/status"); !strings.Contains(status, "Seccomp:\t2") {
		t.Errorf("no seccomp filter in a spawned process:\n%s", status)
	}
	// unshare -U needs no capability: only the filter stops it. The same
	// call in an unconfined environment shows the check can fail.
	if out, st := shStatus(t, e, "unshare -U true"); st.Code == 0 {
		t.Errorf("unshare -U succeeded under the filter: %q", out)
	}
	open := *spec
	open.Seccomp = jail.SeccompUnconfined
	e2 := environment(t, s, "sec-open", &open)
	if out, st := shStatus(t, e2, "unshare -U true"); st.Code != 0 {
		t.Errorf("unshare -U failed without the filter too (%q): the test cannot tell the filter's effect", out)
	}
}

// TestRejoinRightAfterRelease: a login that races the end of the previous
// environment gets a new one, never the dying one ("environment closed").
func TestRejoinRightAfterRelease(t *testing.T) {
	s := newSupervisor(t)
	spec := newSpec(t, "ivy")
	for i := 0; i < 10; i++ {
		e, err := s.Environment(context.Background(), "tenant/ivy", spec)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		sh(t, e, "true")
		e.Release()
	}
}

// TestStartStepError: a start that fails on the gateway's side says which
// of its steps failed (a *jail.StepError), keeps the cause for errors.Is,
// and leaves nothing behind; an unknown network mode is refused by name.
func TestStartStepError(t *testing.T) {
	s := newSupervisor(t)
	base := newSpec(t, "stepper")
	cases := []struct {
		name, step, want string
		edit             func(*jail.EnvSpec)
		is               error
	}{
		{"missing rootfs", "rootfs", "-missing", func(sp *jail.EnvSpec) { sp.Rootfs += "-missing" }, fs.ErrNotExist},
		{"no id range", "spec", "no host id range", func(sp *jail.EnvSpec) { sp.IDMap.Size = 0 }, nil},
		{"unknown network", "spec", `network mode "nat-bogus" is not supported`, func(sp *jail.EnvSpec) { sp.Network = "nat-bogus" }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := *base
			tc.edit(&spec)
			_, err := s.Environment(context.Background(), "step-"+tc.step, &spec)
			var se *jail.StepError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v (%T), want a *jail.StepError", err, err)
			}
			if se.Step != tc.step || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q (step %q), want step %q and %q", err, se.Step, tc.step, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want errors.Is %v", err, tc.is)
			}
		})
	}
	jailtest.WaitNoProcs(t, base.IDMap.UID, base.IDMap.Size, time.Second)
}

// TestNetworkNone: network none (and an empty Network, its default) gives
// the tenant her own network namespace with lo up and nothing else, and
// her loopback carries TCP.
func TestNetworkNone(t *testing.T) {
	s := newSupervisor(t)
	for _, mode := range []string{jail.NetworkNone, ""} {
		t.Run("network="+mode, func(t *testing.T) {
			spec := newSpec(t, "net")
			spec.Network = mode
			e := environment(t, s, "net-"+mode, spec)
			// IFF_UP is bit 0 of the flags; sysfs lists this netns's links.
			got := sh(t, e, "ls /sys/class/net; cat /sys/class/net/lo/flags")
			f := strings.Fields(got)
			if len(f) != 2 || f[0] != "lo" {
				t.Fatalf("links and lo flags: %q, want lo alone", got)
			}
			if flags, err := strconv.ParseUint(f[1], 0, 32); err != nil || flags&unix.IFF_UP == 0 {
				t.Errorf("lo flags %q: not up", f[1])
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			l, err := e.Listen(ctx, "tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
			p, err := e.Spawn(ctx, &jail.ProcSpec{Argv: []string{"/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/" + port + "; echo hi >&3"}})
			if err != nil {
				t.Fatal(err)
			}
			p.Stdin().Close()
			errc := readAll(p.Stderr())
			// Her connection is queued (and "hi" buffered) once bash exits:
			// waiting first, an Accept can never block for good.
			if st, err := p.Wait(); err != nil || st.Code != 0 {
				t.Fatalf("the tenant's connect over lo: %+v, %v: %s", st, err, <-errc)
			}
			c, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if b, _ := io.ReadAll(c); string(b) != "hi\n" {
				t.Errorf("read %q over the tenant's loopback, want hi", b)
			}
		})
	}
}

// readAll reads r to its end in the background.
func readAll(r io.Reader) <-chan string {
	c := make(chan string, 1)
	go func() { b, _ := io.ReadAll(r); c <- string(b) }()
	return c
}

// TestOOMScoreNotInherited: the gateway runs at a protected oom_score_adj
// (serve sets -1000 where the host allows it), and a child inherits its
// parent's score; her init is set back to 0 before it starts anything, so
// her processes stay killable. This host may refuse -1000 (no
// CAP_SYS_RESOURCE), so the test gives its own process a raised score,
// which any process may, and checks her shell does not inherit that one.
func TestOOMScoreNotInherited(t *testing.T) {
	const self = "/proc/self/oom_score_adj"
	old, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(self, []byte("300"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(self, old, 0) })
	s := newSupervisor(t)
	e := environment(t, s, "oom", newSpec(t, "oom"))
	if got := strings.TrimSpace(sh(t, e, "cat /proc/self/oom_score_adj")); got != "0" {
		t.Errorf("her shell's oom_score_adj = %s, want 0 (not the gateway's 300)", got)
	}
}
