package config

import "path/filepath"

// Defaults, written out here rather than as struct tags.
const (
	DefaultListen   = "0.0.0.0:2222"
	DefaultStateDir = "/var/lib/jailgate"
	DefaultShell    = "/bin/bash"
	DefaultHostname = "{user}"
	DefaultNetwork  = "none"
	DefaultIDRange  = 65536
)

// defaultUser is what every tenant starts from before the defaults section
// and her own fields apply.
func defaultUser() User {
	return User{
		Shell:       DefaultShell,
		Hostname:    DefaultHostname,
		Environment: EnvTenant,
		Network:     DefaultNetwork,
		IDRange:     DefaultIDRange,
	}
}

// applyTopDefaults fills the top-level fields left empty.
func applyTopDefaults(c *Config) {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.HostKey == "" {
		c.HostKey = filepath.Join(c.StateDir, "ssh_host_ed25519_key")
	}
}
