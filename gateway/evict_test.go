package gateway_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jailgate/jailgate/config"
)

// TestSameSourceFloodEvicts is issue 16 item 7: 200 idle TCP connections
// from one address (a NAT, a campus proxy) fill per_source_max_startups
// and the wait queue; a real client from that same address then logs in
// promptly, because a new connection evicts the oldest startup that has
// not finished its key exchange instead of waiting behind it.
func TestSameSourceFloodEvicts(t *testing.T) {
	h, signer := limitLab(t, func(c *config.Config, _ *config.User) {
		c.Server.MaxStartups, c.Server.PerSourceMaxStartups = 100, 10
	})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	for i := 0; i < 200; i++ {
		nc, err := d.Dial("tcp", h.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
	}
	time.Sleep(1100 * time.Millisecond) // past the eviction floor: they are stale, not slow
	begin := time.Now()
	c, err := dialFrom(t, "127.0.0.2", h.Addr, "alice", signer)
	if err != nil {
		t.Fatalf("alice from the flooding address: %v", err)
	}
	c.Close()
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("alice from the flooding address took %v to log in", took)
	}
	if !strings.Contains(h.Logs(), "evicted") {
		t.Errorf("no eviction logged:\n%s", h.Logs())
	}
}
