// Package config reads jailgate's YAML configuration: strict decoding (an
// unknown key is an error), explicit defaults, {user} templates and
// validation that reports every problem as FILE:LINE: field: message.
//
// A *Config is an immutable snapshot: a reload builds a new one and live
// sessions keep the one they started with.
package config

import (
	"net/netip"
	"sort"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/keys"
)

// Environment modes: which sessions share one environment.
const (
	EnvTenant     = "tenant"     // one environment per tenant (default)
	EnvConnection = "connection" // one per SSH connection
	EnvSession    = "session"    // one per session channel
)

// Pos is a position in a configuration file.
type Pos struct {
	File string
	Line int
	Col  int
}

// Config is one validated snapshot of the configuration. Treat it as
// read-only once Parse or Load returned it.
type Config struct {
	File     string           // the file it was read from
	Listen   string           // address:port to listen on
	HostKey  string           // path of the ed25519 host key
	StateDir string           // where id ranges and other state persist
	Defaults User             // the defaults section as written (templates unexpanded)
	Users    map[string]*User // every tenant, defaults applied and {user} expanded
	Keys     *keys.Index      // every tenant's keys, built once per snapshot
	// LimitsEnforcement is "strict" (refuse what cannot be enforced) or
	// "best-effort" (enforce what the host can, log the rest).
	LimitsEnforcement string
	// DiskQuota is the backend of limits.disk and limits.inodes: one of
	// DiskQuotaBackends (default auto).
	DiskQuota     string
	Server        Server // connection limits and timeouts
	AuditLog      string // JSON-lines audit log file; "" for none
	MetricsListen string // address:port for /metrics, /healthz, /readyz; "" for none
	LogFormat     string // "text" (default) or "json"
	LogLevel      string // "debug", "info" (default), "warn" or "error"
	Revoke        string // RevokeEndSessions (default) or RevokeKeepSessions
	// OrphanGrace is how long an environment with no gateway connected (a
	// crash, kill -9) waits for one to adopt it before its linger applies
	// (default 10m; 0: its linger applies at once). serve reads it at
	// start: jail.Options.OrphanGrace.
	OrphanGrace time.Duration
	// UpgradeDrain bounds how long the old process of an upgrade keeps
	// serving its established connections before it ends them as a
	// shutdown does; 0 (default) waits for them however long they last.
	UpgradeDrain   time.Duration
	orphanGraceSet bool // orphan_grace was written (0 then means none)
	// Prestart caps the pool of blank environments kept ready for logins
	// (namespaces and init started, nobody's yet): the pool follows the
	// recent login rate up to it (default 4; 0: none, every login starts
	// its environment cold). jail.Supervisor.Prestart; a reload applies it.
	Prestart    int
	prestartSet bool // prestart was written (0 then means none)
	// NetworkPool holds the point-to-point /31 of every nat environment;
	// the zero Prefix lets serve pick a free one of jail.DefaultPools.
	NetworkPool netip.Prefix
	// NetworkPoolPos is where network_pool is set (check names it when
	// the pool overlaps a host route).
	NetworkPoolPos Pos
	// NetworkForwarding is ForwardingOff (default) or ForwardingAuto.
	NetworkForwarding string
	// TrustedUserCAKeys sign user certificates that log a tenant in when
	// their principals name her (sshd TrustedUserCAKeys).
	TrustedUserCAKeys []gossh.PublicKey
	// RevokedKeys are refused, as keys or as certificates' keys or CAs
	// (sshd RevokedKeys, plain key list).
	RevokedKeys []gossh.PublicKey
	// RevokedKRLs are the binary OpenSSH KRLs among revoked_keys' files:
	// they also revoke certificates by serial number or key ID.
	RevokedKRLs []*keys.KRL

	// revokedWire is RevokedKeys by wire encoding (IndexRevoked), so that
	// a key check is a map lookup however long the list.
	revokedWire map[string]struct{}

	// Warnings are valid settings that weaken something (a weak SSH
	// algorithm offered), as FILE:LINE: field: message; `jailgate check`
	// prints them.
	Warnings []string
}

