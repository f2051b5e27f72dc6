package gateway

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jailgate/jailgate/config"
)

// admission decides whether a new connection may start: sshd's
// MaxStartups and PerSourceMaxStartups for connections that have not
// authenticated yet, a cap on all connections (max_connections), and the
// per-source penalty (PerSourcePenalties). It keeps the counts those need
// under its own lock; the Server only asks it.
type admission struct {
	log  *slog.Logger
	stop <-chan struct{} // closed when the server closes: waiters give up

	mu          sync.Mutex
	conns       int                   // admitted connections not closed yet
	unauth      int                   // connections not yet authenticated
	unauthBySrc map[string]int        // the same, per source address
	waiting     int                   // connections waiting for a startup slot (admit)
	startups    map[*startup]struct{} // the admitted connections not yet authenticated
	// startupFreed is closed (and replaced) when a startup slot frees up.
	startupFreed chan struct{}
	penalties    map[string]time.Time // source address -> end of its penalty
}

// newAdmission returns an admission whose waiting connections give up
// when stop is closed.
func newAdmission(log *slog.Logger, stop <-chan struct{}) *admission {
	return &admission{
		log:          log,
		stop:         stop,
		unauthBySrc:  map[string]int{},
		startups:     map[*startup]struct{}{},
		startupFreed: make(chan struct{}),
		penalties:    map[string]time.Time{},
	}
}

// tryAdmit decides whether a new connection from src may start now
// (called under a.mu). It returns why not; full says the refusal is only
// for want of a startup slot, which admit waits for. An admitted
// connection counts as open and unauthenticated until closed and
// startupOver say otherwise.
func (a *admission) tryAdmit(cfg *config.Config, src string) (why string, full bool) {
	sv := cfg.Server
	switch {
	case a.penalised(src, time.Now()):
		return "per_source_penalty: repeated authentication failures from " + src, false
	case sv.MaxConnections > 0 && a.conns >= sv.MaxConnections:
		return fmt.Sprintf("max_connections (%d) reached", sv.MaxConnections), false
	case sv.MaxStartups > 0 && a.unauth >= sv.MaxStartups:
		return fmt.Sprintf("max_startups (%d) unauthenticated connections", sv.MaxStartups), true
	case sv.PerSourceMaxStartups > 0 && a.unauthBySrc[src] >= sv.PerSourceMaxStartups:
		return fmt.Sprintf("per_source_max_startups (%d) unauthenticated connections from %s", sv.PerSourceMaxStartups, src), true
	}
	a.conns++
	a.unauth++
	a.unauthBySrc[src]++
	return "", false
}

// startup is an admitted connection's place in the unauthenticated
// counts, from admit until it authenticates or closes (startupOver), or a
// newer connection evicts it.
type startup struct {
	src   string
	since time.Time
	kex   atomic.Bool // its key exchange finished (the first auth request came)
	heard atomic.Bool // the client has sent something (its version line comes first)
	over  atomic.Bool // out of the counts
	evict func()      // closes the connection
}

// evictFloor is how long a startup whose client has sent nothing is safe
// from eviction: a real client sends its version line at once, so a flood
// can only evict connections that are stale. evictHeardFloor is the same
// for a client that has spoken but not finished its key exchange: under a
// burst that saturates the CPU (a class of 200 logging in behind one NAT)
// a real handshake takes seconds, and evicting it after one lost logins
// that were merely slow (issue 20's morning bench lost 2-4 of 200).
const (
	evictFloor      = time.Second
	evictHeardFloor = 10 * time.Second
)

// evictable says whether s may make room for a new connection at now.
func (s *startup) evictable(now time.Time) bool {
	floor := evictFloor
	if s.heard.Load() {
		floor = evictHeardFloor
	}
	return !s.kex.Load() && now.Sub(s.since) >= floor
}

// evictStale makes room for a new connection from src (called under a.mu,
// after tryAdmit found the startup caps full): it evicts the oldest startup
// that has not finished its key exchange and is evictable (stale), from
// src if per_source_max_startups is what is full, else from any source.
// It reports whether it evicted one.
func (a *admission) evictStale(cfg *config.Config, src string, now time.Time) bool {
	sameSrc := cfg.Server.PerSourceMaxStartups > 0 && a.unauthBySrc[src] >= cfg.Server.PerSourceMaxStartups
	var oldest *startup
	for s := range a.startups {
		if !s.evictable(now) || (sameSrc && s.src != src) {
			continue
		}
		if oldest == nil || s.since.Before(oldest.since) {
			oldest = s
		}
	}
	if oldest == nil {
		return false
	}
	a.log.Info("startup evicted: a new connection needs its slot and it has not finished key exchange",
		"src", oldest.src, "age", now.Sub(oldest.since).Round(time.Millisecond))
	a.overLocked(oldest)
	oldest.evict()
	return true
}

// startupQueueFactor times the larger of max_startups and
// per_source_max_startups is how many connections may wait for a startup
// slot at once; past that they are refused. A new connection first evicts
// a stale startup (evictStale), and waits only when there is none.
const startupQueueFactor = 10

// startupQueueGrace times login_grace_time bounds a connection's wait for
// a startup slot. Waiting costs a goroutine and an unread socket, no
// handshake work; 1000 logins from one address, served
// per_source_max_startups (10) at a time on two CPUs, took 80 s, and with
// the wait bounded by login_grace_time (30 s) the last 102 were refused
// (issue 20's bench).
const startupQueueGrace = 4

