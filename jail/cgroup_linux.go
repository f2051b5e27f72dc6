package jail

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cgroupManager creates, fills and removes environments' cgroups. There is
// one implementation per hierarchy (cgroup_v1_linux.go, cgroup_v2_linux.go),
// picked at start by what /sys/fs/cgroup is.
//
// Layout: <prefix>/<tenant> holds the tenant's limits, shared by all her
// environments; <prefix>/<tenant>/<env> holds one environment's processes.
// A pool blank is born in <prefix>/<slot>/<env> (poolSlot: a name no
// tenant can have) with poolLimits, and placed in hers at her login.
type cgroupManager interface {
	// Version names the hierarchy for logs: "v1", "v2" or "none".
	Version() string
	// Create makes the environment's cgroup and writes the tenant's limits.
	Create(tenant, env string, l Limits) (cgroupHandle, error)
	// Open returns a live environment's existing cgroup (an adopted one)
	// and writes the tenant's limits as now configured.
	Open(tenant, env string, l Limits) (cgroupHandle, error)
	// Sweep kills and removes environment cgroups left behind by a crash,
	// except those named in keep: live environments a gateway adopts.
	Sweep(keep map[string]bool) error
	// Release removes the tenant cgroups left empty and the prefix, if
	// empty, when the gateway ends: a prefix is per state_dir (and per
	// test), so nothing else would remove it.
	Release()
	// Check says precisely what is missing to enforce l, or nil.
	Check(l Limits) error
	// Place moves a pool blank's init (pid, born in <slot>/<env>) to
	// <tenant>/<env> and writes her limits: moveSlot.
	Place(slot, tenant, env string, pid int, l Limits) (cgroupHandle, error)
	// RemoveSlot removes a pool slot's cgroup once its environment's is
	// gone; "" and a slot already renamed are nothing to do.
	RemoveSlot(slot string)
}

// cgroupHandle is one environment's cgroup.
type cgroupHandle interface {
	// Start starts cmd: inside the cgroup from its first instruction where
	// the kernel can (v2), else where the gateway is, for Adopt to move in.
	Start(cmd *exec.Cmd) error
	// Adopt moves the process Start started into the cgroup, if Start could
	// not; it must be done before the process clones the init, whose
	// cgroup namespace is rooted where it is born.
	Adopt(pid int) error
	// Destroy kills what is left inside and removes the cgroup.
	Destroy() error
	// OOMKills counts the processes the memory limit killed so far.
	OOMKills() int
}

// writeFile writes one value into a cgroup control file.
func writeFile(dir, name, value string) error {
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", value, p, err)
	}
	return nil
}

// CgroupProcs lists the processes in cgroup dir (its cgroup.procs file).
func CgroupProcs(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids, nil
}

