package gateway

import (
	"log/slog"
	"testing"
	"time"

	"github.com/jailgate/jailgate/config"
)

// TestEvictSpareSlowClients: under a burst, a startup whose client has
// sent its version line but not finished its key exchange is slow, not
// stale: a new connection from the same source evicts a silent one after
// evictFloor, but a heard one only after evictHeardFloor (issue 20: a
// class's handshakes took seconds on a saturated CPU and were evicted).
func TestEvictSpareSlowClients(t *testing.T) {
	cfg := &config.Config{Server: config.Server{MaxStartups: 100, PerSourceMaxStartups: 2}}
	a := newAdmission(slog.New(slog.DiscardHandler), make(chan struct{}))
	evicted := map[string]bool{}
	admit := func(name string) *startup {
		su, why := a.admit(cfg, "10.0.0.1", time.Now().Add(time.Second), func() { evicted[name] = true })
		if why != "" {
			t.Fatalf("%s refused: %s", name, why)
		}
		return su
	}
	slow, silent := admit("slow"), admit("silent")
	slow.heard.Store(true)
	t0 := time.Now()
	slow.since, silent.since = t0, t0

	a.mu.Lock()
	got := a.evictStale(cfg, "10.0.0.1", t0.Add(2*time.Second))
	a.mu.Unlock()
	if !got || !evicted["silent"] || evicted["slow"] {
		t.Fatalf("2s in: evicted %v; want the silent one only", evicted)
	}
	a.mu.Lock()
	got = a.evictStale(cfg, "10.0.0.1", t0.Add(5*time.Second))
	a.mu.Unlock()
	if got || evicted["slow"] {
		t.Fatalf("5s in: the slow client that spoke was evicted")
	}
	a.mu.Lock()
	got = a.evictStale(cfg, "10.0.0.1", t0.Add(evictHeardFloor+time.Second))
	a.mu.Unlock()
	if !got || !evicted["slow"] {
		t.Fatalf("past evictHeardFloor: a client that spoke but never finished its key exchange was kept")
	}
}
