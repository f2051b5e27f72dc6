package config

import (
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// user applies the fields of mapping n onto u.
func (p *parser) user(u *User, n *yaml.Node, path string, isDefaults bool) {
	p.mapping(n, path, userKeys, func(key string, v *yaml.Node) {
		field := join(path, key)
		p.pos[field] = p.at(v)
		if isDefaults && contains(defaultBad, key) {
			p.add(p.at(v), field, "can only be set per user")
			return
		}
		if s := stringField(u, key); s != nil {
			*s = p.str(v, field)
		} else if d := durationField(u, key); d != nil {
			p.duration(d, v, field)
		} else {
			p.userField(u, key, v, field)
		}
	})
}

// stringField is u's plain string field named key, or nil.
func stringField(u *User, key string) *string {
	switch key {
	case "keys_file":
		return &u.KeysFile
	case "rootfs":
		return &u.Rootfs
	case "image":
		return &u.Image
	case "shell":
		return &u.Shell
	case "hostname":
		return &u.Hostname
	case "environment":
		return &u.Environment
	case "network":
		return &u.Network
	case "banner":
		return &u.Banner
	case "seccomp":
		return &u.Seccomp
	}
	return nil
}

// durationField is u's duration field named key, or nil.
func durationField(u *User, key string) *time.Duration {
	switch key {
	case "linger":
		return &u.Linger
	case "idle_timeout":
		return &u.IdleTimeout
	case "idle_grace":
		return &u.IdleGrace
	case "max_session_time":
		return &u.MaxSessionTime
	}
	return nil
}

// userField applies u's field key that is neither a string nor a duration.
func (p *parser) userField(u *User, key string, v *yaml.Node, field string) {
	switch key {
	case "keys":
		u.Keys = append(u.Keys, p.keyLines(v, field)...)
	case "max_sessions":
		p.count(&u.MaxSessions, v, field)
	case "record":
		p.bool(&u.Record, v, field)
	case "record_input":
		p.bool(&u.RecordInput, v, field)
	case "record_max_bytes":
		s := p.str(v, field)
		if n, err := ParseSize(s); err != nil {
			p.add(p.at(v), field, "%q is not a size (use e.g. 100MiB; 0: no cap)", s)
		} else {
			u.RecordMaxBytes = n
		}
	case "limits":
		p.limits(u, v, field)
	case "capabilities":
		u.Caps = p.caps(v, field)
	case "rlimits":
		p.rlimits(u, v, field)
	case "egress":
		p.egress(u, v, field)
	case "dns":
		p.dns(u, v, field)
	case "forwarding":
		p.mapping(v, field, []string{"local", "remote", "agent"}, func(key string, v *yaml.Node) {
			dst := &u.Forwarding.Agent
			switch key {
			case "local":
				dst = &u.Forwarding.Local
			case "remote":
				dst = &u.Forwarding.Remote
			}
			p.bool(dst, v, join(field, key))
		})
	case "id_range":
		if n, ok := p.uint(v, field); ok {
			if n < 1000 || n > 1<<24 {
				p.add(p.at(v), field, "must be between 1000 and 16777216")
			} else {
				u.IDRange = uint32(n)
			}
		}
	case "uid_base":
		if n, ok := p.uint(v, field); ok {
			if n != 0 && n < 65536 {
				p.add(p.at(v), field, "must be at least 65536, above the host's own users (or 0 to allocate)")
			} else {
				u.UIDBase = uint32(n)
			}
		}
	}
}

// bool parses a true or false scalar into *dst, which a bad value leaves
// alone.
func (p *parser) bool(dst *bool, n *yaml.Node, field string) {
	on, err := strconv.ParseBool(p.str(n, field))
	if err != nil {
		p.add(p.at(n), field, "%q is not true or false", n.Value)
		return
	}
	*dst = on
}
