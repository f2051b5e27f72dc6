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

	"golang.org/x/sys/unix"
)

// cgroupV2 drives a unified (v2) hierarchy.
type cgroupV2 struct {
	root, prefix string
}

func (m *cgroupV2) Version() string { return "v2" }

// enable turns on the controllers a limit needs in dir's subtree_control,
// with the fix in the message when the parent doesn't offer them.
func (m *cgroupV2) enable(dir string, ctrls []string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return err
	}
	have := strings.Fields(string(b))
	for _, c := range ctrls {
		if indexOf(have, c) < 0 {
			return fmt.Errorf("cgroup v2 controller %q is not available in %s; enable it in the parent's cgroup.subtree_control or unset the limit", c, dir)
		}
		if err := writeFile(dir, "cgroup.subtree_control", "+"+c); err != nil {
			return err
		}
	}
	return nil
}

// controllers lists the controllers l needs.
func (m *cgroupV2) controllers(l Limits) []string {
	var ctrls []string
	if l.Memory > 0 {
		ctrls = append(ctrls, "memory")
	}
	if l.Pids > 0 {
		ctrls = append(ctrls, "pids")
	}
	if l.CPU > 0 {
		ctrls = append(ctrls, "cpu")
	}
	if l.IOWeight > 0 {
		ctrls = append(ctrls, "io")
	}
	return ctrls
}

func (m *cgroupV2) Check(l Limits) error {
	b, err := os.ReadFile(filepath.Join(m.root, "cgroup.controllers"))
	if err != nil {
		return err
	}
	for _, c := range m.controllers(l) {
		if indexOf(strings.Fields(string(b)), c) < 0 {
			return fmt.Errorf("cgroup v2 controller %q is not available in %s; enable it in the parent's cgroup.subtree_control or unset the limit", c, m.root)
		}
	}
	return nil
}

func (m *cgroupV2) Create(tenant, env string, l Limits) (cgroupHandle, error) {
	return m.make(tenant, env, l, false)
}

func (m *cgroupV2) Open(tenant, env string, l Limits) (cgroupHandle, error) {
	return m.make(tenant, env, l, true)
}

// make writes the tenant's limits and makes the environment's cgroup, or
// finds it (exists: an adopted environment).
func (m *cgroupV2) make(tenant, env string, l Limits, exists bool) (cgroupHandle, error) {
	ctrls := m.controllers(l)
	base := filepath.Join(m.root, m.prefix)
	tdir := filepath.Join(base, tenant)
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	if err := m.enable(m.root, ctrls); err != nil {
		return nil, err
	}
	if err := m.enable(base, ctrls); err != nil {
		return nil, err
	}
	limits := [][2]string{{"memory.max", "max"}, {"pids.max", "max"}, {"cpu.max", "max 100000"},
		{"memory.swap.max", "max"}, {"io.weight", "default 100"}}
	if swap := swapOf(l); swap > 0 {
		limits[3][1] = strconv.FormatInt(swap, 10)
	}
	if l.IOWeight > 0 {
		limits[4][1] = "default " + strconv.FormatInt(min(l.IOWeight, 10000), 10)
	}
	if l.Memory > 0 {
		limits[0][1] = strconv.FormatInt(l.Memory, 10)
	}
	if l.Pids > 0 {
		limits[1][1] = strconv.FormatInt(l.Pids, 10)
	}
	if l.CPU > 0 {
		limits[2][1] = strconv.FormatInt(int64(l.CPU*100000), 10) + " 100000"
	}
	for _, kv := range limits {
		err := writeFile(tdir, kv[0], kv[1])
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	edir := filepath.Join(tdir, env)
	if exists {
		if _, err := os.Stat(edir); err != nil {
			return nil, fmt.Errorf("open cgroup: %w", err)
		}
	} else if err := os.Mkdir(edir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	return &v2Handle{dir: edir}, nil
}

// Place: v2 has no rename (cgroup2 has none), so the init migrates into
// a new env cgroup under hers (moveSlot), then her limits are written.
func (m *cgroupV2) Place(slot, tenant, env string, pid int, l Limits) (cgroupHandle, error) {
	if _, err := moveSlot(filepath.Join(m.root, m.prefix), slot, tenant, env, pid, false); err != nil {
		return nil, err
	}
	return m.make(tenant, env, l, true)
}

func (m *cgroupV2) RemoveSlot(slot string) {
	if slot != "" {
		os.Remove(filepath.Join(m.root, m.prefix, slot))
	}
}

func (m *cgroupV2) Sweep(keep map[string]bool) error {
	var errs []error
	for _, d := range staleEnvDirs(filepath.Join(m.root, m.prefix), keep) {
		errs = append(errs, (&v2Handle{dir: d}).Destroy())
	}
	return errors.Join(errs...)
}

func (m *cgroupV2) Release() { removeEmpty(filepath.Join(m.root, m.prefix)) }

// v2Handle is one environment's cgroup directory.
type v2Handle struct {
	dir string
}

// OOMKills reads memory.events, which counts the cgroup's subtree.
func (h *v2Handle) OOMKills() int { return readCounter(h.dir, "memory.events", "oom_kill") }

// Start starts cmd with CLONE_INTO_CGROUP, so the init runs inside the
// cgroup from its first instruction and its cgroup namespace is rooted there.
func (h *v2Handle) Start(cmd *exec.Cmd) error {
	fd, err := unix.Open(h.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open cgroup: %w", err)
	}
	defer unix.Close(fd)
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = fd
	return cmd.Start()
}

// Adopt has nothing to do: Start's CLONE_INTO_CGROUP put the process in.
func (h *v2Handle) Adopt(int) error { return nil }

func (h *v2Handle) Destroy() error {
	return removeCgroup(h.dir, func() error {
		if err := writeFile(h.dir, "cgroup.kill", "1"); err != nil {
			return killPids(h.dir)
		}
		return nil
	})
}

// newCgroups picks the hierarchy /sys/fs/cgroup holds.
func newCgroups(root, prefix string) (cgroupManager, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return noCgroups{}, nil
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return &cgroupV2{root: root, prefix: prefix}, nil
	}
	v1, err := newCgroupV1(root, prefix)
	if err != nil {
		return nil, err
	}
	if len(v1.mounts) == 0 {
		return noCgroups{}, nil
	}
	return v1, nil
}
