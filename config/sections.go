package config

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jailgate/jailgate/jail"
	"gopkg.in/yaml.v3"
)

// server decodes the server section.
func (p *parser) server(sv *Server, n *yaml.Node, path string) {
	p.mapping(n, path, serverKeys, func(key string, v *yaml.Node) {
		field := join(path, key)
		p.pos[field] = p.at(v)
		switch key {
		case "login_grace_time":
			p.duration(&sv.LoginGraceTime, v, field)
		case "client_alive_interval":
			p.duration(&sv.ClientAliveInterval, v, field)
		case "shutdown_grace":
			p.duration(&sv.ShutdownGrace, v, field)
		case "per_source_penalty":
			p.duration(&sv.PerSourcePenalty, v, field)
			sv.penaltySet = true
		case "per_source_penalty_exempt":
			if v.Kind != yaml.SequenceNode {
				p.add(p.at(v), field, "must be a list of CIDRs, e.g. [10.0.0.0/8]")
				return
			}
			for i, item := range v.Content {
				cidr := p.str(item, fmt.Sprintf("%s[%d]", field, i))
				if _, _, err := net.ParseCIDR(cidr); err != nil {
					p.add(p.at(item), fmt.Sprintf("%s[%d]", field, i), "%q is not a CIDR block", cidr)
					continue
				}
				sv.PerSourcePenaltyExempt = append(sv.PerSourcePenaltyExempt, cidr)
			}
		case "kex":
			p.algorithms(&sv.Kex, v, field, key)
		case "ciphers":
			p.algorithms(&sv.Ciphers, v, field, key)
		case "macs":
			p.algorithms(&sv.MACs, v, field, key)
		case "max_auth_tries":
			p.count(&sv.MaxAuthTries, v, field)
		case "max_startups":
			p.count(&sv.MaxStartups, v, field)
		case "per_source_max_startups":
			p.count(&sv.PerSourceMaxStartups, v, field)
		case "max_connections":
			p.count(&sv.MaxConnections, v, field)
		case "max_channels":
			p.mapping(v, field, []string{"sessions", "forwards"}, func(key string, v *yaml.Node) {
				p.pos[join(field, key)] = p.at(v)
				if key == "sessions" {
					p.count(&sv.MaxChannels.Sessions, v, join(field, key))
				} else {
					p.count(&sv.MaxChannels.Forwards, v, join(field, key))
				}
			})
		case "max_tenant_channels":
			p.count(&sv.MaxTenantChannels, v, field)
		case "client_alive_count_max":
			p.count(&sv.ClientAliveCountMax, v, field)
		}
	})
}

// duration decodes a non-negative Go duration ("30s", "5m", "0").
func (p *parser) duration(d *time.Duration, v *yaml.Node, field string) {
	s := p.str(v, field)
	got, err := time.ParseDuration(s)
	if s == "0" {
		got, err = 0, nil
	}
	switch {
	case err != nil:
		p.add(p.at(v), field, "%q is not a duration (use e.g. 30s or 5m)", s)
	case got < 0:
		p.add(p.at(v), field, "must not be negative")
	default:
		*d = got
	}
}

// count decodes a whole number >= 0.
func (p *parser) count(n *int, v *yaml.Node, field string) {
	if x, ok := p.uint(v, field); ok {
		*n = int(x)
	}
}

// rlimits decodes an rlimits mapping onto the defaults (a copy, so a
// tenant's entries never leak into the defaults of the next one).
func (p *parser) rlimits(u *User, n *yaml.Node, path string) {
	m := map[string]uint64{}
	for k, v := range u.Rlimits {
		m[k] = v
	}
	p.mapping(n, path, jail.RlimitNames, func(key string, v *yaml.Node) {
		if n, ok := p.uint64(v, join(path, key)); ok {
			m[key] = n
		}
	})
	u.Rlimits = m
}

// caps decodes a list of capability names ("CAP_CHOWN" or "chown").
func (p *parser) caps(n *yaml.Node, field string) []string {
	if n.Kind != yaml.SequenceNode {
		p.add(p.at(n), field, "must be a list of capability names, e.g. [CAP_CHOWN, CAP_KILL]")
		return nil
	}
	out := []string{}
	for i, item := range n.Content {
		name := strings.ToUpper(p.str(item, fmt.Sprintf("%s[%d]", field, i)))
		if !strings.HasPrefix(name, "CAP_") {
			name = "CAP_" + name
		}
		if !contains(jail.CapabilityNames, name) {
			p.add(p.at(item), fmt.Sprintf("%s[%d]", field, i), "%q is not a capability (see capabilities(7))", item.Value)
			continue
		}
		out = append(out, name)
	}
	return out
}
