package config

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jailgate/jailgate/keys"
)

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes, completes and validates a configuration. name is the file
// it came from (for messages, and to resolve relative keys_file paths). It
// returns every problem at once, each a *Error, joined.
func Parse(name string, data []byte) (*Config, error) {
	p := &parser{file: name, problems: problems{file: name}, pos: map[string]Pos{}}
	c := p.parse(data)
	if err := p.err(); err != nil {
		return nil, err
	}
	c.Warnings = p.warnings
	return c, nil
}

// parser walks the YAML node tree, so that every key is known (strict
// decoding) and every value keeps its position for the messages.
type parser struct {
	file string
	problems
	pos       map[string]Pos // field path -> where its value was written
	haveCAs   bool           // trusted_user_ca_keys is set
	stateDir  string         // where images live
	diskQuota string         // disk_quota, for the tenants' disk limits
	warnings  []string       // Config.Warnings
}

// warn records a warning: a setting that is valid but weakens something.
func (p *parser) warn(pos Pos, field, format string, args ...any) {
	e := &Error{Pos: pos, Field: field, Msg: fmt.Sprintf(format, args...)}
	p.warnings = append(p.warnings, e.Error())
}

// at returns the position of node n.
func (p *parser) at(n *yaml.Node) Pos { return Pos{File: p.file, Line: n.Line, Col: n.Column} }

// fieldPos returns where field was set, or the file itself.
func (p *parser) fieldPos(field string) Pos {
	if pos, ok := p.pos[field]; ok {
		return pos
	}
	return Pos{File: p.file}
}

// mapping iterates a mapping node's keys; unknown keys are reported.
func (p *parser) mapping(n *yaml.Node, path string, known []string, f func(key string, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return
		}
		p.add(p.at(n), path, "must be a mapping")
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if known != nil && !contains(known, k.Value) {
			p.add(p.at(k), join(path, k.Value), "unknown field (known: %s)", strings.Join(known, ", "))
			continue
		}
		f(k.Value, v)
	}
}

// contains reports whether list holds s.
func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// join builds a dotted field path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// The schema, per section.
var (
	topKeys = []string{"listen", "host_key", "state_dir", "limits_enforcement", "server",
		"trusted_user_ca_keys", "revoked_keys", "audit_log", "metrics_listen", "log", "revoke", "network_pool", "network_forwarding", "disk_quota",
		"orphan_grace", "upgrade_drain", "prestart", "defaults", "users"}
	serverKeys = []string{"login_grace_time", "max_auth_tries", "max_startups", "per_source_max_startups",
		"max_connections", "max_channels", "max_tenant_channels", "client_alive_interval", "client_alive_count_max", "shutdown_grace",
		"per_source_penalty", "per_source_penalty_exempt", "kex", "ciphers", "macs"}
	userKeys = []string{"keys", "keys_file", "rootfs", "image", "shell", "hostname", "environment", "linger", "network", "limits", "id_range", "uid_base", "capabilities", "seccomp", "rlimits", "forwarding",
		"max_sessions", "idle_timeout", "idle_grace", "max_session_time", "banner", "record", "record_input", "record_max_bytes", "egress", "dns"}
	defaultBad = []string{"uid_base"} // per-tenant only
)

// parse decodes the document: the top-level fields and the defaults first,
// then each tenant over the defaults, then validation and the key index.
func (p *parser) parse(data []byte) *Config {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.add(Pos{File: p.file, Line: yamlErrLine(err)}, "", "%s", yamlErrMsg(err))
		return nil
	}
	c := &Config{File: p.file, Users: map[string]*User{}}
	def := defaultUser()
	var usersNode *yaml.Node
	if len(doc.Content) > 0 {
		p.mapping(doc.Content[0], "", topKeys, func(key string, v *yaml.Node) {
			p.pos[key] = p.at(v)
			if key == "users" {
				usersNode = v // once the defaults are complete
				return
			}
			p.top(c, &def, key, v)
		})
	}
	c.Defaults = def
	applyTopDefaults(c)
	if usersNode != nil {
		p.mapping(usersNode, "users", nil, func(name string, v *yaml.Node) {
			c.Users[name] = p.tenant(def, name, v)
		})
	}
	p.validate(c)
	c.Keys = keyIndex(c)
	return c
}

// top applies top-level field key (any but users) onto c, or onto def for
// the defaults section.
func (p *parser) top(c *Config, def *User, key string, v *yaml.Node) {
	switch key {
	case "listen":
		c.Listen = p.str(v, key)
	case "host_key":
		c.HostKey = p.str(v, key)
	case "state_dir":
		c.StateDir = p.str(v, key)
	case "limits_enforcement":
		c.LimitsEnforcement = p.str(v, key)
	case "server":
		p.server(&c.Server, v, key)
	case "trusted_user_ca_keys":
		c.TrustedUserCAKeys = p.keySources(v, key, nil)
	case "revoked_keys":
		c.RevokedKeys = p.keySources(v, key, &c.RevokedKRLs)
		c.IndexRevoked()
	case "audit_log":
		c.AuditLog = p.str(v, key)
	case "metrics_listen":
		c.MetricsListen = p.str(v, key)
	case "log":
		p.mapping(v, key, []string{"format", "level"}, func(k string, v *yaml.Node) {
			f := join(key, k)
			p.pos[f] = p.at(v)
			if k == "format" {
				c.LogFormat = p.str(v, f)
			} else {
				c.LogLevel = p.str(v, f)
			}
		})
	case "revoke":
		c.Revoke = p.str(v, key)
	case "network_pool":
		p.networkPool(c, v)
	case "network_forwarding":
		c.NetworkForwarding = p.str(v, key)
	case "disk_quota":
		c.DiskQuota = p.str(v, key)
	case "orphan_grace":
		p.duration(&c.OrphanGrace, v, key)
		c.orphanGraceSet = true
	case "upgrade_drain":
		p.duration(&c.UpgradeDrain, v, key)
	case "prestart":
		p.count(&c.Prestart, v, key)
		c.prestartSet = true
	case "defaults":
		p.user(def, v, "defaults", true)
	}
}

