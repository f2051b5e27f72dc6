package jail

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Supervisor is the Linux Manager: it starts, shares and ends environments.
type Supervisor struct {
	opts Options
	log  *slog.Logger
	cg   cgroupManager

	mu     sync.Mutex
	envs   map[string]*environment
	ending sync.WaitGroup // environments being torn down
}

// New returns a Supervisor. It picks the cgroup hierarchy and sweeps the
// environment cgroups a crashed gateway left behind.
func New(opts Options) (*Supervisor, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CgroupRoot == "" {
		opts.CgroupRoot = "/sys/fs/cgroup"
	}
	if opts.CgroupPrefix == "" {
		opts.CgroupPrefix = "jailgate"
	}
	if opts.InitPath == "" {
		opts.InitPath = "/proc/self/exe"
	}
	if opts.KillGrace <= 0 {
		opts.KillGrace = 2 * time.Second
	}
	cg, err := newCgroups(opts.CgroupRoot, opts.CgroupPrefix)
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	s := &Supervisor{opts: opts, log: opts.Logger, cg: cg, envs: map[string]*environment{}}
	if err := cg.Sweep(); err != nil {
		s.log.Warn("sweep stale cgroups", "err", err)
	}
	s.log.Info("jail ready", "cgroup", cg.Version())
	return s, nil
}

// enforceable drops, with a warning, each limit the hierarchy cannot
// enforce (limits_enforcement: best-effort).
func (s *Supervisor) enforceable(tenant string, l Limits) Limits {
	parts := []struct {
		name  string
		only  Limits
		clear func(*Limits)
	}{
		{"memory", Limits{Memory: l.Memory, MemorySwap: l.MemorySwap}, func(x *Limits) { x.Memory, x.MemorySwap = 0, 0 }},
		{"pids", Limits{Pids: l.Pids}, func(x *Limits) { x.Pids = 0 }},
		{"cpu", Limits{CPU: l.CPU}, func(x *Limits) { x.CPU = 0 }},
		{"io_weight", Limits{IOWeight: l.IOWeight}, func(x *Limits) { x.IOWeight = 0 }},
	}
	for _, p := range parts {
		if p.only == (Limits{}) {
			continue
		}
		if err := s.cg.Check(p.only); err != nil {
			s.log.Warn("limit not enforced (limits_enforcement: best-effort)", "tenant", tenant, "limit", p.name, "err", err)
			p.clear(&l)
		}
	}
	return l
}

// CheckLimits says precisely what this host lacks to enforce l (a cgroup
// controller not mounted or not enabled), or returns nil.
func (s *Supervisor) CheckLimits(l Limits) error { return s.cg.Check(l) }

// CgroupVersion says which cgroup hierarchy is in use: v1, v2 or none.
func (s *Supervisor) CgroupVersion() string { return s.cg.Version() }

