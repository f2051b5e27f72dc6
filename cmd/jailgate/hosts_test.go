//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail"
)

// TestIntegrationTwoGateways: two gateways with different state_dirs on
// one host (issue 16 item 5). Both used to put alice in the cgroup
// jailgate/alice and give her the ids from 1073741824, so each config's
// Alice could signal the other's processes and read her files. Now each
// alice's init has its own uid_map and its own cgroup, and staging's
// alice, as her host uid, can neither read production's alice's private
// file nor signal her process.
func TestIntegrationTwoGateways(t *testing.T) {
	staging, production := startLab(t, ""), startLab(t, "")
	s, p := aliceInit(t, staging), aliceInit(t, production)
	if s.lo < p.hi && p.lo < s.hi {
		t.Fatalf("alice's ids: staging %d-%d, production %d-%d overlap", s.lo, s.hi-1, p.lo, p.hi-1)
	}
	if s.cgroup == p.cgroup || !strings.Contains(s.cgroup, "/"+staging.cgroup+"/alice/") ||
		!strings.Contains(p.cgroup, "/"+production.cgroup+"/alice/") {
		t.Errorf("alice's cgroups: staging %q, production %q; want each under its own gateway's prefix", s.cgroup, p.cgroup)
	}
	// The attack: production's alice keeps a private file and a process;
	// staging's alice, as her host root uid, goes after both.
	must(t, production.client(t, "alice"), "echo secret > /root/private; chmod 600 /root/private")
	private := filepath.Join(production.rootfs["alice"], "root/private")
	asStaging := func(name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(s.lo), Gid: uint32(s.lo)}}
		out, err := cmd.CombinedOutput()
		if err == nil {
			return nil
		}
		return fmt.Errorf("%v: %s", err, out)
	}
	if err := asStaging("cat", private); err == nil {
		t.Errorf("staging's alice (uid %d) read production's alice's private file", s.lo)
	}
	if err := asStaging("kill", "-0", strconv.Itoa(p.pid)); err == nil {
		t.Errorf("staging's alice (uid %d) can signal production's alice's init (pid %d)", s.lo, p.pid)
	}
}

// aliceEnv is what the host sees of alice's environment in one lab.
type aliceEnv struct {
	pid    int    // her init's host pid
	lo, hi uint64 // the host ids her uid_map maps to, [lo, hi)
	cgroup string // her init's pids cgroup, from /proc/<pid>/cgroup
}

// aliceInit starts alice's environment in l, held by a session until the
// test ends, and reads her init's uid_map and cgroup from the host.
func aliceInit(t *testing.T, l *lab) aliceEnv {
	t.Helper()
	hold, err := l.client(t, "alice").NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hold.Close() })
	out, _ := hold.StdoutPipe()
	if err := hold.Start("echo up; exec sleep 1000"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "up", 10*time.Second)
	envs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/pids", l.cgroup, "alice", "*"))
	for _, dir := range envs {
		pids, _ := jail.CgroupProcs(dir)
		for _, pid := range pids {
			status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if !strings.Contains(string(status), fmt.Sprintf("\nNSpid:\t%d\t1\n", pid)) {
				continue // not her init, pid 1 of her namespace
			}
			var e aliceEnv
			e.pid = pid
			m, _ := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
			var inside, size uint64
			if _, err := fmt.Sscan(string(m), &inside, &e.lo, &size); err != nil || inside != 0 {
				t.Fatalf("alice's init %d: uid_map %q", pid, m)
			}
			e.hi = e.lo + size
			cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
			for _, line := range strings.Split(string(cg), "\n") {
				if _, path, ok := strings.Cut(line, ":pids:"); ok {
					e.cgroup = path
				}
			}
			return e
		}
	}
	t.Fatalf("no init of alice's in the cgroups %v", envs)
	return aliceEnv{}
}

// TestCheckUIDBaseOverlapsPool: an explicit uid_base over a range the id
// pool already gave another tenant is a configuration error (exit 2) at
// her definition, for check as for serve and reload (issue 16 item 5: the
// pool did not check a later explicit uid_base against its ranges).
func TestCheckUIDBaseOverlapsPool(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	registry := filepath.Join(dir, "hostids.json")
	alice, err := jail.NewIDPool(state, jail.WithRegistry(registry)).Allocate("alice", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	// check reads this registry, not the host's, whose other state_dirs
	// (a bench, another test run) may hold the range past alice's.
	defer func(old string) { hostIDs = old }(hostIDs)
	hostIDs = registry
	path := filepath.Join(dir, "jailgate.yaml")
	write := func(base uint32) {
		os.WriteFile(path, []byte(fmt.Sprintf("state_dir: %s\nusers:\n  bob:\n    keys: [%q]\n    rootfs: %s\n    uid_base: %d\n",
			state, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a", dir, base)), 0o600)
	}
	write(alice + 1000)
	var out, errb bytes.Buffer
	code := run([]string{"check", "--config", path}, &out, &errb)
	want := fmt.Sprintf("%s:4: users.bob.uid_base: range %d-%d overlaps the range the id pool gave alice; "+
		"choose another uid_base, or 0 to allocate one\n", path, alice+1000, alice+1000+65535)
	if code != exitUsage || errb.String() != want {
		t.Errorf("check: exit %d, stderr %q; want exit %d and %q", code, errb.String(), exitUsage, want)
	}
	// Past her range, bob's explicit base is fine.
	write(alice + jail.DefaultSize)
	errb.Reset()
	if code := run([]string{"check", "--config", path}, &out, &errb); code != exitOK {
		t.Errorf("check with uid_base past alice's range: exit %d, %q", code, errb.String())
	}
}