// IndexRevoked indexes RevokedKeys for KeyListedRevoked; Parse calls it,
// and so may whoever builds a Config by hand.
func (c *Config) IndexRevoked() {
	c.revokedWire = make(map[string]struct{}, len(c.RevokedKeys))
	for _, k := range c.RevokedKeys {
		c.revokedWire[string(k.Marshal())] = struct{}{}
	}
}

// KeyListedRevoked reports whether key is in RevokedKeys (by its wire
// encoding). The list of a Config built by hand and never indexed is
// scanned instead.
func (c *Config) KeyListedRevoked(key gossh.PublicKey) bool {
	if len(c.RevokedKeys) == 0 {
		return false
	}
	m := string(key.Marshal())
	if c.revokedWire != nil {
		_, ok := c.revokedWire[m]
		return ok
	}
	for _, k := range c.RevokedKeys {
		if string(k.Marshal()) == m {
			return true
		}
	}
	return false
}

// Server holds the connection-level limits and timeouts, named after
// their OpenSSH equivalents. Zero means off (or the gateway's default,
// where one is noted).
type Server struct {
	LoginGraceTime       time.Duration // LoginGraceTime: handshake + auth (default 30s)
	MaxAuthTries         int           // MaxAuthTries (default 6)
	MaxStartups          int           // MaxStartups: unauthenticated connections at once (default 100)
	PerSourceMaxStartups int           // PerSourceMaxStartups: the same, per source address (default 10)
	MaxConnections       int           // all connections at once (default 0: no cap)
	// MaxChannels caps the open channels of one connection (OpenSSH's
	// MaxSessions is 10), and MaxTenantChannels those of one tenant across
	// all her connections (default 128). Each channel may make the gateway
	// hold one SSH window (2 MiB) of data its reader has not taken, so
	// these bound the memory one tenant can make the gateway hold.
	MaxChannels         ChannelLimits
	MaxTenantChannels   int
	ClientAliveInterval time.Duration // ClientAliveInterval: keepalive probe period (default 0: off)
	ClientAliveCountMax int           // ClientAliveCountMax: unanswered probes before disconnect (default 3)
	ShutdownGrace       time.Duration // on SIGTERM, how long live sessions may take to end (default 30s)
	// PerSourcePenalty (sshd PerSourcePenalties authfail): each connection
	// from an address that fails to authenticate adds this much penalty
	// time to the address; past 30s of it the address is refused until the
	// penalty runs out (capped at 10m). Default 5s; 0 turns it off.
	PerSourcePenalty       time.Duration
	PerSourcePenaltyExempt []string // CIDRs never penalised (sshd PerSourcePenaltyExemptList)
	// Kex (sshd KexAlgorithms), Ciphers (sshd Ciphers) and MACs (sshd
	// MACs) are the algorithms offered to new connections. A client picks
	// the first of its own list the server offers, so what is left out
	// decides: see DefaultKex, DefaultCiphers, DefaultMACs.
	Kex     []string
	Ciphers []string
	MACs    []string

	penaltySet bool // per_source_penalty was written (0 then means off)
}

// ChannelLimits are the open channels one connection may have, by kind.
type ChannelLimits struct {
	Sessions int // session channels: shells, commands, sftp (default 10)
	// Forwards are the forwarding channels: ssh -L/-D (direct-tcpip), each
	// connection to an ssh -R listener (forwarded-tcpip) and each agent
	// connection (ssh -A). Default 64.
	Forwards int
}

