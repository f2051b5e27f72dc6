package jail

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrLeave, from an AdoptFunc, leaves an environment as it is: not adopted,
// not ended (its tenant was removed under revoke: keep-sessions; it ends
// after orphan grace and linger).
var ErrLeave = errors.New("left to its linger")

// AdoptFunc gives the spec a recorded environment's tenant has in the
// current config (and acquires what its OnEnd releases, such as her
// mounted layer, without mounting it again). A nil spec and nil error
// mean her tenant is gone: the environment is ended.
type AdoptFunc func(ctx context.Context, r *EnvRecord) (*EnvSpec, error)

// Found returns the live environments recorded when the Supervisor was made.
func (s *Supervisor) Found() []*EnvRecord { return s.found }

// Adopt takes over every live environment New found under
// Options.RecordDir: each is connected to, given the current config's
// limits (specFor), and joinable by its key again. One whose init does not
// answer is ended and cleaned up; one whose tenant is gone is ended.
func (s *Supervisor) Adopt(ctx context.Context, specFor AdoptFunc) int {
	n := 0
	keep := map[string]bool{}
	for _, r := range s.found {
		if err := s.adopt(ctx, r, specFor); err != nil {
			if errors.Is(err, ErrLeave) {
				keep[r.Name] = true
				s.log.Info("environment left to its linger", "tenant", r.Tenant, "env", r.Name, "reason", "tenant removed (revoke: keep-sessions)")
				continue
			}
			s.log.Warn("environment not adopted; ended", "tenant", r.Tenant, "env", r.Name, "err", err)
			continue
		}
		keep[r.Name] = true
		n++
	}
	s.found = nil
	// The cgroups of those that could not be adopted, now that their
	// inits are gone (a live gateway's own environments are never stale).
	if err := s.cg.Sweep(keep); err != nil {
		s.log.Warn("sweep stale cgroups", "err", err)
	}
	return n
}

// adopt takes over one recorded environment, or ends it.
func (s *Supervisor) adopt(ctx context.Context, r *EnvRecord, specFor AdoptFunc) error {
	spec, err := specFor(ctx, r)
	if errors.Is(err, ErrLeave) {
		return err
	}
	e := s.adopted(r.Key, spec, r)
	sessions, err := s.attach(ctx, e, r, false)
	if err == nil && spec == nil {
		err = errors.New("her tenant is no longer in the config")
	}
	if err != nil {
		s.endAttached(e, r)
		return err
	}
	s.mu.Lock()
	if old := s.envs[r.Key]; old != nil {
		s.mu.Unlock()
		go e.readLoop()
		e.close()
		return fmt.Errorf("key %s is taken by environment %s", r.Key, old.name)
	}
	e.state = envLive
	close(e.started)
	s.envs[r.Key] = e
	s.mu.Unlock()
	go e.readLoop()
	// Her linger and the orphan grace as the config says now.
	e.hold(ctx, 0, spec.Linger)
	s.logAdopted(r, spec, sessions)
	return nil
}

// adopted is the gateway's side of a recorded environment, before attach.
func (s *Supervisor) adopted(key string, spec *EnvSpec, r *EnvRecord) *environment {
	if r.Owner != 0 {
		s.owners.adopt(r.Owner)
	}
	e := &environment{sup: s, key: key, name: r.Name, token: r.Token, owner: r.Owner, state: envStarting,
		started: make(chan struct{}), done: make(chan struct{}),
		procs: map[uint64]*process{}, dials: map[uint64]chan dialReply{}, replies: map[uint64]chan *message{}}
	if spec != nil {
		e.spec = *spec
	} else {
		e.spec = EnvSpec{Tenant: r.Tenant, IDMap: r.IDMap}
	}
	return e
}

// attach connects e to its recorded init (holding a first session there
// if hold, for a login) and takes over its cgroup (with the tenant's limits
// as now configured) and its network. It says how many sessions other
// gateways hold.
func (s *Supervisor) attach(ctx context.Context, e *environment, r *EnvRecord, hold bool) (int, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ctl, sessions, proc, err := dialInit(dctx, s.opts.RecordDir, r)
	if err == nil && hold {
		err = holdFirst(dctx, ctl, e.spec.Linger, s.orphanGrace())
		if err != nil {
			ctl.close()
			proc.release()
		}
	}
	if err != nil {
		return 0, err
	}
	e.ctl, e.cmd = ctl, proc
	limits := e.spec.Limits
	if s.opts.BestEffort {
		limits = s.enforceable(r.Tenant, limits)
	}
	if e.cg, err = s.cg.Open(r.Tenant, r.Name, limits); err == nil && r.NAT != nil {
		err = s.adoptNetwork(e, r)
	}
	return sessions, err
}

