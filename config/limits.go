package config

// A tenant's limits, from YAML to text: the one place in config that
// knows each limit's key. Adding a limit means a field in jail.Limits, its
// key here (limitKeys, limits, LimitsText, resolveLimits) and its
// enforcement in the jail.

import (
	"fmt"
	"maps"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jailgate/jailgate/jail"
)

// limitKeys are the keys of a limits mapping.
var limitKeys = []string{"memory", "memory_swap", "pids", "cpu", "io_weight", "ptys", "tmp",
	"disk", "inodes", "net_rate", "connections"}

// Safe defaults, for a config that says nothing about limits (issue 16):
// bounds that keep the host alive when one tenant forks or allocates
// without end. `limits: unlimited` is the explicit opt-out.
const (
	// DefaultPids bounds a fork bomb well below the host's pid_max.
	DefaultPids = 1024
	// DefaultPTYs is her own terminal pool, so that no tenant can take the
	// kernel's one pool (kernel.pty.max) from the others; 64 is far more
	// than one person's terminals, tmux panes included.
	DefaultPTYs = 64
	// DefaultTmp sizes /tmp and /dev/shm when she has no memory limit;
	// with one, each is as large as it (issue 19: tmpfs pages count
	// against her memory, so the limit that binds is the memory's).
	DefaultTmp = 1 << 30
)

// hostMemory is the host's RAM in bytes (0 where unknown); a variable for
// tests.
var hostMemory = hostRAM

// limits decodes a limits mapping, or the scalar "unlimited" (every limit
// off, the explicit opt-out of the defaults), onto u's limits, recording
// for each key the layer it came from.
func (p *parser) limits(u *User, n *yaml.Node, path string) {
	origin := strings.TrimSuffix(path, ".limits")
	if origin == "defaults" {
		origin = "defaults:"
	}
	u.LimitsFrom = maps.Clone(u.LimitsFrom) // the defaults' map is shared until here
	if u.LimitsFrom == nil {
		u.LimitsFrom = map[string]string{}
	}
	if n.Kind == yaml.ScalarNode && n.Value == "unlimited" {
		u.Limits, u.Disk = jail.Limits{}, Disk{}
		for _, k := range limitKeys {
			u.LimitsFrom[k] = origin + " (unlimited)"
		}
		return
	}
	l := &u.Limits
	p.mapping(n, path, limitKeys, func(key string, v *yaml.Node) {
		field := join(path, key)
		p.pos[field] = p.at(v)
		if key == "disk" || (key == "inodes" && u.DiskPos.Line == 0) {
			u.DiskPos = p.at(v)
		}
		s := p.str(v, field)
		u.LimitsFrom[key] = origin
		switch key {
		case "memory", "memory_swap", "tmp", "disk":
			size, err := ParseSize(s)
			if err != nil {
				p.add(p.at(v), field, "%q is not a size (use e.g. 512MiB)", s)
				return
			}
			*map[string]*int64{"memory": &l.Memory, "memory_swap": &l.MemorySwap, "tmp": &l.Tmp, "disk": &u.Disk.Bytes}[key] = size
		case "io_weight":
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 || n > 10000 {
				p.add(p.at(v), field, "%q is not a weight from 1 to 10000 (0: unset)", s)
				return
			}
			l.IOWeight = n
		case "pids", "ptys", "inodes", "connections":
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				p.add(p.at(v), field, "%q is not a whole number >= 0", s)
				return
			}
			*map[string]*int64{"pids": &l.Pids, "ptys": &l.PTYs, "inodes": &u.Disk.Inodes, "connections": &l.Connections}[key] = n
		case "net_rate":
			r, err := ParseRate(s)
			if err != nil || r > 0 && r < 8000 {
				p.add(p.at(v), field, "%q is not a rate of at least 8Kbit (use e.g. 100Mbit; 0bit: unlimited)", s)
				return
			}
			l.NetRate = r
		case "cpu":
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || f < 0 || f != f {
				p.add(p.at(v), field, "%q is not a number of CPUs >= 0 (use e.g. 1.5)", s)
				return
			}
			l.CPU = f
		}
	})
}

// resolveLimits fills the limits no layer of u's config set with the safe
// defaults, in order (swap and tmp follow memory), and records them as
// "default…" in LimitsFrom. Memory is read from this host when the config
// loads: the host that serves it is the host it protects, and `explain`
// then shows the number in force.
func resolveLimits(u *User) {
	from := maps.Clone(u.LimitsFrom)
	if from == nil {
		from = map[string]string{}
	}
	l := &u.Limits
	def := func(key, why string, set func()) {
		if _, ok := from[key]; !ok {
			set()
			from[key] = "default" + why
		}
	}
	def("pids", "", func() { l.Pids = DefaultPids })
	def("memory", ": half of this host's RAM", func() { l.Memory = hostMemory() / 2 })
	def("memory_swap", ": as much as memory", func() { l.SwapAsMemory = l.Memory > 0 })
	if l.Memory > 0 {
		def("tmp", ": as much as memory", func() { l.Tmp = l.Memory })
	}
	def("tmp", "", func() { l.Tmp = DefaultTmp })
	def("ptys", "", func() { l.PTYs = DefaultPTYs })
	def("cpu", ": an equal share", func() {})
	def("io_weight", ": an equal share", func() {})
	def("disk", ": unlimited", func() {}) // no safe default: her disk is the operator's choice
	def("inodes", ": unlimited", func() {})
	def("net_rate", ": unlimited", func() {})
	def("connections", ": unlimited", func() {})
	u.LimitsFrom = from
}

// DiskText renders the disk limits that are set ("disk=64MiB
// inodes=3000"), or "" when both are unlimited.
func DiskText(d Disk) string {
	var parts []string
	if d.Bytes > 0 {
		parts = append(parts, "disk="+FormatSize(d.Bytes))
	}
	if d.Inodes > 0 {
		parts = append(parts, "inodes="+fmt.Sprint(d.Inodes))
	}
	return strings.Join(parts, " ")
}

// AllLimitsText is LimitsText with u's disk limits after it.
func (u *User) AllLimitsText() string {
	s, d := LimitsText(u.Limits), DiskText(u.Disk)
	switch {
	case d == "":
		return s
	case s == "none":
		return d
	}
	return s + " " + d
}

// LimitsText renders the limits that are set, by their keys ("memory=512MiB
// pids=256"), or "none" when every one is unlimited: for `check`'s summary
// and `explain`.
func LimitsText(l jail.Limits) string {
	var parts []string
	add := func(key, v string) { parts = append(parts, key+"="+v) }
	if l.Memory > 0 {
		add("memory", FormatSize(l.Memory))
	}
	if l.MemorySwap > 0 {
		add("memory_swap", FormatSize(l.MemorySwap))
	} else if l.SwapAsMemory && l.Memory > 0 {
		add("memory_swap", "as-memory")
	}
	if l.Pids > 0 {
		add("pids", fmt.Sprint(l.Pids))
	}
	if l.CPU > 0 {
		add("cpu", strconv.FormatFloat(l.CPU, 'g', -1, 64))
	}
	if l.IOWeight > 0 {
		add("io_weight", fmt.Sprint(l.IOWeight))
	}
	if l.PTYs > 0 {
		add("ptys", fmt.Sprint(l.PTYs))
	}
	if l.Tmp > 0 {
		add("tmp", FormatSize(l.Tmp))
	}
	if l.NetRate > 0 {
		add("net_rate", FormatRate(l.NetRate))
	}
	if l.Connections > 0 {
		add("connections", fmt.Sprint(l.Connections))
	}

	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}
