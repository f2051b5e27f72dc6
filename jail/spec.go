// Package jail runs tenant environments: fresh Linux namespaces, the tenant's
// root filesystem pivot_root'ed as "/", a cgroup, and a small resident init as
// PID 1 that spawns the tenant's processes and dials connections for her.
//
// The gateway sees only the narrow seam in this file: a Manager hands out
// Envs, an Env spawns Processes. Everything behind it is Linux-specific.
//
// File names say which side of the control socket (control_linux.go, the
// protocol both sides speak) their code runs on. init_*.go runs inside the
// environment, in the init: its setup steps (mounts, pivot_root, network,
// rlimits, caps, seccomp), serving the gateway's requests as PID 1, and the
// SFTP server it starts. Every other file runs in the gateway: starting an
// environment (start_linux.go, the gateway's step list), its processes and
// listeners, cgroups, the Supervisor and the id pool; the platform-neutral
// spec, names and errors are shared by both.
package jail

import (
	"context"
	"io"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// SeccompUnconfined in EnvSpec.Seccomp installs no filter (trusted tenants).
const SeccompUnconfined = "unconfined"

// Manager hands out environments.
type Manager interface {
	// Environment returns the live environment for key (a tenant, connection
	// or session id, per the tenant's environment mode), starting it from
	// spec if there is none. Every successful call must be paired with one
	// Env.Release.
	Environment(ctx context.Context, key string, spec *EnvSpec) (Env, error)
}

// IDMap is the host id range the tenant's ids 0..Size-1 map to.
type IDMap struct {
	UID  uint32 // host uid of the tenant's root
	GID  uint32 // host gid of the tenant's root
	Size uint32 // number of ids mapped (default 65536)
}

// Limits are the limits of an environment: its cgroup's, and the sizes of
// what its init mounts. Zero means unlimited.
type Limits struct {
	Memory     int64 // bytes
	MemorySwap int64 // bytes of swap beyond Memory
	// SwapAsMemory, with MemorySwap 0, allows as much swap as Memory
	// where the host accounts swap (cgroup v2, or v1 with swapaccount=1)
	// and is not enforced where it does not: the default, which must not
	// stop every login on a host without swap accounting.
	SwapAsMemory bool
	Pids         int64   // number of tasks
	CPU          float64 // CPUs, fractions allowed
	IOWeight     int64   // relative block I/O weight, 1-10000 (v1: scaled to 10-1000)
	PTYs         int64   // terminals in her devpts instance (devpts max=); 0: the kernel's one pool
	Tmp          int64   // bytes of each of /tmp and /dev/shm (tmpfs size=); 0: the tmpfs default (half of RAM)
	NetRate      int64   // NetworkNAT: bits per second each way on her veth (tc); 0: unlimited
	Connections  int64   // NetworkNAT: her conntrack entries (new connections beyond are dropped); 0: unlimited
}

// EnvSpec says how to build an environment.
type EnvSpec struct {
	Tenant   string            // tenant name, for logs and cgroup names
	Rootfs   string            // absolute host path of the tenant's root filesystem
	Hostname string            // hostname inside the UTS namespace
	IDMap    IDMap             // uid/gid mapping of the user namespace
	Limits   Limits            // cgroup limits
	Caps     []string          // capabilities kept, e.g. "CAP_CHOWN"; nil means DefaultCaps
	Network  string            // a network mode: NetworkNone ("" too) is an own network namespace with loopback only
	Egress   Egress            // NetworkNAT: her egress policy over DefaultDeny
	DNS      []netip.Addr      // NetworkNAT: her resolvers; nil means the host's
	Linger   time.Duration     // how long the environment outlives its last Release
	Seccomp  string            // "" for the default filter, SeccompUnconfined for none
	Rlimits  map[string]uint64 // per-process limits by name (nofile, core, …), soft = hard

	// OnEnd, if set, is called once when the Manager is done with the spec:
	// after the environment started from it has ended (its init, and with
	// it every process inside, is gone), or as Environment returns if no
	// environment was started from it (a live one was joined, or the start
	// failed). It releases what was acquired for the environment, such as
	// the tenant's mounted layer.
	OnEnd func()
}

// TTY asks for a pseudo-terminal allocated inside the environment.
type TTY struct {
	Term  string           // TERM from the pty-req
	Rows  uint16           // initial height in characters
	Cols  uint16           // initial width in characters
	Modes map[uint8]uint32 // SSH terminal modes (RFC 4254 section 8), opcode to value
}

// ProcSpec says what to run inside an environment.
type ProcSpec struct {
	// Subsystem "sftp" runs the jail's own SFTP server instead of Argv
	// (Argv is then only a name for logs).
	Subsystem string
	Argv      []string // Argv[0] is resolved inside the environment
	Env       []string // the complete environment, KEY=value
	Dir       string   // working directory inside the environment
	TTY       *TTY     // nil runs the process with pipes
}

// Env is a live environment. Its methods are safe for concurrent use.
type Env interface {
	// Spawn starts a process inside the environment.
	Spawn(ctx context.Context, p *ProcSpec) (Process, error)
	// Dial connects to addr from inside the environment's network namespace.
	Dial(ctx context.Context, network, addr string) (net.Conn, error)
	// Listen listens on addr inside the environment: "tcp" in its network
	// namespace (port 0 picks one; Addr says which), "unix" at a path in
	// its filesystem, whose directory Listen creates (mode 0700, owned by
	// the tenant's root; it must not exist) and Close removes with the
	// socket. The caller accepts the connections and closes the listener.
	Listen(ctx context.Context, network, addr string) (net.Listener, error)
	// Release says one user of the environment is done with it; the
	// environment ends when its last user released it and Linger passed.
	Release()
}

// ExitStatus is how a process ended: by exit code, or by a signal.
type ExitStatus struct {
	Code   int         // exit code when Signal is 0
	Signal unix.Signal // the signal that killed the process, or 0
	OOM    bool        // killed by the environment's memory limit
}

// Process is a process running inside an environment.
type Process interface {
	Stdin() io.WriteCloser // with a TTY: the terminal's input
	Stdout() io.Reader     // with a TTY: the terminal's output
	Stderr() io.Reader     // nil with a TTY
	// Resize sets the terminal size; an error without a TTY.
	Resize(rows, cols uint16) error
	// Signal sends sig to the process.
	Signal(sig unix.Signal) error
	// Wait waits for the process to end. It may be called once.
	Wait() (ExitStatus, error)
	// Kill hangs up and then kills the process's group; it is idempotent.
	Kill() error
}