// Environment implements Manager.
func (s *Supervisor) Environment(ctx context.Context, key string, spec *EnvSpec) (Env, error) {
	adopted := false // an environment was started from spec: its teardown calls OnEnd
	defer func() {
		if !adopted && spec.OnEnd != nil {
			spec.OnEnd()
		}
	}()
	for {
		s.mu.Lock()
		e := s.envs[key]
		if e == nil {
			break
		}
		if e.state == envStarting {
			s.mu.Unlock()
			select {
			case <-e.started:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if e.state == envLive {
			e.refs++
			if e.linger != nil {
				e.linger.Stop()
				e.linger = nil
			}
			s.mu.Unlock()
			return &handle{environment: e}, nil
		}
		s.mu.Unlock() // closing: wait for it to go away
		<-e.done
	}
	e := &environment{sup: s, key: key, spec: *spec, state: envStarting,
		started: make(chan struct{}), done: make(chan struct{}),
		procs: map[uint64]*process{}, dials: map[uint64]chan dialReply{}}
	s.envs[key] = e
	s.mu.Unlock()

	t0 := time.Now()
	err := e.start(ctx)
	s.mu.Lock()
	if err != nil {
		delete(s.envs, key)
		e.state = envClosed
		close(e.started)
		close(e.done)
		s.mu.Unlock()
		return nil, fmt.Errorf("jail: start %s: %w", spec.Tenant, err)
	}
	e.state = envLive
	e.refs = 1
	adopted = true
	close(e.started)
	s.mu.Unlock()
	s.log.Info("environment start", "tenant", spec.Tenant, "env", e.name, "duration", time.Since(t0))
	go e.readLoop()
	return &handle{environment: e}, nil
}

// Close ends every environment.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	var all []*environment
	for _, e := range s.envs {
		all = append(all, e)
	}
	s.mu.Unlock()
	for _, e := range all {
		e.close()
	}
	// Environments whose last session just ended are torn down in the
	// background; Close returns only when they are gone too.
	s.ending.Wait()
	return nil
}

// Environment states.
const (
	envStarting = iota
	envLive
	envClosed
)

// environment is one live environment on the gateway's side.
type environment struct {
	sup  *Supervisor
	key  string
	name string // unique, for the cgroup and logs
	spec EnvSpec

	cmd  *exec.Cmd
	ctl  *ctlConn
	cg   cgroupHandle
	sent sync.Mutex // one request datagram at a time

	// Guarded by sup.mu.
	state   int
	refs    int
	linger  *time.Timer
	started chan struct{}
	done    chan struct{}

	pmu     sync.Mutex // guards the tables below
	nextID  uint64
	procs   map[uint64]*process
	dials   map[uint64]chan dialReply
	dead    bool
	oomSeen int // the cgroup's OOM kill count already reported
}

// start re-executes the gateway binary as the environment's init in fresh
// namespaces (design.md: "How an environment starts") and waits until it is
// ready or says which step failed.
func (e *environment) start(ctx context.Context) error {
	spec := &e.spec
	if spec.IDMap.Size == 0 {
		return errors.New("no host id range for the tenant")
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	e.name = envName(time.Now(), hex.EncodeToString(rnd[:]))

	if spec.Seccomp == SeccompUnconfined {
		e.sup.log.Warn("seccomp disabled for this environment (seccomp: unconfined)", "tenant", spec.Tenant)
	}
	if err := searchable(spec.Rootfs); err != nil {
		return err
	}
	// The init binds the rootfs by path, then checks it is this very
	// directory (the fd): a rename after this point cannot swap it. Its
	// last component must not be a symlink.
	rfd, err := unix.Open(spec.Rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open rootfs", Path: spec.Rootfs, Err: err}
	}
	rootfs := os.NewFile(uintptr(rfd), spec.Rootfs)
	defer rootfs.Close()

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socketpair: %w", err)
	}
	parent, child := os.NewFile(uintptr(fds[0]), "control"), os.NewFile(uintptr(fds[1]), "control")
	defer child.Close()
	unix.SetNonblock(fds[0], true)
	if e.ctl, err = newCtlConn(parent); err != nil {
		return err
	}

	limits := spec.Limits
	if e.sup.opts.BestEffort {
		limits = e.sup.enforceable(spec.Tenant, limits)
	}
	if e.cg, err = e.sup.cg.Create(spec.Tenant, e.name, limits); err != nil {
		e.ctl.close()
		return err
	}
	m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(spec.IDMap.UID), Size: int(spec.IDMap.Size)}}
	g := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(spec.IDMap.GID), Size: int(spec.IDMap.Size)}}
	e.cmd = &exec.Cmd{
		Path: e.sup.opts.InitPath,
		Args: []string{"jailgate", "init"},
		// One P: the init mostly waits, and each P costs it heap caches
		// and a GC worker (≈ 250 KiB of its resident memory).
		Env:        []string{"_JAILGATE_INIT=1", "GOMAXPROCS=1"},
		ExtraFiles: []*os.File{child, rootfs}, // fds 3 and 4 in the init
		Stderr:     &logWriter{log: e.sup.log, tenant: spec.Tenant, env: e.name},
		SysProcAttr: &unix.SysProcAttr{
			Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS |
				unix.CLONE_NEWIPC | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP,
			// Become the tenant's root: the init's host creds (uid 0) are
			// not mapped in the new namespace until it setuids into the range.
			Credential:  &syscall.Credential{Uid: 0, Gid: 0},
			UidMappings: m,
			GidMappings: g,
			// The maps are written by the (root) gateway, so allowing
			// setgroups inside cannot drop a group the host relies on.
			GidMappingsEnableSetgroups: true,
		},
	}
	if err := e.cg.Start(e.cmd); err != nil {
		e.ctl.close()
		e.cg.Destroy()
		return fmt.Errorf("start init: %w", err)
	}
	child.Close()
	fail := func(err error) error {
		e.cmd.Process.Kill()
		e.cmd.Wait()
		e.ctl.close()
		e.cg.Destroy()
		return err
	}
	caps := spec.Caps
	if caps == nil {
		caps = DefaultCaps
	}
	cfg := &initConfig{Rootfs: spec.Rootfs, Hostname: spec.Hostname, Caps: caps, KillGrace: e.sup.opts.KillGrace.Milliseconds(),
		Seccomp: spec.Seccomp, Rlimits: spec.Rlimits}
	if err := e.ctl.send(&message{Op: opConfig, Config: cfg}); err != nil {
		return fail(fmt.Errorf("send config: %w", err))
	}
	type result struct {
		m   *message
		err error
	}
	rc := make(chan result, 1)
	go func() {
		m, files, err := e.ctl.recv()
		closeAll(files)
		rc <- result{m, err}
	}()
	var r result
	select {
	case r = <-rc:
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-time.After(30 * time.Second):
		return fail(errors.New("init did not become ready within 30s"))
	}
	switch {
	case r.err != nil:
		return fail(fmt.Errorf("init exited during setup: %w", r.err))
	case r.m.Op == opFailed && r.m.Step != nil:
		return fail(r.m.Step)
	case r.m.Op != opReady:
		return fail(fmt.Errorf("init sent %q instead of ready", r.m.Op))
	}
	return nil
}

// logWriter turns an init's stderr (Go panics, fatal errors) into log lines.
type logWriter struct {
	log         *slog.Logger
	tenant, env string
	mu          sync.Mutex
	buf         []byte
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

// readLoop dispatches the init's messages until the control socket closes,
// then ends the environment. Every message is the tenant's: ids are looked
// up in the gateway's own tables and anything unexpected ends the loop.
func (e *environment) readLoop() {
	for {
		m, files, err := e.ctl.recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				e.sup.log.Warn("environment control", "tenant", e.spec.Tenant, "env", e.name, "err", err)
			}
			break
		}
		e.dispatch(m, files)
	}
	e.close()
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