// admit admits a connection from src as tryAdmit does, except that one
// refused only because max_startups or per_source_max_startups is reached
// waits, unread, for a slot until deadline: a burst of logins (a class at
// 9:00, all behind one NAT) is served in turn instead of being dropped as
// sshd's MaxStartups drops it, while the handshake work at any moment stays
// bounded. A waiting connection costs a goroutine and a socket; at most
// startupQueueFactor × the larger cap wait. It returns the connection's
// startup (evict closes the connection), or why it is refused.
func (a *admission) admit(cfg *config.Config, src string, deadline time.Time, evict func()) (*startup, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	why := a.admitLocked(cfg, src, deadline)
	if why != "" {
		return nil, why
	}
	s := &startup{src: src, since: time.Now(), evict: evict}
	a.startups[s] = struct{}{}
	return s, ""
}

// admitLocked is admit's decision, under a.mu.
func (a *admission) admitLocked(cfg *config.Config, src string, deadline time.Time) string {
	why, full := a.tryAdmit(cfg, src)
	// At most two evictions: one per startup cap.
	for i := 0; i < 2 && full && a.evictStale(cfg, src, time.Now()); i++ {
		why, full = a.tryAdmit(cfg, src)
	}
	if why == "" || !full {
		return why
	}
	limit := startupQueueFactor * max(cfg.Server.MaxStartups, cfg.Server.PerSourceMaxStartups)
	if a.waiting >= limit {
		return fmt.Sprintf("%s, and %d connections already waiting", why, a.waiting)
	}
	a.waiting++
	defer func() { a.waiting-- }()
	a.log.Info("connection waiting for a startup slot", "src", src, "reason", why, "waiting", a.waiting)
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		freed := a.startupFreed
		a.mu.Unlock()
		select {
		case <-freed:
		case <-t.C:
			a.mu.Lock()
			return why + fmt.Sprintf(" (waited %d× login_grace_time)", startupQueueGrace)
		case <-a.stop:
			a.mu.Lock()
			return "shutting down"
		}
		a.mu.Lock()
		select {
		case <-a.stop:
			return "shutting down"
		default:
		}
		if why, full = a.tryAdmit(cfg, src); why == "" || !full {
			return why
		}
	}
}

// startupOver takes an admitted connection out of the unauthenticated
// counts: it authenticated, or it closed before that. Only the first call
// for s (or an eviction before it) counts.
func (a *admission) startupOver(s *startup) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.overLocked(s)
}

// overLocked is startupOver under a.mu.
func (a *admission) overLocked(s *startup) {
	if !s.over.CompareAndSwap(false, true) {
		return
	}
	delete(a.startups, s)
	a.unauth--
	if a.unauthBySrc[s.src]--; a.unauthBySrc[s.src] <= 0 {
		delete(a.unauthBySrc, s.src)
	}
	if a.waiting > 0 { // wake the waiting connections (admit)
		close(a.startupFreed)
		a.startupFreed = make(chan struct{})
	}
}

// closed takes an admitted connection out of the max_connections count.
func (a *admission) closed() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conns--
}

// hostOf is the address part of a remote address.
func hostOf(a net.Addr) string {
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}

// Penalties (sshd PerSourcePenalties, authfail only): every connection
// that ends without authenticating after refused keys adds
// per_source_penalty to its address; past penaltyThreshold of it the
// address is refused until the penalty runs out, capped at penaltyMax.
const (
	penaltyThreshold = 30 * time.Second
	penaltyMax       = 10 * time.Minute
)

// penaltySlowdown divides an address's pending penalty into the wait
// before each of its refused keys is answered, so an address that keeps
// failing is slowed down before it is refused: at the default 5s a
// connection, one failed connection makes the next refusal wait ~83ms,
// five ~417ms, and the sixth reaches the threshold.
const penaltySlowdown = 60

// slowdown is how long a refused key from src waits for its answer.
func (a *admission) slowdown(src string) time.Duration {
	a.mu.Lock()
	until, ok := a.penalties[src]
	a.mu.Unlock()
	if !ok {
		return 0
	}
	return max(time.Until(until), 0) / penaltySlowdown
}

// penalised reports whether src is refused for now (called under a.mu).
func (a *admission) penalised(src string, now time.Time) bool {
	until, ok := a.penalties[src]
	if !ok {
		return false
	}
	if !until.After(now) {
		delete(a.penalties, src)
		return false
	}
	return until.Sub(now) >= penaltyThreshold
}

// penalise adds a failed connection's penalty to its address.
func (a *admission) penalise(cfg *config.Config, src string) {
	sv := cfg.Server
	if sv.PerSourcePenalty <= 0 || exempt(sv.PerSourcePenaltyExempt, src) {
		return
	}
	now := time.Now()
	a.mu.Lock()
	was := a.penalised(src, now)
	until := a.penalties[src]
	if until.Before(now) {
		until = now
	}
	until = until.Add(sv.PerSourcePenalty)
	if until.Sub(now) > penaltyMax {
		until = now.Add(penaltyMax)
	}
	a.penalties[src] = until
	started := !was && a.penalised(src, now)
	a.mu.Unlock()
	if started {
		a.log.Warn("penalty starts: refusing the address after repeated authentication failures",
			"remote", src, "until", until.Format(time.RFC3339))
	}
}

// exempt reports whether src lies in one of the CIDRs.
func exempt(cidrs []string, src string) bool {
	ip := net.ParseIP(src)
	for _, c := range cidrs {
		if _, n, err := net.ParseCIDR(c); err == nil && ip != nil && n.Contains(ip) {
			return true
		}
	}
	return false
}
