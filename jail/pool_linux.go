package jail

import (
	"errors"
	"sync"
	"time"
)

// pool keeps a few blank inits ready (blank_linux.go): namespaces cloned,
// runtime up, in a pool cgroup at low priority, waiting for an identity.
// A login takes one (take: never waits) and pays only what depends on her
// (start_linux.go); one that finds the pool empty starts cold, as without a
// pool. The pool refills in the background, one blank at a time, to a size
// that follows the recent login rate, capped by `prestart:`.
type pool struct {
	s *Supervisor

	mu     sync.Mutex
	max    int         // prestart: 0 is no pool
	caps   []string    // the bounding set blanks keep: every capability a tenant of the config keeps
	ready  []*blank    // oldest first
	starts []time.Time // environment starts within poolWindow
	slots  uint64      // pool slots made so far (poolSlot)
	pooled uint64      // starts that took a blank
	cold   uint64      // starts that found none
	kick   chan struct{}
	quit   chan struct{}
	done   chan struct{}
	fill   func() // tests: runs before each refill's blank is made
}

// poolWindow is how far back the login rate is counted; poolIdle how long
// a blank beyond the target may wait before it is let go.
const (
	poolWindow = 10 * time.Second
	poolIdle   = time.Minute
)

// PoolOptions configure the pool of blank inits (Supervisor.Prestart).
type PoolOptions struct {
	Size int // at most this many wait (config prestart:); 0: none
	// OwnerBase and OwnerSize are the host uids that create environments'
	// user namespaces (provision.Provisioner.Owners).
	OwnerBase, OwnerSize uint32
	// Caps are the capabilities any tenant keeps (the union over the
	// configuration, where a tenant's nil means DefaultCaps; nil here is
	// DefaultCaps): a blank cuts its bounding set to them while it waits.
	Caps []string
}

// Prestart keeps blank inits ready for logins. It may be called again
// (a reload): a new size applies at once; blanks made for a narrower set
// of capabilities than a tenant's are not given to her.
func (s *Supervisor) Prestart(o PoolOptions) error {
	if o.Size > 0 && o.OwnerSize == 0 {
		return errors.New("prestart needs a range of owner uids")
	}
	if o.Caps == nil {
		o.Caps = DefaultCaps
	}
	if _, err := CapMask(o.Caps); err != nil {
		return err
	}
	s.owners.set(o.OwnerBase, o.OwnerSize)
	p := s.pool
	n := o.Size
	p.mu.Lock()
	p.max, p.caps = n, o.Caps
	running := p.quit != nil
	if !running && n > 0 {
		p.kick, p.quit, p.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go p.run(p.quit)
	}
	p.mu.Unlock()
	p.poke()
	return nil
}

// take returns a ready blank whose bounding set holds caps, or nil: the
// caller starts cold. It counts the start for the pool's size and wakes
// the refill.
func (p *pool) take(caps uint64) *blank {
	p.mu.Lock()
	p.starts = append(p.starts, time.Now())
	var b *blank
	for i, r := range p.ready {
		if r.caps&caps == caps {
			b = r
			p.ready = append(p.ready[:i:i], p.ready[i+1:]...)
			break
		}
	}
	if b != nil {
		p.pooled++
	} else {
		p.cold++
	}
	p.mu.Unlock()
	p.poke()
	return b
}

// poke wakes the refill, if it runs.
func (p *pool) poke() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kick != nil {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// target is the size to keep: one more than the logins of the last
// poolWindow, at most max. mu is held.
func (p *pool) target(now time.Time) int {
	i := 0
	for i < len(p.starts) && now.Sub(p.starts[i]) > poolWindow {
		i++
	}
	p.starts = p.starts[i:]
	return min(p.max, 1+len(p.starts))
}

// nextSlot names a new pool cgroup.
func (p *pool) nextSlot() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.slots++
	return poolSlot(p.slots)
}

// run refills the pool until stop closes quit.
func (p *pool) run(quit chan struct{}) {
	defer close(p.done)
	tick := time.NewTicker(poolWindow / 2)
	defer tick.Stop()
	for {
		select {
		case <-quit:
			return
		case <-p.kick:
		case <-tick.C:
		}
		for p.refill(quit) {
			select {
			case <-quit:
				return
			default:
			}
		}
	}
}

// refill makes one blank if the pool is below its target, or lets go of
// an idle one beyond it; it says whether to look again.
func (p *pool) refill(quit chan struct{}) bool {
	p.mu.Lock()
	now := time.Now()
	want, have := p.target(now), len(p.ready)
	var old *blank
	if have > want && now.Sub(p.ready[0].made) > poolIdle {
		old = p.ready[0]
		p.ready = p.ready[1:]
	}
	fill, caps := p.fill, p.caps
	p.mu.Unlock()
	if old != nil {
		old.discard(p.s)
		return true
	}
	if have >= want {
		return false
	}
	if fill != nil {
		fill()
	}
	b, err := p.s.makeBlank("", poolLimits, 0, caps)
	if err != nil {
		p.s.log.Warn("prestart: a blank environment failed; logins start cold", "err", err)
		select { // back off: the next login or tick tries again
		case <-quit:
		case <-time.After(poolWindow / 2):
		}
		return false
	}
	p.mu.Lock()
	if p.max == 0 || p.quit == nil {
		p.mu.Unlock()
		b.discard(p.s)
		return false
	}
	p.ready = append(p.ready, b)
	p.mu.Unlock()
	return true
}

// stop ends the refill and lets go of every ready blank.
func (p *pool) stop() {
	p.mu.Lock()
	quit, done := p.quit, p.done
	p.quit = nil
	p.mu.Unlock()
	if quit != nil {
		close(quit)
		<-done
	}
	p.mu.Lock()
	ready := p.ready
	p.ready = nil
	p.mu.Unlock()
	for _, b := range ready {
		b.discard(p.s)
	}
}

// Ready says how many blanks wait in the pool (tests, metrics).
func (s *Supervisor) Ready() int {
	s.pool.mu.Lock()
	defer s.pool.mu.Unlock()
	return len(s.pool.ready)
}

// Starts counts the environment starts that took a pool blank and those
// that started cold.
func (s *Supervisor) Starts() (pooled, cold uint64) {
	s.pool.mu.Lock()
	defer s.pool.mu.Unlock()
	return s.pool.pooled, s.pool.cold
}
