package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/internal/atomicfile"
	"github.com/jailgate/jailgate/keys"
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
	settings, err := json.Marshal(tenantLines(c))
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

// loadActive returns the settings of each tenant in force for stateDir:
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
	return tenantLines(old), nil
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
		"limits:       " + config.LimitsText(u.Limits),
		fmt.Sprintf("rlimits:      %v", u.Rlimits),
		fmt.Sprintf("ids:          base %s, %d ids", baseText(u.UIDBase), u.IDRange),
		fmt.Sprintf("capabilities: %s", capsText(u.Caps)),
		"seccomp:      " + u.Seccomp,
		fmt.Sprintf("forwarding:   local=%v remote=%v agent=%v (x11 always refused)",
			u.Forwarding.Local, u.Forwarding.Remote, u.Forwarding.Agent),
		fmt.Sprintf("sessions:     max %d, idle_timeout %v (+%v grace), max_session_time %v",
			u.MaxSessions, u.IdleTimeout, u.IdleGrace, u.MaxSessionTime),
	}
	for _, k := range u.Keys {
		opts := ""
		if len(k.Options) > 0 {
			opts = " [" + strings.Join(k.Options, ",") + "]"
		}
		lines = append(lines, fmt.Sprintf("key:          %s %s%s", keys.Fingerprint(k.Key), k.Comment, opts))
	}
	return lines
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
	return nil
}

// diffConfigs says what a reload from old to c would change.
func diffConfigs(old, c *config.Config) []string {
	return diffTenants(tenantLines(old), tenantLines(c))
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
