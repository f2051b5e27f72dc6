package jail

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// TenantStats reads tenant's resource use from the cgroups of the
// hierarchy this host has, under the default prefix unless one is given.
func TenantStats(tenant, prefix string) (Stats, error) {
	if prefix == "" {
		prefix = "jailgate"
	}
	m, err := newCgroups("/sys/fs/cgroup", prefix)
	if err != nil {
		return Stats{}, err
	}
	switch m := m.(type) {
	case *cgroupV1:
		return m.stats(tenant), nil
	case *cgroupV2:
		return m.stats(tenant), nil
	}
	return Stats{}, nil
}

// readValue reads a one-value cgroup file; "max" and errors read as -1.
func readValue(dir, file string) int64 {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(strings.Fields(string(b) + " max")[0], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// countDirs counts the subdirectories of dir.
func countDirs(dir string) int {
	ents, _ := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		if e.IsDir() {
			n++
		}
	}
	return n
}

func (m *cgroupV1) stats(tenant string) Stats {
	dir := func(ctrl string) string { return filepath.Join(m.mounts[ctrl], m.prefix, tenant) }
	st := Stats{
		Environments: countDirs(dir("pids")),
		MemoryBytes:  max(readValue(dir("memory"), "memory.usage_in_bytes"), 0),
		MemoryMax:    readValue(dir("memory"), "memory.limit_in_bytes"),
		Pids:         max(readValue(dir("pids"), "pids.current"), 0),
		PidsMax:      readValue(dir("pids"), "pids.max"),
		CPUNanos:     max(readValue(dir("cpuacct"), "cpuacct.usage"), 0),
		OOMKills:     readCounter(dir("memory"), "memory.oom_control", "oom_kill"),
	}
	if st.MemoryMax >= 1<<62 { // v1 says "unlimited" with a huge number
		st.MemoryMax = -1
	}
	return st
}

func (m *cgroupV2) stats(tenant string) Stats {
	dir := filepath.Join(m.root, m.prefix, tenant)
	return Stats{
		Environments: countDirs(dir),
		MemoryBytes:  max(readValue(dir, "memory.current"), 0),
		MemoryMax:    readValue(dir, "memory.max"),
		Pids:         max(readValue(dir, "pids.current"), 0),
		PidsMax:      readValue(dir, "pids.max"),
		CPUNanos:     int64(readCounter(dir, "cpu.stat", "usage_usec")) * 1000,
		OOMKills:     readCounter(dir, "memory.events", "oom_kill"),
	}
}