// tenant builds tenant name from the defaults def and her own mapping v.
func (p *parser) tenant(def User, name string, v *yaml.Node) *User {
	path := "users." + name
	p.pos[path] = p.at(v)
	u := def // a copy: defaults first, then her own fields
	u.Name, u.Pos = name, p.at(v)
	u.Keys = append([]keys.Key(nil), def.Keys...)
	// Messages about a field she inherits point at the defaults' line.
	for f, pos := range p.pos {
		if rest, ok := strings.CutPrefix(f, "defaults."); ok {
			if _, set := p.pos[path+"."+rest]; !set {
				p.pos[path+"."+rest] = pos
			}
		}
	}
	p.user(&u, v, path, false)
	resolveLimits(&u)
	p.ownTreeWins(&u, path)
	expand(&u)
	p.keysFile(&u, path)
	return &u
}

// ownTreeWins keeps a tenant's own rootfs or image over the other from the
// defaults (e.g. defaults.rootfs with one tenant on an image).
func (p *parser) ownTreeWins(u *User, path string) {
	fromDefaults := func(f string) bool {
		pos, ok := p.pos["defaults."+f]
		return ok && p.pos[path+"."+f] == pos
	}
	if u.Image != "" && u.Rootfs != "" {
		if fromDefaults("rootfs") && !fromDefaults("image") {
			u.Rootfs = ""
		} else if fromDefaults("image") && !fromDefaults("rootfs") {
			u.Image = ""
		}
	}
}

// keyIndex indexes every tenant's keys with their options and comments.
func keyIndex(c *Config) *keys.Index {
	idx := keys.NewIndex()
	for _, u := range c.Users {
		for _, k := range u.Keys {
			o, _ := keys.ParseOptions(k.Options) // checked in validate
			idx.AddWithOptions(u.Name, k.Key, o)
			idx.SetComment(u.Name, k.Key, k.Comment)
		}
	}
	return idx
}

// str returns a scalar's value, reporting anything else.
func (p *parser) str(n *yaml.Node, field string) string {
	if n.Kind != yaml.ScalarNode {
		p.add(p.at(n), field, "must be a single value")
		return ""
	}
	return n.Value
}

// uint64 parses a non-negative integer scalar, or "unlimited".
func (p *parser) uint64(n *yaml.Node, field string) (uint64, bool) {
	s := p.str(n, field)
	if s == "unlimited" {
		return ^uint64(0), true
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		p.add(p.at(n), field, "%q is not a whole number >= 0 or unlimited", s)
		return 0, false
	}
	return v, true
}

// uint parses a non-negative integer scalar.
func (p *parser) uint(n *yaml.Node, field string) (uint64, bool) {
	s := p.str(n, field)
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		p.add(p.at(n), field, "%q is not a whole number >= 0", s)
		return 0, false
	}
	return v, true
}

// expand replaces {user} in the string fields.
func expand(u *User) {
	for _, s := range []*string{&u.Rootfs, &u.Image, &u.Shell, &u.Hostname, &u.KeysFile, &u.Banner} {
		*s = strings.ReplaceAll(*s, "{user}", u.Name)
	}
}

// yamlLine finds "line N" in a yaml.v3 error.
var yamlLine = regexp.MustCompile(`line (\d+)`)

// yamlParserErrors are yaml.v3's parser (not scanner) errors. For these
// it reports a line counted from 0, the line of the construct the problem
// is in (decode.go fail adds 1 for scanner errors only): for
// "keys: [unclosed" on line 3, "line 2: did not find expected ',' or ']'".
var yamlParserErrors = []string{
	"did not find expected <stream-start>", "did not find expected <document start>",
	"did not find expected node content", "did not find expected '-' indicator", "did not find expected key",
	"did not find expected ',' or ']'", "did not find expected ',' or '}'", "found undefined tag handle",
	"found duplicate %YAML directive", "found duplicate %TAG directive", "found incompatible YAML document",
}

// yamlErrLine extracts the line of a YAML syntax error, if it says one,
// counted from 1.
func yamlErrLine(err error) int {
	n := 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		n, _ = strconv.Atoi(m[1])
	}
	for _, e := range yamlParserErrors {
		if strings.HasSuffix(err.Error(), e) {
			return n + 1
		}
	}
	return n
}

// yamlErrMsg strips yaml.v3's prefix and line from a syntax error.
func yamlErrMsg(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = yamlLine.ReplaceAllString(s, "")
	return strings.TrimLeft(strings.TrimSpace(s), ": ")
}
