package config

// A tenant's limits, from YAML to text: the one place in config that
// knows each limit's key. Adding a limit means a field in jail.Limits, its
// key here (limitKeys, limits, LimitsText) and its enforcement in the jail.

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jailgate/jailgate/jail"
)

// limitKeys are the keys of a limits mapping.
var limitKeys = []string{"memory", "memory_swap", "pids", "cpu", "io_weight", "ptys"}

// limits decodes a limits mapping.
func (p *parser) limits(l *jail.Limits, n *yaml.Node, path string) {
	p.mapping(n, path, limitKeys, func(key string, v *yaml.Node) {
		field := join(path, key)
		s := p.str(v, field)
		switch key {
		case "memory", "memory_swap":
			size, err := ParseSize(s)
			if err != nil {
				p.add(p.at(v), field, "%q is not a size (use e.g. 512MiB)", s)
				return
			}
			if key == "memory" {
				l.Memory = size
			} else {
				l.MemorySwap = size
			}
		case "io_weight":
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 || n > 10000 {
				p.add(p.at(v), field, "%q is not a weight from 1 to 10000 (0: unset)", s)
				return
			}
			l.IOWeight = n
		case "pids", "ptys":
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				p.add(p.at(v), field, "%q is not a whole number >= 0", s)
				return
			}
			if key == "pids" {
				l.Pids = n
			} else {
				l.PTYs = n
			}
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
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}
