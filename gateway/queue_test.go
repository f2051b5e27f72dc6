package gateway_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jailgate/jailgate/config"
)

// TestQueuedConnectionWaitsPastGrace: a connection queued behind a full
// per_source_max_startups waits up to startupQueueGrace × login_grace_time
// for its slot, and its own login_grace_time starts then (issue 20: the
// end of a 1000-login burst from one address timed out in the queue). A
// stalled client holds the one slot for a grace; of the two queued behind
// it, one gets the slot then and holds it a grace more, and the other,
// queued for two graces, must still be served, not refused at one.
func TestQueuedConnectionWaitsPastGrace(t *testing.T) {
	const grace = 300 * time.Millisecond
	h, _ := limitLab(t, func(c *config.Config, _ *config.User) {
		c.Server.MaxStartups, c.Server.PerSourceMaxStartups, c.Server.LoginGraceTime = 100, 1, grace
	})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.5")}}
	var conns []net.Conn
	for i := 0; i < 3; i++ {
		nc, err := d.Dial("tcp", h.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		// Each speaks, then stalls: slow, not stale, so none is evicted.
		io.WriteString(nc, "SSH-2.0-stalled\r\n")
		conns = append(conns, nc)
		time.Sleep(20 * time.Millisecond)
	}
	for i, nc := range conns {
		nc.SetReadDeadline(time.Now().Add(6 * grace))
		line, err := bufio.NewReader(nc).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "SSH-2.0-") {
			t.Errorf("connection %d: %q, %v; want the server's version line", i+1, line, err)
		}
	}
}
