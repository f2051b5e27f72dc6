package jailtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/jailgate/jailgate/jail"
)

// HostManager is a fake jail.Manager for tests that run without root. It
// is not a jail: processes run directly on the host with os/exec, as the
// test's own user, with no namespaces, rootfs, id mapping or limits. With a
// TTY a process gets a host pseudo-terminal from github.com/creack/pty;
// without one, pipes. Every process starts in a session of its own, so
// Kill reaches its whole process group.
//
// Differences from the real manager, on purpose:
//   - ProcSpec.Dir is ignored when it does not exist or cannot be entered
//     (the gateway asks for /root, which a non-root user cannot use); the
//     process then starts in the test's working directory.
//   - A relative Argv[0] is looked up in the test process's PATH.
//   - Dial connects from, and Listen listens in, the host's network
//     namespace; a unix Listen path is a host path.
//   - EnvSpec.Linger is ignored: an environment ends at its last Release,
//     and the processes still running in it are hung up and killed.
//
// It records what happened (Started, Live, Specs, Procs) so that tests can
// assert it, and WaitFor lets them wait for a state without sleeping. The
// zero value is ready to use.
type HostManager struct {
	// FailEnvironment, if non-nil, makes every Environment call fail with
	// it (wrapped), as a jail that cannot start would. Set it before the
	// manager is used.
	FailEnvironment error
	// KillGrace is how long Kill waits between SIGHUP and SIGKILL to the
	// process group; 0 means 200ms.
	KillGrace time.Duration

	mu      sync.Mutex
	envs    map[string]*hostEnv
	started []string
	specs   map[string]jail.EnvSpec
	procs   []*hostProc
	changed chan struct{}
}

// Proc is what HostManager recorded about one spawned process.
type Proc struct {
	Key       string          // key of the environment it ran in
	Subsystem string          // as spawned; the fake runs none (see Spawn)
	Argv      []string        // as spawned
	Env       []string        // as spawned
	Dir       string          // as asked for (see HostManager about Dir)
	TTY       *jail.TTY       // nil for pipes
	Killed    bool            // Process.Kill was called while it was running
	Exited    bool            // it has ended and was reaped
	Status    jail.ExitStatus // how it ended, once Exited
}

var _ jail.Manager = (*HostManager)(nil)

// hostEnv is one environment: a key, a reference count and its processes.
type hostEnv struct {
	m         *HostManager
	key       string
	refs      int // guarded by m.mu
	ended     bool
	procs     map[*hostProc]bool
	listeners map[*hostListener]bool // closed when the environment ends
}

// handle is one Environment call's reference; Release is once-only.
type handle struct {
	*hostEnv
	once sync.Once
}

// Environment implements jail.Manager: it returns the live environment for
// key, or starts one, and counts the reference.
func (m *HostManager) Environment(ctx context.Context, key string, spec *jail.EnvSpec) (jail.Env, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start environment %s: %w", key, err)
	}
	if spec == nil {
		return nil, fmt.Errorf("start environment %s: nil spec", key)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.FailEnvironment != nil {
		return nil, fmt.Errorf("start environment %s: %w", key, m.FailEnvironment)
	}
	if m.envs == nil {
		m.envs = map[string]*hostEnv{}
		m.specs = map[string]jail.EnvSpec{}
	}
	e := m.envs[key]
	if e == nil {
		e = &hostEnv{m: m, key: key, procs: map[*hostProc]bool{}, listeners: map[*hostListener]bool{}}
		m.envs[key] = e
		m.started = append(m.started, key)
		m.specs[key] = copySpec(spec)
	}
	e.refs++
	m.notifyLocked()
	return &handle{hostEnv: e}, nil
}

// Release implements jail.Env.
func (h *handle) Release() { h.once.Do(h.hostEnv.release) }

// release drops one reference; the last one ends the environment.
func (e *hostEnv) release() {
	m := e.m
	m.mu.Lock()
	e.refs--
	var left []*hostProc
	var ls []*hostListener
	if e.refs == 0 {
		e.ended = true
		delete(m.envs, e.key)
		for p := range e.procs {
			left = append(left, p)
		}
		for l := range e.listeners {
			ls = append(ls, l)
		}
	}
	m.notifyLocked()
	m.mu.Unlock()
	for _, p := range left {
		p.hangup()
	}
	for _, l := range ls {
		l.Close()
	}
}

// Dial implements jail.Env; the fake dials from the host.
func (e *hostEnv) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// Started returns the keys of the environments started, in order; a key
// appears again each time its environment is started anew.
func (m *HostManager) Started() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.started...)
}

// Live returns the number of environments that have not ended.
func (m *HostManager) Live() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.envs)
}

// Specs returns the last EnvSpec each key was started with (copies).
func (m *HostManager) Specs() map[string]*jail.EnvSpec {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]*jail.EnvSpec, len(m.specs))
	for k, spec := range m.specs {
		c := copySpec(&spec)
		out[k] = &c
	}
	return out
}

// Procs returns what was recorded about every process spawned, in order.
func (m *HostManager) Procs() []Proc {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Proc, len(m.procs))
	for i, p := range m.procs {
		out[i] = p.rec
		out[i].Argv = append([]string(nil), p.rec.Argv...)
		out[i].Env = append([]string(nil), p.rec.Env...)
	}
	return out
}

// WaitFor waits until cond returns true, evaluating it again after every
// change the manager records (an environment started or released, a
// process spawned, killed or reaped), or until timeout passes. It reports
// whether cond held. cond may call the manager's other methods.
func (m *HostManager) WaitFor(timeout time.Duration, cond func() bool) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		m.mu.Lock()
		if m.changed == nil {
			m.changed = make(chan struct{})
		}
		changed := m.changed
		m.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-changed:
		case <-timer.C:
			return cond()
		}
	}
}

// notifyLocked wakes WaitFor callers; m.mu must be held.
func (m *HostManager) notifyLocked() {
	if m.changed != nil {
		close(m.changed)
	}
	m.changed = make(chan struct{})
}

// killGrace returns the SIGHUP-to-SIGKILL grace period.
func (m *HostManager) killGrace() time.Duration {
	if m.KillGrace > 0 {
		return m.KillGrace
	}
	return 200 * time.Millisecond
}

// copySpec copies spec deeply enough that the caller cannot change it.
func copySpec(spec *jail.EnvSpec) jail.EnvSpec {
	c := *spec
	c.Caps = append([]string(nil), spec.Caps...)
	if spec.Caps == nil {
		c.Caps = nil
	}
	return c
}

// errEnded is returned by Spawn on an environment that has ended.
var errEnded = errors.New("environment has ended")
