//go:build linux

package main

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// limEnvCgroups lists environment cgroups left under the test prefixes.
func limEnvCgroups(t *testing.T) []string {
	t.Helper()
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/jailgate-test-*/*/*")
	var left []string
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			left = append(left, d)
		}
	}
	return left
}

// limNoSessionCgroups fails if any environment cgroup of this process
// remains once the lab is gone.
func limNoSessionCgroups(t *testing.T) {
	t.Cleanup(func() {
		prefix := strconv.Itoa(os.Getpid()) + "-"
		for _, d := range limEnvCgroups(t) {
			if strings.HasPrefix(filepath.Base(d), prefix) {
				t.Errorf("environment cgroup left behind: %s", d)
			}
		}
	})
}

func TestLimitsForkBomb(t *testing.T) {
	limNoSessionCgroups(t)
	l := startLab(t, "    limits: { pids: 64 }\n")
	a := l.client(t, "alice")
	// A session that keeps her environment up while the bomb goes off.
	hold, err := a.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	holdOut, _ := hold.StdoutPipe()
	if err := hold.Start("echo started; exec sleep 1000"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, holdOut, "started", 10*time.Second)
	// A bounded fork loop, far past the limit; dash gives up at the first
	// failed fork (bash would retry for seconds).
	runSSH(t, a, `exec sh -c 'i=0; while [ $i -lt 300 ]; do sleep 1000 </dev/null >/dev/null 2>&1 & i=$((i+1)); done'`)
	cg := filepath.Join("/sys/fs/cgroup/pids", l.cgroup, "alice")
	current := readInt(t, filepath.Join(cg, "pids.current"))
	if current > 64 || current < 32 {
		t.Errorf("alice's pids.current = %d after the fork loop, want the limit (64) reached but not passed", current)
	}
	// The kernel counts refused forks in pids.events of the tenant's
	// cgroup or of the environment's (which one varies by version).
	files, _ := filepath.Glob(filepath.Join(cg, "*", "pids.events"))
	var events string
	for _, f := range append(files, filepath.Join(cg, "pids.events")) {
		b, _ := os.ReadFile(f)
		events += string(b)
	}
	if !strings.Contains(events, "max ") || strings.Count(events, "max 0") == strings.Count(events, "max ") {
		t.Errorf("pids.events = %q: the limit never refused a fork", events)
	}
	// Bob, meanwhile, is not affected.
	if out := must(t, l.client(t, "bob"), "echo bob-ok"); out != "bob-ok\n" {
		t.Errorf("bob's session during alice's fork bomb: %q", out)
	}
	// Spawns into the full environment fail (no pid left), but the init
	// serving them must survive: ask it for several at once.
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s, err := a.NewSession(); err == nil {
				s.Run("true")
				s.Close()
			}
		}()
	}
	wg.Wait()
	// Her environment's init survived the bomb: it made its threads before
	// the bomb could take them (see jail's prewarmThreads).
	if strings.Contains(l.log.String(), "newosproc") || strings.Contains(l.log.String(), "environment end tenant=alice") {
		t.Errorf("alice's init died under the fork bomb:\n%s", l.log.String())
	}
	hold.Close()
	a.Close()
	// Her environment ends with her last session (and the bomb with it).
	jailtest.WaitNoProcs(t, l.base(t, "alice"), 65536, 5*time.Second)
	// Her next login gets a fresh environment and works.
	if out := must(t, l.client(t, "alice"), "echo again"); out != "again\n" {
		t.Errorf("alice's next login: %q", out)
	}
}

// readInt reads a cgroup file holding one integer.
func readInt(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

func TestLimitsMemoryHog(t *testing.T) {
	limNoSessionCgroups(t)
	l := startLab(t, "    limits: { memory: 64MiB }\n")
	a := l.client(t, "alice")
	// bash reads 200 MB into a variable: it grows until the limit kills it.
	_, errOut, err := runSSH(t, a, hog("200000000"))
	var ee *gossh.ExitError
	if !errors.As(err, &ee) || ee.Signal() != "KILL" {
		t.Fatalf("memory hog: err %v, want exit-signal KILL (stderr %q)", err, errOut)
	}
	if !strings.Contains(errOut, "jailgate: killed: memory limit 64MiB reached") {
		t.Errorf("the tenant was not told why: stderr %q", errOut)
	}
	if !strings.Contains(l.log.String(), "limit.oom") {
		t.Errorf("the operator log has no limit.oom event")
	}
}

func TestLimitsSharedBudget(t *testing.T) {
	limNoSessionCgroups(t)
	l := startLab(t, "    limits: { memory: 64MiB }\n")
	a := l.client(t, "alice")
	// Two sessions of alice, each holding 60% of her budget: one must die.
	done := make(chan error, 2)
	for i := 0; i < 2; i++ {
		s, err := a.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		go func() { done <- s.Run(hog("38000000") + "; exec sleep 100") }()
	}
	select {
	case err := <-done:
		var ee *gossh.ExitError
		if !errors.As(err, &ee) || ee.Signal() != "KILL" {
			t.Errorf("first session to end: %v, want exit-signal KILL", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("two hogs of 60% each both ran for 30s under one 64MiB budget")
	}
}

func TestLimitsCPU(t *testing.T) {
	limNoSessionCgroups(t)
	l := startLab(t, "    limits: { cpu: 0.5 }\n")
	c := l.client(t, "alice")
	// Hold the environment (and so her cgroup's counters) across the run.
	hold, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	holdOut, _ := hold.StdoutPipe()
	if err := hold.Start("echo up; exec sleep 1000"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, holdOut, "up", 10*time.Second)
	usage := filepath.Join("/sys/fs/cgroup/cpuacct", l.cgroup, "alice/cpuacct.usage")
	before := readInt(t, usage)
	// A busy loop of 2-3 s wall time; the CPU it used is read from her
	// cgroup's usage: measured, not timed.
	must(t, c, `end=$((SECONDS+3)); while [ $SECONDS -lt $end ]; do :; done`)
	used := float64(readInt(t, usage)-before) / 1e9
	// At 0.5 CPU a 2-3 s loop may use at most ~1.5 s; it must have run.
	if used > 1.7 || used < 0.3 {
		t.Errorf("busy loop under cpu: 0.5 used %.2fs of CPU (cpuacct.usage), want 0.3-1.7s", used)
	}
}

// hog is a command that holds n bytes in bash's memory, as the session's
// own process (exec), so an OOM kill ends the session with exit-signal KILL.
func hog(n string) string {
	return `exec bash -c 'v=$(head -c ` + n + ` /dev/zero | tr "\0" x); echo ${#v}; exec sleep 100'`
}

func TestLimitsRlimitsAndCore(t *testing.T) {
	l := startLab(t, "    rlimits: { nofile: 321 }\n")
	out := must(t, l.client(t, "alice"), "ulimit -n; ulimit -c")
	if out != "321\n0\n" {
		t.Errorf("ulimit -n; ulimit -c = %q, want 321 and 0 (core dumps off by default)", out)
	}
}
