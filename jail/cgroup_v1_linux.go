package jail

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// v1Controllers are the controllers jailgate uses on a v1 hierarchy.
var v1Controllers = []string{"memory", "pids", "cpu", "cpuacct", "freezer", "blkio"}

// cgroupV1 drives the per-controller v1 hierarchies (also hybrid hosts,
// where the controllers are v1 and /sys/fs/cgroup/unified has none).
type cgroupV1 struct {
	prefix string
	mounts map[string]string // controller -> mount point
}

// newCgroupV1 finds the v1 controllers' mount points in mountinfo.
func newCgroupV1(root, prefix string) (*cgroupV1, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := &cgroupV1{prefix: prefix, mounts: map[string]string{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 98:0 / /sys/fs/cgroup/pids rw,relatime shared:5 - cgroup cgroup rw,pids
		fields := strings.Fields(sc.Text())
		i := indexOf(fields, "-")
		if i < 0 || i+3 >= len(fields) || fields[i+1] != "cgroup" || !strings.HasPrefix(fields[4], root) {
			continue
		}
		for _, opt := range strings.Split(fields[i+3], ",") {
			for _, c := range v1Controllers {
				if opt == c {
					m.mounts[c] = fields[4]
				}
			}
		}
	}
	return m, sc.Err()
}

// indexOf returns the index of s in list, or -1.
func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func (m *cgroupV1) Version() string { return "v1" }

// need fails with the fix when a limit needs a controller that is missing.
func (m *cgroupV1) need(ctrl, field string) error {
	if _, ok := m.mounts[ctrl]; ok {
		return nil
	}
	return fmt.Errorf("cgroup v1 controller %q not mounted under /sys/fs/cgroup; mount it or set limits.%s: 0", ctrl, field)
}

func (m *cgroupV1) Check(l Limits) error {
	needs := []struct {
		set         bool
		ctrl, field string
	}{{l.Memory > 0, "memory", "memory"}, {l.Pids > 0, "pids", "pids"}, {l.CPU > 0, "cpu", "cpu"},
		{l.IOWeight > 0, "blkio", "io_weight"}}
	for _, n := range needs {
		if n.set {
			if err := m.need(n.ctrl, n.field); err != nil {
				return err
			}
		}
	}
	if mnt, ok := m.mounts["memory"]; ok && l.Memory > 0 && l.MemorySwap > 0 {
		// An explicit memory_swap needs swap accounting; the default
		// (SwapAsMemory) is applied only where there is some.
		if _, err := os.Stat(filepath.Join(mnt, "memory.memsw.limit_in_bytes")); err != nil {
			return fmt.Errorf("limits.memory_swap needs swap accounting (memory.memsw.*: boot with swapaccount=1) or leave memory_swap unset: %w", err)
		}
	}
	return nil
}

func (m *cgroupV1) Create(tenant, env string, l Limits) (cgroupHandle, error) {
	return m.make(tenant, env, l, false)
}

func (m *cgroupV1) Open(tenant, env string, l Limits) (cgroupHandle, error) {
	return m.make(tenant, env, l, true)
}

// make writes the tenant's limits and makes the environment's cgroup, or
// finds it (exists: an adopted environment).
func (m *cgroupV1) make(tenant, env string, l Limits, exists bool) (cgroupHandle, error) {
	if err := m.Check(l); err != nil {
		return nil, err
	}
	h := &v1Handle{}
	for _, ctrl := range v1Controllers {
		mnt, ok := m.mounts[ctrl]
		if !ok {
			continue
		}
		tdir := filepath.Join(mnt, m.prefix, tenant)
		if err := os.MkdirAll(tdir, 0o755); err != nil {
			return nil, fmt.Errorf("create cgroup: %w", err)
		}
		if err := writeV1Limits(ctrl, tdir, l); err != nil {
			return nil, err
		}
		edir := filepath.Join(tdir, env)
		if exists {
			if _, err := os.Stat(edir); err != nil {
				return nil, fmt.Errorf("open cgroup: %w", err)
			}
		} else if err := os.Mkdir(edir, 0o755); err != nil {
			return nil, fmt.Errorf("create cgroup: %w", err)
		}
		h.dirs = append(h.dirs, edir)
		h.name(ctrl, edir)
	}
	return h, nil
}

func (m *cgroupV1) Place(slot, tenant, env string, pid int, l Limits) (cgroupHandle, error) {
	if err := m.Check(l); err != nil {
		return nil, err
	}
	h := &v1Handle{}
	moved := map[string]string{} // mount point → env dir: co-mounted controllers (cpu,cpuacct) share one
	for _, ctrl := range v1Controllers {
		mnt, ok := m.mounts[ctrl]
		if !ok {
			continue
		}
		edir, ok := moved[mnt]
		if !ok {
			var err error
			if edir, err = moveSlot(filepath.Join(mnt, m.prefix), slot, tenant, env, pid, true); err != nil {
				return nil, err
			}
			moved[mnt] = edir
			h.dirs = append(h.dirs, edir)
		}
		if err := writeV1Limits(ctrl, filepath.Dir(edir), l); err != nil {
			return nil, err
		}
		h.name(ctrl, edir)
	}
	return h, nil
}

func (m *cgroupV1) RemoveSlot(slot string) {
	if slot == "" {
		return
	}
	for _, mnt := range m.mounts {
		os.Remove(filepath.Join(mnt, m.prefix, slot))
	}
}

// writeV1Limits writes the limits a controller enforces; 0 clears them.
func writeV1Limits(ctrl, dir string, l Limits) error {
	switch ctrl {
	case "memory":
		v, sw := "-1", "-1"
		if l.Memory > 0 {
			v = strconv.FormatInt(l.Memory, 10)
			if swap := swapOf(l); swap > 0 {
				sw = strconv.FormatInt(l.Memory+swap, 10)
			}
		}
		// memsw must stay >= the memory limit: lower it first when shrinking.
		writeFile(dir, "memory.memsw.limit_in_bytes", "-1")
		if err := writeFile(dir, "memory.limit_in_bytes", v); err != nil {
			return err
		}
		if err := writeFile(dir, "memory.memsw.limit_in_bytes", sw); err != nil && l.MemorySwap > 0 {
			return fmt.Errorf("memory_swap needs swap accounting (memory.memsw.*, kernel swapaccount=1): %w", err)
		}
		return nil
	case "blkio":
		if l.IOWeight <= 0 {
			return nil
		}
		// v1 weights run 10-1000; the config's 1-10000 scale is v2's.
		w := min(max(l.IOWeight/10, 10), 1000)
		if err := writeFile(dir, "blkio.weight", strconv.FormatInt(w, 10)); err != nil {
			return fmt.Errorf("io_weight needs blkio.weight (the BFQ or CFQ I/O scheduler): %w", err)
		}
		return nil
	case "pids":
		v := "max"
		if l.Pids > 0 {
			v = strconv.FormatInt(l.Pids, 10)
		}
		return writeFile(dir, "pids.max", v)
	case "cpu":
		const period = 100000
		quota := "-1"
		if l.CPU > 0 {
			quota = strconv.FormatInt(int64(l.CPU*period), 10)
		}
		if err := writeFile(dir, "cpu.cfs_period_us", strconv.Itoa(period)); err != nil {
			return err
		}
		return writeFile(dir, "cpu.cfs_quota_us", quota)
	}
	return nil
}

func (m *cgroupV1) Sweep(keep map[string]bool) error {
	var errs []error
	for _, mnt := range m.mounts {
		for _, d := range staleEnvDirs(filepath.Join(mnt, m.prefix), keep) {
			errs = append(errs, removeCgroup(d, func() error { return killPids(d) }))
		}
	}
	return errors.Join(errs...)
}

func (m *cgroupV1) Release() {
	for _, mnt := range m.mounts {
		removeEmpty(filepath.Join(mnt, m.prefix))
	}
}

// v1Handle is one environment's directory in each v1 controller.
type v1Handle struct {
	dirs    []string // the environment's dir per controller
	freezer string
	memory  string // the environment's memory cgroup, if mounted
}

// name notes the env dir of the controllers a handle reads or writes.
func (h *v1Handle) name(ctrl, edir string) {
	switch ctrl {
	case "freezer":
		h.freezer = edir
	case "memory":
		h.memory = edir
	}
}

// OOMKills counts OOM kills in the environment's memory cgroup and in the
// tenant's, where the limit sits.
func (h *v1Handle) OOMKills() int {
	if h.memory == "" {
		return 0
	}
	return readCounter(h.memory, "memory.oom_control", "oom_kill") +
		readCounter(filepath.Dir(h.memory), "memory.oom_control", "oom_kill")
}

// Start starts cmd where the gateway is; Adopt then moves it in, before
// it clones the init (v1 has no CLONE_INTO_CGROUP). Until this change a
// gateway thread joined her cgroups for the clone, so her CPU quota could
// stall that thread while it held the fork lock of the whole gateway
// (issue 16, item 6).
func (h *v1Handle) Start(cmd *exec.Cmd) error { return cmd.Start() }

// Adopt moves process pid, and all its threads, into the environment's
// cgroups (cgroup.procs).
func (h *v1Handle) Adopt(pid int) error {
	for _, d := range h.dirs {
		if err := writeFile(d, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

func (h *v1Handle) Destroy() error {
	var errs []error
	kill := func() error {
		if h.freezer != "" {
			writeFile(h.freezer, "freezer.state", "FROZEN")
			defer writeFile(h.freezer, "freezer.state", "THAWED")
		}
		for _, d := range h.dirs {
			killPids(d)
		}
		return nil
	}
	for _, d := range h.dirs {
		errs = append(errs, removeCgroup(d, kill))
	}
	return errors.Join(errs...)
}

// killPids sends SIGKILL to every process listed in dir's cgroup.procs.
func killPids(dir string) error {
	pids, err := CgroupProcs(dir)
	for _, p := range pids {
		if p != os.Getpid() { // never the gateway itself
			unix.Kill(p, unix.SIGKILL)
		}
	}
	return err
}

// processExists reports whether pid names a live process.
func processExists(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
