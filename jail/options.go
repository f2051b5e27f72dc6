package jail

import (
	"log/slog"
	"time"
)

// Options configure a Supervisor.
type Options struct {
	Logger       *slog.Logger  // nil: slog.Default()
	CgroupRoot   string        // where cgroupfs is mounted; "" means /sys/fs/cgroup
	CgroupPrefix string        // the parent cgroup of every environment, one per state_dir (statedir.Layout.Cgroup); "" means "jailgate"
	InitPath     string        // the binary re-executed as init; "" means /proc/self/exe
	KillGrace    time.Duration // between a session's SIGHUP and SIGKILL; 0 means 2s
	// BestEffort enforces the limits the hierarchy can and logs the rest,
	// instead of refusing to start an environment.
	BestEffort bool
	// Network is the host side of NetworkNAT (OpenNetwork: the pool, the
	// nftables table); nil: nat environments cannot start.
	Network *Network
	// RecordDir holds a record and a control socket per live environment
	// (statedir.Layout.Environments, 0700 root, never inside a jail): what
	// a later gateway adopts. "": environments are not adoptable.
	RecordDir string
	// OrphanGrace is how long an environment with no gateway connected
	// (a crash, kill -9) waits for one before its linger applies; 0: none
	// (config's orphan_grace says 10 minutes unless set).
	OrphanGrace time.Duration
}

// DefaultCaps are the capabilities a tenant's root keeps when EnvSpec.Caps
// is nil: what a root user needs to manage her own files and processes inside
// her namespaces, close to Docker's default set. All of them act only within
// the tenant's user namespace; nothing here reaches the host.
var DefaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_AUDIT_WRITE",
}

// Stats is a tenant's resource use, read from her cgroup. A -1 maximum
// means unlimited; unknown values are 0.
type Stats struct {
	Environments int   // live environments (child cgroups)
	MemoryBytes  int64 // current memory use
	MemoryMax    int64
	Pids         int64 // current tasks
	PidsMax      int64
	CPUNanos     int64 // CPU time used since the cgroup was created
	OOMKills     int
}
