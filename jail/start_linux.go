package jail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// startReadyTimeout bounds how long an init may take over its setup.
const startReadyTimeout = 30 * time.Second

// starting is one environment start in progress: what its steps made so
// far, and how to undo it if a later step fails.
type starting struct {
	ctx     context.Context
	e       *environment
	network string   // the spec's network mode, "" made NetworkNone
	nat     *natNet  // NetworkNAT: eth0 as the network step made it
	rootfs  *os.File // the rootfs, O_PATH: sent to the init with its config
	blank   *blank   // the init it becomes
	listen  *os.File // the socket later gateways reach it on, sent with the config (nil: not adoptable)
	veth    string   // NetworkNAT: the host end's name, for the record
	undo    []func() // each step's cleanup, run last first if a later step fails
}

// startStep is one step of the gateway's side of a start.
type startStep struct {
	name string // the failing StepError's Step
	run  func(*starting) error
}

// start turns a blank init (blank_linux.go: fresh namespaces, its runtime
// up, nobody's yet; from the pool, or made now) into her environment
// (design.md: "How an environment starts") and waits until it is ready or
// says which step failed. These are the gateway's steps; the init's are
// setup()'s. With a pooled blank only what depends on her is left on the
// login's path: maps, cgroup, network, config and the init's setup. A
// failure is a *StepError naming its step: one of these, or the init's.
func (e *environment) start(ctx context.Context) error {
	steps := []startStep{
		{"spec", checkSpec},        // refuse what cannot start: no id range, an unknown network mode
		{"rootfs", openRootfs},     // pin the tenant's tree by fd: a later rename cannot swap it
		{"init", takeBlank},        // a blank init from the pool, or one made now in her cgroup
		{"maps", writeMaps},        // her ids: root inside is her base uid on the host
		{"cgroup", placeBlank},     // a pooled one moves into her cgroup, with her limits
		{"control", listenControl}, // the socket later gateways reach it on (records_linux.go)
		{"network", setupNetwork},  // the mode's setup from outside the netns (none: nothing)
		{"config", sendConfig},     // what the init needs to build the jail from inside
		{"ready", awaitReady},      // the init's setup() ran, or it names the step that failed
		{"record", writeRecord},    // what a later gateway adopts it by (records_linux.go)
	}
	s := &starting{ctx: ctx, e: e}
	defer s.closeFiles()
	for _, step := range steps {
		if err := step.run(s); err != nil {
			for i := len(s.undo) - 1; i >= 0; i-- {
				s.undo[i]()
			}
			return asStepError(step.name, err)
		}
	}
	return nil
}

// asStepError names step as where err happened, unless err already names
// its step (the init's setup does).
func asStepError(step string, err error) *StepError {
	var se *StepError
	if errors.As(err, &se) {
		return se
	}
	return &StepError{Step: step, Err: err.Error(), Cause: err}
}

// closeFiles closes the gateway's copies of what the init was sent.
func (s *starting) closeFiles() {
	for _, f := range []*os.File{s.rootfs, s.listen} {
		if f != nil {
			f.Close()
		}
	}
}

// checkSpec refuses a spec no environment can start from, before anything
// is made for it.
func checkSpec(s *starting) error {
	spec := &s.e.spec
	if spec.IDMap.Size == 0 {
		return errors.New("no host id range for the tenant")
	}
	mode, err := networkMode(spec.Network)
	if err != nil {
		return err
	}
	s.network = mode
	if spec.Seccomp == SeccompUnconfined {
		s.e.sup.log.Warn("seccomp disabled for this environment (seccomp: unconfined)", "tenant", spec.Tenant)
	}
	return nil
}

// openRootfs checks the tenant's ids can reach her rootfs and clones it as
// a detached mount tree (open_tree), which the init attaches: a rename
// after this point cannot swap it. Its last component must not be a
// symlink.
func openRootfs(s *starting) error {
	root := s.e.spec.Rootfs
	if err := searchable(root); err != nil {
		return err
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open rootfs", Path: root, Err: err}
	}
	defer unix.Close(fd)
	// A detached copy of the mounts at and under it (a bind, not yet
	// attached anywhere): the init attaches it in its own mount namespace,
	// which, for a pool blank, was copied from the host's before her layer
	// was mounted; a path would name nothing there.
	tree, err := unix.OpenTree(fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return &os.PathError{Op: "open_tree rootfs", Path: root, Err: err}
	}
	s.rootfs = os.NewFile(uintptr(tree), root)
	return nil
}

// takeBlank takes a blank init from the pool, or makes one now, born in
// her cgroup with her limits (the cold path: the pool is empty or off).
func takeBlank(s *starting) error {
	e := s.e
	caps := e.spec.Caps
	if caps == nil {
		caps = DefaultCaps
	}
	mask, err := CapMask(caps)
	if err != nil {
		return err
	}
	b, pooled := e.sup.pool.take(mask), true
	if b == nil {
		pooled = false
		if b, err = e.sup.coldBlank(s.ctx, e.spec.Tenant, e.limits(), e.spec.IDMap.UID, caps); err != nil {
			return err
		}
	}
	b.log.setTenant(e.spec.Tenant)
	e.name, e.ctl, e.cmd, e.cg, e.owner, e.pooled = b.name, b.ctl, b.cmd, b.cg, b.owner, pooled
	s.blank = b
	s.undo = append(s.undo, func() {
		b.cg = e.cg // placed: her cgroup now
		b.discard(e.sup)
	})
	return nil
}