// User is one tenant's effective settings.
type User struct {
	Name           string            // the tenant name (the SSH user name)
	Pos            Pos               // where the tenant is defined
	Keys           []keys.Key        // from keys: and keys_file:, in order
	KeysFile       string            // keys_file as written, expanded
	Rootfs         string            // absolute host path of her root filesystem
	Image          string            // or a shared image under state_dir/images that she gets a layer over
	Shell          string            // login shell inside the environment
	Hostname       string            // hostname inside the environment
	Environment    string            // EnvTenant, EnvConnection or EnvSession
	Linger         time.Duration     // how long a tenant environment outlives its last session
	Network        string            // jail.NetworkNone or jail.NetworkNAT
	Egress         jail.Egress       // nat: allow before deny, over jail.DefaultDeny
	DNS            []netip.Addr      // nat: her resolvers; nil means the host's
	Limits         jail.Limits       // cgroup limits; zero fields mean unlimited
	Disk           Disk              // limits.disk and limits.inodes: enforced on her tree by a disk quota backend
	DiskPos        Pos               // where limits.disk (or inodes) was written, for messages
	LimitsFrom     map[string]string // where each limit's value came from, by key: "default…", "defaults:", "users.NAME"
	UIDBase        uint32            // explicit host id base; 0 means allocate from the pool
	IDRange        uint32            // number of host ids mapped (default 65536)
	Caps           []string          // capabilities her root keeps; nil means the jail's default set
	Seccomp        string            // SeccompDefault or SeccompUnconfined
	Rlimits        map[string]uint64 // per-process limits by name; defaults core: 0
	Forwarding     Forwarding        // which SSH forwarding she may use
	MaxSessions    int               // concurrent session channels (0: no cap)
	IdleTimeout    time.Duration     // no input or output this long: a warning (0: off)
	IdleGrace      time.Duration     // then this long more: the session ends (default 1m)
	MaxSessionTime time.Duration     // a session ends after this long (0: off)
	Banner         string            // shown at the start of an interactive shell; {user} expanded
	Record         bool              // record terminal sessions (asciicast v2) under state_dir/recordings
	RecordInput    bool              // record what she types too
	RecordMaxBytes int64             // a recording stops, with a marker, past this size (0: no cap)
}

// Disk is a tenant's disk quota: what she may keep in her tree (her
// rootfs: directory, or her layer over an image). Zero means unlimited.
type Disk struct {
	Bytes  int64 // limits.disk
	Inodes int64 // limits.inodes: files, directories and links
}

// Set reports whether any disk limit is set.
func (d Disk) Set() bool { return d.Bytes > 0 || d.Inodes > 0 }

// Disk quota backends (disk_quota).
const (
	DiskQuotaAuto    = "auto"    // project, then btrfs, then image (default)
	DiskQuotaProject = "project" // ext4/XFS project quotas on her tree
	DiskQuotaBtrfs   = "btrfs"   // her tree a btrfs subvolume with a qgroup limit
	DiskQuotaImage   = "image"   // image: tenants' layer in an ext4 image file of her quota's size
)

// DiskQuotaBackends are disk_quota's values.
var DiskQuotaBackends = []string{DiskQuotaAuto, DiskQuotaProject, DiskQuotaBtrfs, DiskQuotaImage}

// Forwarding switches (OpenSSH AllowTcpForwarding, AllowAgentForwarding).
// X11 forwarding is always refused.
type Forwarding struct {
	Local  bool // ssh -L: connections into her environment's loopback (default true)
	Remote bool // ssh -R: listeners on her environment's loopback, to the client (default false)
	Agent  bool // ssh -A: her environment's SSH_AUTH_SOCK reaches the client's agent (default false)
}

// What a reload does to the live sessions of a removed tenant or key.
const (
	RevokeEndSessions  = "end-sessions"
	RevokeKeepSessions = "keep-sessions"
)

// Seccomp modes.
const (
	SeccompDefault    = "default"    // the jail's deny-list filter
	SeccompUnconfined = "unconfined" // no filter: trusted tenants only
)

// Names returns the tenant names in sorted order.
func (c *Config) Names() []string {
	names := make([]string, 0, len(c.Users))
	for n := range c.Users {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