// endAttached ends an environment attach could not (fully) take over.
func (s *Supervisor) endAttached(e *environment, r *EnvRecord) {
	if e.ctl == nil { // its init did not answer
		s.endRecorded(r)
		return
	}
	if e.cg == nil {
		e.cg = noHandle{}
	}
	close(e.started)
	go e.readLoop() // its EOF after the kill tears it down
	e.close()
}

// logAdopted says an environment was taken over.
func (s *Supervisor) logAdopted(r *EnvRecord, spec *EnvSpec, sessions int) {
	s.log.Info("environment adopted", "tenant", r.Tenant, "env", r.Name, "age", time.Since(r.Created).Round(time.Second),
		"sessions", sessions, "spec_changed", r.Spec != spec.hash())
}

// startOrJoin starts e, unless another gateway on this state_dir (the
// other side of an upgrade) started her environment of the same key since
// this one looked: then e takes that one over. A lock per key keeps two
// gateways from both starting one.
func (e *environment) startOrJoin(ctx context.Context) (joined bool, err error) {
	s := e.sup
	dir := s.opts.RecordDir
	if dir == "" {
		return false, e.start(ctx)
	}
	unlock, err := lockKey(dir, e.key)
	if err != nil {
		return false, err
	}
	defer unlock()
	if r := liveByKey(dir, e.key); r != nil {
		e.name, e.token = r.Name, r.Token
		sessions, err := s.attach(ctx, e, r, true)
		if err == nil {
			s.logAdopted(r, &e.spec, sessions)
			return true, nil
		}
		s.log.Warn("environment of another gateway not taken over; starting one", "tenant", r.Tenant, "env", r.Name, "err", err)
		if e.ctl != nil {
			e.ctl.close() // the session it held there goes with this connection
			e.cmd.release()
		}
		e.ctl, e.cmd, e.cg = nil, nil, nil
	}
	return false, e.start(ctx)
}

// holdFirst holds a first session in an init just dialled, before any
// read loop runs: ErrEnding if it is ending.
func holdFirst(ctx context.Context, ctl *ctlConn, linger, orphan time.Duration) error {
	lg, og := linger.Milliseconds(), orphan.Milliseconds()
	if err := ctl.send(&message{Op: opHold, ID: 1, Code: 1, Linger: &lg, Orphan: &og}); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		ctl.c.SetReadDeadline(dl)
		defer ctl.c.SetReadDeadline(time.Time{})
	}
	m, files, err := ctl.recv()
	closeAll(files)
	switch {
	case err != nil:
		return err
	case m.Op != opHeld || m.ID != 1:
		return fmt.Errorf("init answered %q", m.Op)
	case m.Err != "":
		return ErrEnding
	}
	return nil
}

// adoptNetwork takes over an adopted environment's veth, pair and firewall
// elements; her teardown releases them.
func (s *Supervisor) adoptNetwork(e *environment, r *EnvRecord) error {
	n := s.opts.Network
	if n == nil {
		return errors.New("network: nat: the host network is not set up")
	}
	release, err := n.adopt(r.Veth, r.Name, r.NAT, &e.spec)
	if err != nil {
		return err
	}
	if err := setRate(r.Veth, r.Pid, e.spec.Limits.NetRate); err != nil {
		release()
		return err
	}
	onEnd := e.spec.OnEnd
	e.spec.OnEnd = func() {
		release()
		if onEnd != nil {
			onEnd()
		}
	}
	return nil
}

// endRecorded ends an environment that cannot be adopted: its init if it
// still runs, its cgroup, record and socket.
func (s *Supervisor) endRecorded(r *EnvRecord) {
	if start, err := procStart(r.Pid); err == nil && start == r.Start {
		if p, err := openInit(r); err == nil {
			p.Process.Kill()
			p.Wait()
		}
	}
	removeRecord(s.opts.RecordDir, r.Name) // its cgroup goes with Adopt's last sweep
	forgetKey(s.opts.RecordDir, r.Key, r.Name)
}
