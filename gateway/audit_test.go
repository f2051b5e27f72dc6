package gateway_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jailgate/jailgate/gateway"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// lockedBuffer is a bytes.Buffer safe for the logger and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAuditLog: a scripted login, exec, failed login and reload produce the
// expected events with their fields, and none of the tenant's input.
func TestAuditLog(t *testing.T) {
	var audit lockedBuffer
	signer, pub := gatewaytest.NewKey(t)
	cfg := gatewaytest.Config(gatewaytest.User("alice", pub))
	h := gatewaytest.Start(t, cfg, &jailtest.HostManager{}, func(o *gateway.Options) {
		o.Logger = slog.New(gateway.Tee{A: o.Logger.Handler(), B: gateway.NewAuditHandler(&audit)})
	})
	want := []string{"connect", "auth.success", "session.start", "session.end", "disconnect",
		"connect", "auth.failure", "disconnect", "config.reload"}
	parse := func() []map[string]any {
		var events []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(audit.String()), "\n") {
			var ev map[string]any
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("audit line is not JSON: %q", line)
			}
			events = append(events, ev)
		}
		return events
	}
	// Wait for n events: the disconnects are logged as the server notices.
	waitEvents := func(n int) []map[string]any {
		deadline := time.Now().Add(5 * time.Second)
		for {
			if events := parse(); len(events) >= n || time.Now().After(deadline) {
				return events
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := c.NewSession()
	s.Setenv("LANG", "secret-lang-value")
	s.Stdin = strings.NewReader("typed-secret\n")
	if out, err := s.Output("cat; echo done"); err != nil || !strings.HasSuffix(string(out), "done\n") {
		t.Fatalf("exec: %q %v", out, err)
	}
	s.Close()
	waitEvents(4) // the session's end is logged as the server notices it
	c.Close()
	waitEvents(5) // her connection's events, in order, before the next one
	stranger, _ := gatewaytest.NewKey(t)
	if c2, err := gatewaytest.Dial(t, h.Addr, "alice", stranger); err == nil {
		c2.Close()
	}
	waitEvents(len(want) - 1)
	h.Server.SetConfig(cfg) // a reload (of the same snapshot)
	events := waitEvents(len(want))
	var names []string
	for _, ev := range events {
		names = append(names, ev["event"].(string))
		if _, err := time.Parse(time.RFC3339, ev["time"].(string)); err != nil {
			t.Errorf("event time %v is not RFC 3339", ev["time"])
		}
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("events %v, want %v", names, want)
	}
	start, fail := events[2], events[6]
	if start["kind"] != "exec" || start["command"] != "cat; echo done" || start["tenant"] != "alice" || start["connection"] == nil {
		t.Errorf("session.start = %v", start)
	}
	if fail["user"] != "alice" || fail["fingerprint"] == nil || fail["reason"] != "key not listed" {
		t.Errorf("auth.failure = %v", fail)
	}
	if events[1]["method"] != "publickey" || events[3]["bytes_in"] != float64(len("typed-secret\n")) || events[3]["bytes_out"] != float64(len("typed-secret\ndone\n")) {
		t.Errorf("auth.success %v / session.end %v: method or byte counts wrong", events[1], events[3])
	}
	if events[1]["fingerprint"] == nil || events[3]["exit"] != "0" {
		t.Errorf("auth.success %v / session.end %v lack fingerprint or exit", events[1], events[3])
	}
	for _, secret := range []string{"secret-lang-value", "typed-secret"} {
		if strings.Contains(audit.String(), secret) {
			t.Errorf("the audit log contains tenant input %q", secret)
		}
	}
}

// TestAuditRejectedReload: the serve command's summary line for a rejected
// reload becomes a config.reload event with result error.
func TestAuditRejectedReload(t *testing.T) {
	var audit lockedBuffer
	log := slog.New(gateway.NewAuditHandler(&audit))
	log.Error("reload rejected: jailgate.yaml:3: users.x: bad") // per-problem lines are not events
	log.Error("reload rejected", "config", "/etc/jailgate.yaml", "errors", 1)
	lines := strings.Split(strings.TrimSpace(audit.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("audit lines %q, want exactly the summary", lines)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
		t.Fatal(err)
	}
	if ev["event"] != "config.reload" || ev["result"] != "error" || ev["errors"] != 1.0 {
		t.Errorf("event %v", ev)
	}
}

// TestAuditUpgrade: serve's handover lines become gateway.upgrade events
// with both pids and versions, ok or error.
func TestAuditUpgrade(t *testing.T) {
	var audit lockedBuffer
	log := slog.New(gateway.NewAuditHandler(&audit))
	log.Info("upgrade", "old_pid", 10, "new_pid", 11, "old_version", "v1", "new_version", "v2")
	log.Error("upgrade failed", "old_pid", 11, "old_version", "v2", "err", "child exited")
	lines := strings.Split(strings.TrimSpace(audit.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("audit lines %q, want two", lines)
	}
	var ok, failed map[string]any
	json.Unmarshal([]byte(lines[0]), &ok)
	json.Unmarshal([]byte(lines[1]), &failed)
	if ok["event"] != "gateway.upgrade" || ok["result"] != "ok" || ok["old_pid"] != 10.0 || ok["new_pid"] != 11.0 || ok["new_version"] != "v2" {
		t.Errorf("upgrade event %v", ok)
	}
	if failed["event"] != "gateway.upgrade" || failed["result"] != "error" || failed["err"] != "child exited" {
		t.Errorf("failed upgrade event %v", failed)
	}
}
