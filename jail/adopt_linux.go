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
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ctl, sessions, proc, err := dialInit(dctx, s.opts.RecordDir, r)
	if err != nil {
		s.endRecorded(r)
		return err
	}
	spec, err := specFor(ctx, r)
	if errors.Is(err, ErrLeave) {
		ctl.close()
		proc.release()
		return err
	}
	e := &environment{sup: s, key: r.Key, name: r.Name, token: r.Token, cmd: proc, ctl: ctl, state: envLive,
		started: make(chan struct{}), done: make(chan struct{}),
		procs: map[uint64]*process{}, dials: map[uint64]chan dialReply{}, replies: map[uint64]chan *message{}}
	close(e.started)
	if spec != nil {
		e.spec = *spec
	} else {
		e.spec = EnvSpec{Tenant: r.Tenant, IDMap: r.IDMap}
	}
	limits := e.spec.Limits
	if s.opts.BestEffort {
		limits = s.enforceable(r.Tenant, limits)
	}
	if e.cg, err = s.cg.Open(r.Tenant, r.Name, limits); err == nil && r.NAT != nil {
		err = s.adoptNetwork(e, r)
	}
	if err == nil && spec == nil {
		err = errors.New("her tenant is no longer in the config")
	}
	if err != nil {
		if e.cg == nil {
			e.cg = noHandle{}
		}
		go e.readLoop() // its EOF after the kill tears it down
		e.close()
		return err
	}
	s.mu.Lock()
	if old := s.envs[r.Key]; old != nil {
		s.mu.Unlock()
		go e.readLoop()
		e.close()
		return fmt.Errorf("key %s is taken by environment %s", r.Key, old.name)
	}
	s.envs[r.Key] = e
	s.mu.Unlock()
	go e.readLoop()
	// Her linger and the orphan grace as the config says now.
	e.hold(ctx, 0, spec.Linger)
	s.log.Info("environment adopted", "tenant", r.Tenant, "env", r.Name, "age", time.Since(r.Created).Round(time.Second),
		"sessions", sessions, "spec_changed", r.Spec != spec.hash())
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
}
