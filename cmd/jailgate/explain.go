package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/internal/atomicfile"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/keys"
	"github.com/jailgate/jailgate/provision"
	"github.com/jailgate/jailgate/statedir"
)

// saveActive records the configuration serve just put in force, so that
// `check --diff` can say what a reload would change: a copy of the file
// (statedir's ActiveConfig), and each tenant's effective settings
// (explainLines, in ActiveTenants). Re-reading the copy alone would
// re-read its keys_file and revoked_keys files as they are now, so a key
// added to a keys_file would not show as a change.
func saveActive(c *config.Config) error {
	data, err := os.ReadFile(c.File)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		return err
	}
	settings, err := json.Marshal(activeLines(c))
	if err != nil {
		return err
	}
	active := statedir.New(c.StateDir)
	if err := atomicfile.WriteFile(active.ActiveTenants(), settings, 0o600); err != nil {
		return err
	}
	return atomicfile.WriteFile(active.ActiveConfig(), data, 0o600)
}

// tenantLines is every tenant's explainLines, by name.
func tenantLines(c *config.Config) map[string][]string {
	m := make(map[string][]string, len(c.Users))
	for n, u := range c.Users {
		m[n] = explainLines(u)
	}
	return m
}

// activeLines is what saveActive records: tenantLines, and the
// server-wide settings under serverKey.
func activeLines(c *config.Config) map[string][]string {
	m := tenantLines(c)
	m[serverKey] = serverLines(c)
	return m
}

// loadActive returns the settings in force for stateDir (as activeLines):
// as saved by serve, or (state from before active-tenants.json) as
// active.yaml gives them now.
func loadActive(stateDir string) (map[string][]string, error) {
	active := statedir.New(stateDir)
	if b, err := os.ReadFile(active.ActiveTenants()); err == nil {
		var m map[string][]string
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", active.ActiveTenants(), err)
		}
		return m, nil
	}
	old, err := config.Load(active.ActiveConfig())
	if err != nil {
		return nil, err
	}
	return activeLines(old), nil
}

// explainLines lists a tenant's effective settings, defaults and
// templates applied.
func explainLines(u *config.User) []string {
	lines := []string{
		"tenant:       " + u.Name,
		rootfsText(u),
		"shell:        " + u.Shell,
		"hostname:     " + u.Hostname,
		"environment:  " + u.Environment,
		fmt.Sprintf("linger:       %v", u.Linger),
		"network:      " + u.Network,
	}
	lines = append(lines, egressLines(u)...)
	lines = append(lines,
		"limits:       "+u.AllLimitsText(),
		"limits from:  "+limitsFromText(u.LimitsFrom),
		fmt.Sprintf("rlimits:      %v", u.Rlimits),
		fmt.Sprintf("ids:          base %s, %d ids", baseText(u.UIDBase), u.IDRange),
		fmt.Sprintf("capabilities: %s", capsText(u.Caps)),
		"seccomp:      "+u.Seccomp,
		fmt.Sprintf("forwarding:   local=%v remote=%v agent=%v (x11 always refused)",
			u.Forwarding.Local, u.Forwarding.Remote, u.Forwarding.Agent),
		fmt.Sprintf("sessions:     max %d, idle_timeout %v (+%v grace), max_session_time %v",
			u.MaxSessions, u.IdleTimeout, u.IdleGrace, u.MaxSessionTime),
	)
	for _, k := range u.Keys {
		opts := ""
		if len(k.Options) > 0 {
			opts = " [" + strings.Join(k.Options, ",") + "]"
		}
		lines = append(lines, fmt.Sprintf("key:          %s %s%s", keys.Fingerprint(k.Key), k.Comment, opts))
	}
	return lines
}

// limitsFromText says where each limit's value came from, by key:
// "memory (defaults:), pids (users.alice), ptys (default)".
func limitsFromText(from map[string]string) string {
	keys := slices.Sorted(maps.Keys(from))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+" ("+from[k]+")")
	}
	return strings.Join(parts, ", ")
}

// egressLines render a nat tenant's effective egress policy, in the order
// the firewall applies it: her allow entries (and her resolvers' port 53),
// her deny entries, the default deny list, then everything else allowed.
func egressLines(u *config.User) []string {
	if u.Network != jail.NetworkNAT {
		return nil
	}
	rules := func(rs []jail.EgressRule) string {
		if len(rs) == 0 {
			return "(none)"
		}
		var parts []string
		for _, r := range rs {
			parts = append(parts, r.String())
		}
		return strings.Join(parts, " ")
	}
	var deny []string
	for _, p := range jail.DefaultDeny {
		deny = append(deny, p.String())
	}
	dns := "the host's resolvers (its resolv.conf, or systemd-resolved's upstreams)"
	if len(u.DNS) > 0 {
		dns = fmt.Sprint(u.DNS)
	}
	return []string{
		"egress allow: " + rules(u.Egress.Allow) + ", and port 53 of her resolvers",
		"egress deny:  " + rules(u.Egress.Deny),
		"then denied:  " + strings.Join(deny, " ") + ", the host's own addresses, the network pool (other tenants)",
		"then:         everything else allowed (masqueraded out of the host's uplink); nothing reaches her from outside",
		"dns:          " + dns,
	}
}