// limits are her limits, less those this host cannot enforce under
// limits_enforcement: best-effort.
func (e *environment) limits() Limits {
	if e.sup.opts.BestEffort {
		return e.sup.enforceable(e.spec.Tenant, e.spec.Limits)
	}
	return e.spec.Limits
}

// writeMaps maps her namespace's ids 0… to her host range. The gateway
// is root on the host, which user_namespaces(7) requires to map more than
// the writer's own id; setgroups stays allowed, since only root wrote the
// maps (a group the host relies on cannot be dropped by her).
func writeMaps(s *starting) error {
	pid, m := s.e.cmd.Process.Pid, s.e.spec.IDMap
	for _, f := range []struct {
		name string
		host uint32
	}{{"uid_map", m.UID}, {"gid_map", m.GID}} {
		p := fmt.Sprintf("/proc/%d/%s", pid, f.name)
		if err := os.WriteFile(p, fmt.Appendf(nil, "0 %d %d\n", f.host, m.Size), 0); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

// placeBlank moves a pooled init into her cgroup with her limits: her
// tenant cgroup is the pool slot renamed when she has none yet (no process
// moves), else the init joins a new one under hers (cgroupManager.Place);
// and it runs at normal priority from now on. A cold init was born there.
func placeBlank(s *starting) error {
	e, b := s.e, s.blank
	if b.slot == "" {
		return nil
	}
	cg, err := e.sup.cg.Place(b.slot, e.spec.Tenant, e.name, e.cmd.Process.Pid, e.limits())
	if err != nil {
		return err
	}
	e.cg = cg
	renice(e.cmd.Process.Pid)
	return nil
}

// sendConfig gives the init what it needs to build the jail from inside.
func sendConfig(s *starting) error {
	e := s.e
	caps := e.spec.Caps
	if caps == nil {
		caps = DefaultCaps
	}
	cfg := &initConfig{Rootfs: e.spec.Rootfs, Hostname: e.spec.Hostname, Caps: caps,
		KillGrace: e.sup.opts.KillGrace.Milliseconds(), Seccomp: e.spec.Seccomp,
		Rlimits: e.spec.Rlimits, Network: s.network, NAT: s.nat, PTYs: e.spec.Limits.PTYs, Tmp: e.spec.Limits.Tmp,
		Token: e.token, Linger: e.spec.Linger.Milliseconds(), Orphan: e.sup.orphanGrace().Milliseconds()}
	fds := []int{int(s.rootfs.Fd())}
	if s.listen != nil {
		fds = append(fds, int(s.listen.Fd()))
	}
	if err := e.ctl.send(&message{Op: opConfig, Config: cfg}, fds...); err != nil {
		return fmt.Errorf("send config: %w", err)
	}
	return nil
}

// awaitReady waits for the init to say ready, or which of its steps failed.
func awaitReady(s *starting) error {
	if err := awaitInit(s.ctx, s.e.ctl, "setup"); err != nil {
		return err
	}
	if s.blank.slot != "" {
		renice(s.e.cmd.Process.Pid) // the threads its setup made too
	}
	return nil
}

// awaitInit waits for the init's answer to what it was asked to do: ready,
// or failed with the StepError that says where.
func awaitInit(ctx context.Context, ctl *ctlConn, what string) error {
	type result struct {
		m   *message
		err error
	}
	rc := make(chan result, 1)
	go func() {
		m, files, err := ctl.recv()
		closeAll(files)
		rc <- result{m, err}
	}()
	var r result
	select {
	case r = <-rc:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(startReadyTimeout):
		return fmt.Errorf("init did not finish its %s within %v", what, startReadyTimeout)
	}
	switch {
	case r.err != nil:
		return fmt.Errorf("init exited during its %s: %w", what, r.err)
	case r.m.Op == opFailed && r.m.Step != nil:
		return r.m.Step
	case r.m.Op != opReady:
		return fmt.Errorf("init sent %q instead of ready", r.m.Op)
	}
	return nil
}

// searchable checks that the tenant's root (an unprivileged host uid) can
// reach the rootfs: every directory above it must be searchable by others.
func searchable(rootfs string) error {
	for dir := filepath.Dir(rootfs); ; dir = filepath.Dir(dir) {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return &os.PathError{Op: "stat", Path: dir, Err: err}
		}
		if st.Mode&0o001 == 0 {
			return fmt.Errorf("rootfs %s: %s is not searchable by the tenant's ids (mode %04o); run: chmod o+x %s",
				rootfs, dir, st.Mode&0o7777, dir)
		}
		if dir == "/" {
			return nil
		}
	}
}

// logWriter turns an init's stderr (Go panics, fatal errors) into log lines.
type logWriter struct {
	log         *slog.Logger
	tenant, env string // guarded by mu
	mu          sync.Mutex
	buf         []byte
}

// setTenant names the tenant a blank init became.
func (w *logWriter) setTenant(tenant string) {
	w.mu.Lock()
	w.tenant = tenant
	w.mu.Unlock()
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for len(w.buf) > 0 {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > 4096 {
				i = len(w.buf)
			} else {
				break
			}
		}
		w.log.Warn("init: "+string(w.buf[:i]), "tenant", w.tenant, "env", w.env)
		if i < len(w.buf) {
			i++
		}
		w.buf = w.buf[i:]
	}
	return len(p), nil
}
