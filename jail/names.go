package jail

// The vocabulary of EnvSpec, shared with the config package (which imports
// these lists rather than keeping its own): the names a tenant's
// capabilities and rlimits may use. Platform-neutral, so that config builds
// everywhere.

// CapabilityNames are the capabilities EnvSpec.Caps may name, in the
// order of their numbers (capabilities(7)): CapabilityNames[n] is
// capability n.
var CapabilityNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
	"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// RlimitNames are the per-process limits EnvSpec.Rlimits may set
// (getrlimit(2), lowercase, without RLIMIT_), sorted.
var RlimitNames = []string{"as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue",
	"nice", "nofile", "nproc", "rtprio", "rttime", "sigpending", "stack"}

// Network modes of EnvSpec.Network.
const (
	// NetworkNone is an own network namespace with loopback only.
	NetworkNone = "none"
	// NetworkNAT is an own network namespace with loopback and eth0, one
	// end of a veth pair to the host, masqueraded out of the host's uplink
	// under the tenant's egress policy.
	NetworkNAT = "nat"
)