// rootfsText renders her filesystem: her own tree, or her layer over an
// image.
func rootfsText(u *config.User) string {
	if u.Image != "" {
		return "image:        " + u.Image + " (her changes in a layer of her own over it)"
	}
	return "rootfs:       " + u.Rootfs
}

// baseText renders an explicit or allocated id base.
func baseText(b uint32) string {
	if b == 0 {
		return "allocated from the pool"
	}
	return fmt.Sprint(b)
}

// capsText renders the capability list; nil is the jail's default set.
func capsText(c []string) string {
	if c == nil {
		return "the default set"
	}
	return strings.Join(c, " ")
}

// cmdExplain prints one tenant's effective settings.
func cmdExplain(args []string, stdout io.Writer) error {
	var tenant string
	var rest []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") && tenant == "" && (len(rest) == 0 || rest[len(rest)-1] != "--config") {
			tenant = a
			continue
		}
		rest = append(rest, a)
	}
	path, _, err := configFlag("explain", rest)
	if err != nil {
		return err
	}
	if tenant == "" {
		return &usageError{"explain: name a tenant"}
	}
	c, err := loadConfig(path)
	if err != nil {
		return err
	}
	u := c.Users[tenant]
	if u == nil {
		return fmt.Errorf("explain: %s has no tenant %q", path, tenant)
	}
	for _, l := range explainLines(u) {
		fmt.Fprintln(stdout, l)
	}
	fmt.Fprintln(stdout, diskLine(c, u))
	return nil
}

// diskLine says which disk quota backend serves u's tree on this host and
// why (provision.ChooseDisk's choice). It reads the host, so it is not
// one of explainLines, whose diff a reload prints.
func diskLine(c *config.Config, u *config.User) string {
	ch, err := provision.ChooseDisk(c.StateDir, c.DiskQuota, u)
	switch {
	case err != nil && ch.Backend == "":
		return "disk quota:   none can be enforced: " + err.Error()
	case ch.Backend == "":
		return "disk quota:   none (" + ch.Why + ")"
	case err != nil:
		return fmt.Sprintf("disk quota:   %s on %s, because %s; but: %v", ch.Backend, ch.Tree, ch.Why, err)
	}
	return fmt.Sprintf("disk quota:   %s on %s (disk_quota %s), because %s", ch.Backend, ch.Tree, c.DiskQuota, ch.Why)
}

// diffConfigs says what a reload from old to c would change.
func diffConfigs(old, c *config.Config) []string {
	return diffActive(activeLines(old), activeLines(c))
}

// diffActive says what changes from the settings in force old to cur
// (each as activeLines): the server-wide settings, then the tenants. It
// is the one diff behind `check --diff` and a reload's changes.
func diffActive(old, cur map[string][]string) []string {
	var out []string
	// State saved before server lines were recorded has none: nothing to
	// compare with (the next serve or reload records them).
	if oldServer, ok := old[serverKey]; ok {
		out = diffServer(oldServer, cur[serverKey])
	}
	tenants := func(m map[string][]string) map[string][]string {
		t := maps.Clone(m)
		delete(t, serverKey)
		return t
	}
	return append(out, diffTenants(tenants(old), tenants(cur))...)
}

// diffTenants says what changes from the tenants' settings in old to
// those in cur (each as explainLines).
func diffTenants(old, cur map[string][]string) []string {
	var out []string
	names := map[string]bool{}
	for n := range old {
		names[n] = true
	}
	for n := range cur {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		a, inOld := old[n]
		b, inCur := cur[n]
		switch {
		case !inOld:
			out = append(out, "+ tenant "+n)
		case !inCur:
			out = append(out, "- tenant "+n+" (her live sessions end unless revoke: keep-sessions)")
		default:
			for _, l := range a {
				if !contains(b, l) {
					out = append(out, "~ "+n+": - "+l)
				}
			}
			for _, l := range b {
				if !contains(a, l) {
					out = append(out, "~ "+n+": + "+l)
				}
			}
		}
	}
	return out
}

// contains reports whether list has s.
func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// serverKey is the entry of activeLines that holds serverLines; no tenant
// can have this name (config's tenant names allow no parentheses).
const serverKey = "(server)"

// When a change of a server-wide setting takes effect.
const (
	appliesRestart  = "needs a restart: the running server keeps the old value"
	appliesNewConns = "applies to new connections; live ones keep the old value"
	appliesOffer    = "applies to new connections; live ones keep what they negotiated"
)

