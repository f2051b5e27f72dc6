package jail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// Supervisor is the Linux Manager: it starts, shares and ends environments.
type Supervisor struct {
	opts Options
	log  *slog.Logger
	cg   cgroupManager

	mu     sync.Mutex
	envs   map[string]*environment
	ending sync.WaitGroup // environments being torn down
	found  []*EnvRecord   // live environments recorded at New, for Adopt
	owners owners         // the uids that create environments' user namespaces
	pool   *pool          // blank inits ready for logins (Prestart)
	cold   chan struct{}  // cold starts under way (coldBlank)
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
	s := &Supervisor{opts: opts, log: opts.Logger, cg: cg, envs: map[string]*environment{},
		owners: owners{dir: opts.RecordDir}, cold: make(chan struct{}, coldStarts)}
	s.pool = &pool{s: s}
	// Live environments a crashed or upgrading gateway left are adopted
	// (Adopt), never swept.
	keep := map[string]bool{}
	if opts.RecordDir != "" {
		recs, errs := ReadRecords(opts.RecordDir)
		for _, err := range errs {
			s.log.Warn("environment record skipped and removed", "err", err)
		}
		live := map[uint32]bool{}
		for _, r := range recs {
			keep[r.Name] = true
			live[r.Owner] = true
		}
		s.found = recs
		sweepOwners(opts.RecordDir, live)
	}
	if err := cg.Sweep(keep); err != nil {
		s.log.Warn("sweep stale cgroups", "err", err)
	}
	s.log.Info("jail ready", "cgroup", cg.Version())
	return s, nil
}

// orphanGrace is Options.OrphanGrace; none below 0.
func (s *Supervisor) orphanGrace() time.Duration { return max(s.opts.OrphanGrace, 0) }

// enforceable drops, with a warning, each limit the hierarchy cannot
// enforce (limits_enforcement: best-effort).
func (s *Supervisor) enforceable(tenant string, l Limits) Limits {
	parts := []struct {
		name  string
		only  Limits
		clear func(*Limits)
	}{
		{"memory", Limits{Memory: l.Memory, MemorySwap: l.MemorySwap}, func(x *Limits) { x.Memory, x.MemorySwap, x.SwapAsMemory = 0, 0, false }},
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
	e, err := s.join(ctx, key, spec.Linger)
	if err != nil {
		return nil, err
	}
	if e != nil {
		return &handle{environment: e}, nil
	}
	e = &environment{sup: s, key: key, spec: *spec, state: envStarting,
		started: make(chan struct{}), done: make(chan struct{}),
		procs: map[uint64]*process{}, dials: map[uint64]chan dialReply{}, replies: map[uint64]chan *message{}}
	s.envs[key] = e
	s.mu.Unlock()

	t0 := time.Now()
	joined, err := e.startOrJoin(ctx)
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
	e.refs = 1 // the init counts the starting gateway's first session itself (or held it: joined)
	adopted = true
	close(e.started)
	s.mu.Unlock()
	if !joined {
		s.log.Info("environment start", "tenant", spec.Tenant, "env", e.name, "duration", time.Since(t0), "pooled", e.pooled)
	}
	go e.readLoop()
	return &handle{environment: e}, nil
}

// join holds a session in the live environment of key, waiting for one
// that is starting or ending; linger is her linger as now configured. It
// returns with s.mu held and a nil environment when there is none: the
// caller starts it.
func (s *Supervisor) join(ctx context.Context, key string, linger time.Duration) (*environment, error) {
	for {
		s.mu.Lock()
		e := s.envs[key]
		if e == nil {
			return nil, nil
		}
		switch e.state {
		case envStarting:
			s.mu.Unlock()
			select {
			case <-e.started:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		case envLive:
			e.refs++
			s.mu.Unlock()
			// The init decides whether she may still join: it may be
			// ending right now (no session for its linger), and then a
			// new environment starts once this one is gone.
			err := e.hold(ctx, 1, linger)
			if err == nil {
				return e, nil
			}
			s.mu.Lock()
			e.refs--
			s.mu.Unlock()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		default:
			s.mu.Unlock()
		}
		select { // closing: wait for it to go away
		case <-e.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Detach lets go of every environment without ending it: each init is told
// the gateway leaves cleanly and follows its own linger from now on (a
// stop, or the old side of an upgrade). Close, by contrast, ends them all.
func (s *Supervisor) Detach() error {
	s.pool.stop()
	s.mu.Lock()
	var all []*environment
	for _, e := range s.envs {
		if e.state == envLive {
			e.detached = true
			all = append(all, e)
		}
	}
	s.mu.Unlock()
	for _, e := range all {
		e.request(&message{Op: opBye})
		e.ctl.closeWrite() // the init drops us; readLoop sees whether it ends
	}
	for _, e := range all {
		<-e.done
	}
	s.ending.Wait()
	s.release()
	return nil
}

// Close ends every environment.
func (s *Supervisor) Close() error {
	s.pool.stop()
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
	s.release()
	return nil
}

// release removes what is left empty when the gateway ends: the tenant
// cgroups with no environment, the prefix, the record directory (rmdir
// refuses one still holding a live environment's record).
func (s *Supervisor) release() {
	s.cg.Release()
	if s.opts.RecordDir != "" {
		os.Remove(s.opts.RecordDir)
	}
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

	cmd  *initProc
	ctl  *ctlConn
	cg   cgroupHandle
	sent sync.Mutex // one request datagram at a time

	token  string // what an adopting gateway's hello shows the init (EnvRecord.Token)
	owner  uint32 // the host uid that created its user namespace (owners_linux.go)
	pooled bool   // it was a pool blank: the login did not wait for its namespaces

	// Guarded by sup.mu.
	state    int
	refs     int  // sessions this gateway holds; the init counts every gateway's
	detached bool // let go of (Detach): ending it is not this gateway's business
	started  chan struct{}
	done     chan struct{}

	pmu     sync.Mutex // guards the tables below
	nextID  uint64
	procs   map[uint64]*process
	dials   map[uint64]chan dialReply
	replies map[uint64]chan *message // hold and status requests awaiting the init's answer
	dead    bool
	oomSeen int // the cgroup's OOM kill count already reported
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
	e.sup.mu.Lock()
	detached := e.detached
	e.sup.mu.Unlock()
	// Let go of (Detach): the init drops this gateway and lives on, unless
	// that left it with nothing to wait for (linger 0): then this gateway
	// cleans up after it as after any end.
	if detached && !e.cmd.exitedWithin(detachWait) {
		e.cmd.release()
		e.forget()
		return
	}
	e.close()
}

// detachWait is how long Detach waits to see whether an environment ends
// when this gateway lets go of it.
const detachWait = 500 * time.Millisecond