// removeCgroup removes dir, retrying while its last processes exit.
func removeCgroup(dir string, kill func() error) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		// Removal first: an environment's cgroup is normally empty by now
		// (killing its init ended its pid namespace), and kill's freeze
		// costs the kernel a text patch (the freezer's static key) each
		// time: 1-2 ms of every cold login's CPU.
		err := os.Remove(dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup: %w", err)
		}
		if kill != nil {
			kill()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noCgroups is used where no cgroup hierarchy is usable and no limit is set.
type noCgroups struct{}

func (noCgroups) Version() string             { return "none" }
func (noCgroups) Sweep(map[string]bool) error { return nil }
func (noCgroups) Release()                    {}
func (noCgroups) RemoveSlot(string)           {}
func (n noCgroups) Place(_, tenant, env string, _ int, l Limits) (cgroupHandle, error) {
	return n.Create(tenant, env, l)
}
func (noCgroups) Check(l Limits) error {
	if l != (Limits{}) {
		return fmt.Errorf("no usable cgroup hierarchy under /sys/fs/cgroup; mount one or unset limits")
	}
	return nil
}
func (n noCgroups) Open(tenant, env string, l Limits) (cgroupHandle, error) {
	return n.Create(tenant, env, l)
}

func (n noCgroups) Create(tenant, _ string, l Limits) (cgroupHandle, error) {
	if err := n.Check(l); err != nil {
		return nil, fmt.Errorf("cgroup for %s: %w", tenant, err)
	}
	return noHandle{}, nil
}

type noHandle struct{}

func (noHandle) Start(cmd *exec.Cmd) error { return cmd.Start() }
func (noHandle) Adopt(int) error           { return nil }
func (noHandle) Destroy() error            { return nil }
func (noHandle) OOMKills() int             { return 0 }

// envName names a new environment's cgroup: the gateway's pid first, so
// that Sweep can tell a crashed gateway's leftovers from a live one's.
func envName(now time.Time, rnd string) string {
	return fmt.Sprintf("%d-%d-%s", os.Getpid(), now.Unix(), rnd)
}

// stale reports whether an environment cgroup belongs to no running
// gateway: its creator pid is gone (or it is unparseable). A second
// gateway on the same host, or a test binary beside a demo, keeps its own.
func stale(name string) bool {
	pidStr, _, ok := strings.Cut(name, "-")
	pid, err := strconv.Atoi(pidStr)
	if !ok || err != nil || pid <= 0 {
		return true
	}
	if pid == os.Getpid() {
		return true
	}
	return !processExists(pid)
}

// readCounter reads "key N" from a flat-keyed cgroup file such as
// memory.events or memory.oom_control; a missing file or key reads 0.
func readCounter(dir, file, key string) int {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// removeEmpty removes the tenant cgroups under base that have no
// environment left, then base if it is empty. rmdir(2) refuses a cgroup
// with children or processes (EBUSY), so a live one stays.
func removeEmpty(base string) {
	tenants, _ := os.ReadDir(base)
	for _, t := range tenants {
		if t.IsDir() {
			os.Remove(filepath.Join(base, t.Name()))
		}
	}
	os.Remove(base)
}

// staleEnvDirs lists the environment cgroups under base (one dir per
// tenant, one per environment below it) that belong to no running gateway.
func staleEnvDirs(base string, keep map[string]bool) []string {
	tenants, _ := os.ReadDir(base)
	var dirs []string
	for _, t := range tenants {
		if !t.IsDir() {
			continue
		}
		envs, _ := os.ReadDir(filepath.Join(base, t.Name()))
		for _, e := range envs {
			if e.IsDir() && !keep[e.Name()] && stale(e.Name()) {
				dirs = append(dirs, filepath.Join(base, t.Name(), e.Name()))
			}
		}
	}
	return dirs
}

// swapOf is the swap an environment with limits l may use beyond its
// memory: MemorySwap, or Memory again with SwapAsMemory; 0 is unlimited.
// Only an explicit MemorySwap makes a host without swap accounting an
// error (writeV1Limits); v2 always accounts swap where it has a swap file.
func swapOf(l Limits) int64 {
	if l.MemorySwap == 0 && l.SwapAsMemory {
		return l.Memory
	}
	return l.MemorySwap
}

// poolSlot names the cgroup of the pool's n-th blank: the dot keeps it out
// of every tenant's name (config: [a-z_][a-z0-9_-]*).
func poolSlot(n uint64) string { return fmt.Sprintf("pool.%d", n) }

// placeMu orders the moves of tenant cgroups (moveSlot) against each
// other: two of her logins at once must not both take her tenant cgroup
// for absent, nor one remove it empty while the other creates in it.
var placeMu sync.Mutex

// moveSlot moves a pool blank's init from base/slot/env to
// base/tenant/env, in one hierarchy, and returns the new env dir. When she
// has no tenant cgroup (no other environment: the usual cold login), the
// slot is renamed to hers: the init stays where it is, and no process is
// migrated, which on v1 costs a write lock on every fork of the host and
// an RCU grace period (cgroup_threadgroup_rwsem). Rename exists only
// within one parent, and only on v1 (cgroup1_rename); otherwise the init
// joins a new env cgroup under hers and the slot is removed.
func moveSlot(base, slot, tenant, env string, pid int, rename bool) (string, error) {
	sdir, tdir := filepath.Join(base, slot), filepath.Join(base, tenant)
	edir := filepath.Join(tdir, env)
	placeMu.Lock()
	if rename {
		err := os.Rename(sdir, tdir)
		if err != nil && os.Remove(tdir) == nil { // empty, left by her last environment
			err = os.Rename(sdir, tdir)
		}
		if err == nil {
			placeMu.Unlock()
			return edir, nil
		}
	}
	err := os.Mkdir(tdir, 0o755)
	if err == nil || errors.Is(err, fs.ErrExist) {
		err = os.Mkdir(edir, 0o755)
	}
	placeMu.Unlock()
	if err != nil {
		return "", fmt.Errorf("create cgroup: %w", err)
	}
	if err := writeFile(edir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
		os.Remove(edir)
		return "", err
	}
	removeCgroup(filepath.Join(sdir, env), nil)
	os.Remove(sdir)
	return edir, nil
}