// serverSettings are the server-wide settings diffs show, in order, with
// when a change takes effect: what serve reads once at start needs a
// restart; the server section applies from the next connection (see
// gateway.Server.SetConfig).
var serverSettings = []struct{ name, applies string }{
	{"listen", appliesRestart},
	{"host_key", appliesRestart},
	{"state_dir", appliesRestart},
	{"metrics_listen", appliesRestart},
	{"audit_log", appliesRestart},
	{"log", appliesRestart},
	{"network_pool", appliesRestart},
	{"network_forwarding", appliesRestart},
	{"orphan_grace", "applies at the next start or upgrade: serve hands it to the jail once"},
	{"upgrade_drain", "applies at the next upgrade"},
	{"server.kex", appliesOffer},
	{"server.ciphers", appliesOffer},
	{"server.macs", appliesOffer},
	{"server.login_grace_time", appliesNewConns},
	{"server.max_auth_tries", appliesNewConns},
	{"server.max_startups", "applies to the next connection accepted"},
	{"server.per_source_max_startups", "applies to the next connection accepted"},
	{"server.max_connections", "applies to the next connection accepted"},
	{"server.max_channels", appliesNewConns},
	{"server.max_tenant_channels", "applies to the next channel opened"},
	{"server.per_source_penalty", "applies to the next failed connection"},
	{"server.per_source_penalty_exempt", "applies to the next failed connection"},
	{"server.client_alive_interval", appliesNewConns},
	{"server.client_alive_count_max", appliesNewConns},
	{"server.shutdown_grace", "applies at the next shutdown"},
}

// serverLines lists c's server-wide settings as "name: value", in
// serverSettings' order.
func serverLines(c *config.Config) []string {
	sv := c.Server
	values := map[string]string{
		"listen":                           c.Listen,
		"host_key":                         c.HostKey,
		"state_dir":                        c.StateDir,
		"metrics_listen":                   c.MetricsListen,
		"audit_log":                        c.AuditLog,
		"log":                              "format " + c.LogFormat + ", level " + c.LogLevel,
		"network_pool":                     prefixText(c.NetworkPool),
		"network_forwarding":               c.NetworkForwarding,
		"orphan_grace":                     c.OrphanGrace.String(),
		"upgrade_drain":                    durationOrNone(c.UpgradeDrain),
		"server.kex":                       strings.Join(sv.Kex, ", "),
		"server.ciphers":                   strings.Join(sv.Ciphers, ", "),
		"server.macs":                      strings.Join(sv.MACs, ", "),
		"server.login_grace_time":          sv.LoginGraceTime.String(),
		"server.max_auth_tries":            fmt.Sprint(sv.MaxAuthTries),
		"server.max_startups":              fmt.Sprint(sv.MaxStartups),
		"server.per_source_max_startups":   fmt.Sprint(sv.PerSourceMaxStartups),
		"server.max_connections":           fmt.Sprint(sv.MaxConnections),
		"server.max_channels":              fmt.Sprintf("sessions %d, forwards %d", sv.MaxChannels.Sessions, sv.MaxChannels.Forwards),
		"server.max_tenant_channels":       fmt.Sprint(sv.MaxTenantChannels),
		"server.per_source_penalty":        sv.PerSourcePenalty.String(),
		"server.per_source_penalty_exempt": strings.Join(sv.PerSourcePenaltyExempt, ", "),
		"server.client_alive_interval":     sv.ClientAliveInterval.String(),
		"server.client_alive_count_max":    fmt.Sprint(sv.ClientAliveCountMax),
		"server.shutdown_grace":            sv.ShutdownGrace.String(),
	}
	lines := make([]string, 0, len(serverSettings))
	for _, s := range serverSettings {
		lines = append(lines, s.name+": "+values[s.name])
	}
	return lines
}

// diffServer says which server-wide settings change from old to cur (each
// as serverLines), and when each change takes effect.
func diffServer(old, cur []string) []string {
	split := func(lines []string) map[string]string {
		m := make(map[string]string, len(lines))
		for _, l := range lines {
			name, value, _ := strings.Cut(l, ": ")
			m[name] = value
		}
		return m
	}
	was, now := split(old), split(cur)
	var out []string
	for _, s := range serverSettings {
		a, b := was[s.name], now[s.name]
		if a != b {
			out = append(out, fmt.Sprintf("~ %s: %s -> %s (%s)", s.name, orNone(a), orNone(b), s.applies))
		}
	}
	return out
}

// durationOrNone is d, or "none" for 0 (no bound).
func durationOrNone(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	return d.String()
}

// orNone is v, or "(none)" when it is empty.
func orNone(v string) string {
	if v == "" {
		return "(none)"
	}
	return v
}

// prefixText renders a prefix, or "" when unset (the default is chosen at
// serve start).
func prefixText(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}
