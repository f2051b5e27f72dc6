package jail

import (
	"context"
	"time"

	"golang.org/x/sys/unix"
)

// The gateway's side of the environment's lifetime: the init counts the
// sessions (init_peers_linux.go); this gateway tells it of its own.

// linger is the environment's linger as last configured.
func (e *environment) linger() time.Duration {
	e.pmu.Lock()
	defer e.pmu.Unlock()
	return e.spec.Linger
}

// hold tells the init of a session more (+1) or fewer (-1), with the
// linger and orphan grace now configured (a reload may have changed
// them). A session more waits for the init's answer: ErrEnding if it is
// ending. A session fewer is not answered.
func (e *environment) hold(ctx context.Context, delta int, linger time.Duration) error {
	e.pmu.Lock()
	e.spec.Linger = linger
	e.pmu.Unlock()
	lg, og := linger.Milliseconds(), e.sup.orphanGrace().Milliseconds()
	m := &message{Op: opHold, Code: delta, Linger: &lg, Orphan: &og}
	if delta < 0 {
		return e.request(m)
	}
	r, err := e.call(ctx, m)
	if err != nil {
		return err
	}
	if r.Err != "" {
		return ErrEnding
	}
	return nil
}

// call sends a request that the init answers with the same id.
func (e *environment) call(ctx context.Context, m *message) (*message, error) {
	id, err := e.newID()
	if err != nil {
		return nil, err
	}
	c := make(chan *message, 1)
	e.pmu.Lock()
	e.replies[id] = c
	e.pmu.Unlock()
	forget := func() {
		e.pmu.Lock()
		delete(e.replies, id)
		e.pmu.Unlock()
	}
	m.ID = id
	if err := e.request(m); err != nil {
		forget()
		return nil, err
	}
	select {
	case r := <-c:
		if r == nil {
			return nil, ErrClosed
		}
		return r, nil
	case <-e.done:
		return nil, ErrClosed
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
}

// forget ends this gateway's side of a detached environment, which lives
// on: what waits on it fails, nothing inside is touched.
func (e *environment) forget() {
	e.sup.mu.Lock()
	e.state = envClosed
	if e.sup.envs[e.key] == e {
		delete(e.sup.envs, e.key)
	}
	e.sup.mu.Unlock()
	e.failPending()
	e.ctl.close()
	close(e.done)
}

// failPending ends the waits on the init: its processes, dials and answers.
func (e *environment) failPending() {
	e.pmu.Lock()
	e.dead = true
	procs, dials, replies := e.procs, e.dials, e.replies
	e.procs, e.dials, e.replies = map[uint64]*process{}, map[uint64]chan dialReply{}, map[uint64]chan *message{}
	e.pmu.Unlock()
	for _, p := range procs {
		p.finish(ExitStatus{Signal: unix.SIGKILL})
	}
	for _, c := range dials {
		c <- dialReply{err: ErrClosed}
	}
	for _, c := range replies {
		close(c)
	}
}
