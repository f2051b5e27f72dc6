package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/statedir"
	"gopkg.in/yaml.v3"
)

// Defaults, written out here rather than as struct tags.
const (
	DefaultListen   = "0.0.0.0:2222"
	DefaultStateDir = "/var/lib/jailgate"
	DefaultShell    = "/bin/bash"
	DefaultHostname = "{user}"
	DefaultNetwork  = jail.NetworkNone
	DefaultIDRange  = 65536
	// DefaultMaxTenantChannels is server.max_tenant_channels: with the SSH
	// window of 2 MiB per channel, one tenant can make the gateway hold at
	// most 256 MiB of data her programs have not read.
	DefaultMaxTenantChannels = 128
	// DefaultRecordMaxBytes is record_max_bytes: a session's recording
	// stops past it, so that one tenant's output cannot fill the state_dir
	// (20 MB of output made a 75 MB cast).
	DefaultRecordMaxBytes = 100 << 20
	// DefaultOrphanGrace is orphan_grace: long enough for a crashed
	// gateway to be restarted (systemd's Restart=on-failure, an operator)
	// and adopt its environments before their linger starts.
	DefaultOrphanGrace = 10 * time.Minute
	// DefaultPrestart is prestart: enough for a burst of logins to find a
	// blank each while the pool refills (each idle one costs an init's
	// memory, ≈ 2 MiB).
	DefaultPrestart = 4
	// MaxPrestart bounds prestart.
	MaxPrestart = 256
)

// DefaultMaxChannels is server.max_channels: OpenSSH's MaxSessions 10, and
// room for an editor's or a notebook's forwarded ports.
var DefaultMaxChannels = ChannelLimits{Sessions: 10, Forwards: 64}

// defaultUser is what every tenant starts from before the defaults section
// and her own fields apply.
func defaultUser() User {
	return User{
		Shell:       DefaultShell,
		Hostname:    DefaultHostname,
		Environment: EnvTenant,
		Network:     DefaultNetwork,
		IDRange:     DefaultIDRange,
		Seccomp:     SeccompDefault,
		// No core dumps: a tenant's core would land in her tree, but a
		// crashing init must never dump onto the host either.
		Rlimits:        map[string]uint64{"core": 0},
		Forwarding:     Forwarding{Local: true},
		IdleGrace:      time.Minute,
		RecordMaxBytes: DefaultRecordMaxBytes,
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
	if c.OrphanGrace == 0 && !c.orphanGraceSet {
		c.OrphanGrace = DefaultOrphanGrace
	}
	if c.Prestart == 0 && !c.prestartSet {
		c.Prestart = DefaultPrestart
	}
	sv := &c.Server
	if sv.LoginGraceTime == 0 {
		sv.LoginGraceTime = 30 * time.Second
	}
	if sv.MaxAuthTries == 0 {
		sv.MaxAuthTries = 6
	}
	if sv.MaxStartups == 0 {
		sv.MaxStartups = 100
	}
	if sv.PerSourceMaxStartups == 0 {
		sv.PerSourceMaxStartups = 10
	}
	if sv.MaxChannels.Sessions == 0 {
		sv.MaxChannels.Sessions = DefaultMaxChannels.Sessions
	}
	if sv.MaxChannels.Forwards == 0 {
		sv.MaxChannels.Forwards = DefaultMaxChannels.Forwards
	}
	if sv.MaxTenantChannels == 0 {
		sv.MaxTenantChannels = DefaultMaxTenantChannels
	}
	if sv.PerSourcePenalty == 0 && !sv.penaltySet {
		sv.PerSourcePenalty = 5 * time.Second
	}
	if sv.ShutdownGrace == 0 {
		sv.ShutdownGrace = 30 * time.Second
	}
	if sv.Kex == nil {
		sv.Kex = slices.Clone(DefaultKex)
	}
	if sv.Ciphers == nil {
		sv.Ciphers = slices.Clone(DefaultCiphers)
	}
	if sv.MACs == nil {
		sv.MACs = slices.Clone(DefaultMACs)
	}
	if sv.ClientAliveCountMax == 0 {
		sv.ClientAliveCountMax = 3
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.NetworkForwarding == "" {
		c.NetworkForwarding = ForwardingOff
	}
	if c.Revoke == "" {
		c.Revoke = RevokeEndSessions
	}
	if c.DiskQuota == "" {
		c.DiskQuota = DiskQuotaAuto
	}
	if c.LimitsEnforcement == "" {
		c.LimitsEnforcement = "strict"
	}
	if c.HostKey == "" {
		c.HostKey = statedir.New(c.StateDir).HostKey()
	}
}

// StateDirOf reads just the state directory of the configuration at path
// (its default when unset), for commands that build the images a config
// names and so cannot wait for it to validate.
func StateDirOf(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read config: %w", err)
	}
	var top struct {
		StateDir string `yaml:"state_dir"`
	}
	if err := yaml.Unmarshal(data, &top); err != nil {
		return "", &Error{Pos: Pos{File: path}, Msg: yamlErrMsg(err)}
	}
	if top.StateDir == "" {
		return DefaultStateDir, nil
	}
	if !filepath.IsAbs(top.StateDir) {
		return "", &Error{Pos: Pos{File: path}, Field: "state_dir", Msg: fmt.Sprintf("%q must be an absolute path", top.StateDir)}
	}
	return top.StateDir, nil
}

// StateDirHint is StateDirOf for a file that may not even parse, as
// `jailgate reload` needs the state directory to reach the server that
// will judge the file: where the YAML is broken, a top-level state_dir
// line is read on its own (none: the default).
func StateDirHint(path string) (string, error) {
	dir, err := StateDirOf(path)
	var ce *Error
	if err == nil || !errors.As(err, &ce) || ce.Field != "" {
		return dir, err
	}
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		return "", err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if !strings.HasPrefix(line, "state_dir:") {
			continue
		}
		var top struct {
			StateDir string `yaml:"state_dir"`
		}
		if yaml.Unmarshal([]byte(line), &top) != nil || !filepath.IsAbs(top.StateDir) {
			return "", err
		}
		return top.StateDir, nil
	}
	return DefaultStateDir, nil
}
