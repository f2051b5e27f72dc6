package gateway_test

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/provision"
)

// startWaiting starts `echo ready; cat` in a new session on c and waits
// for ready; closing the returned stdin ends it.
func startWaiting(t *testing.T, c *gossh.Client) (*gossh.Session, io.WriteCloser) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	in, _ := s.StdinPipe()
	out, _ := s.StdoutPipe()
	if err := s.Start("echo ready; cat"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "ready\n", wait)
	return s, in
}

func TestEnvironmentKeys(t *testing.T) {
	cases := []struct {
		mode   string
		prefix string
		count  int
	}{
		{config.EnvTenant, "tenant/alice", 1},
		{config.EnvConnection, "conn/", 2},
		{config.EnvSession, "session/", 3},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			m := &jailtest.HostManager{}
			l := newLab(t, m, tc.mode)
			c1, c2 := l.client(t, "alice"), l.client(t, "alice")
			var sessions []*gossh.Session
			var inputs []io.WriteCloser
			for _, c := range []*gossh.Client{c1, c1, c2} {
				s, in := startWaiting(t, c)
				sessions, inputs = append(sessions, s), append(inputs, in)
			}
			started := m.Started()
			seen := map[string]bool{}
			for _, k := range started {
				if !strings.HasPrefix(k, tc.prefix) {
					t.Errorf("environment key %q, want prefix %q", k, tc.prefix)
				}
				seen[k] = true
			}
			if len(started) != tc.count || len(seen) != tc.count {
				t.Errorf("started %v, want %d distinct environments", started, tc.count)
			}
			if m.Live() != tc.count {
				t.Errorf("Live = %d, want %d", m.Live(), tc.count)
			}
			spec := m.Specs()[started[0]]
			if spec.Tenant != "alice" || spec.Hostname != "alice-lab" || spec.Network != "none" {
				t.Errorf("spec %+v", spec)
			}
			for i, s := range sessions {
				inputs[i].Close()
				if err := s.Wait(); err != nil {
					t.Errorf("session %d: %v", i, err)
				}
			}
			c1.Close()
			c2.Close()
			if !m.WaitFor(wait, func() bool { return m.Live() == 0 }) {
				t.Errorf("Live = %d after every session closed: an Environment without its Release", m.Live())
			}
		})
	}
}

func TestSequentialSessionsReleaseEachTime(t *testing.T) {
	m := &jailtest.HostManager{}
	l := newLab(t, m, config.EnvTenant)
	c := l.client(t, "alice")
	for i := 0; i < 3; i++ {
		if _, _, err := run(t, c, "true"); err != nil {
			t.Fatal(err)
		}
		if !m.WaitFor(wait, func() bool { return m.Live() == 0 }) {
			t.Fatalf("after session %d the environment is still held", i)
		}
	}
	if n := len(m.Started()); n != 3 {
		t.Errorf("started %d times, want 3 (linger 0)", n)
	}
}

var refRE = regexp.MustCompile(`^jailgate: your environment could not start \(ref ([0-9a-f]{6})\)\n$`)

func TestEnvironmentFailure(t *testing.T) {
	m := &jailtest.HostManager{FailEnvironment: errors.New("mount proc on /srv/jails/alice/proc: operation not permitted")}
	l := newLab(t, m, config.EnvTenant)
	c := l.client(t, "alice")
	out, errOut, err := run(t, c, "echo never")
	if code, _, ok := exitStatus(err); !ok || code != 255 || out != "" {
		t.Errorf("stdout %q err %v; want nothing and exit 255", out, err)
	}
	match := refRE.FindStringSubmatch(errOut)
	if match == nil {
		t.Fatalf("stderr %q, want the one-line message with a ref", errOut)
	}
	line := logLine(l.Logs(), "ref="+match[1])
	for _, want := range []string{"tenant=alice", "session=", "step=environment", "operation not permitted", "/srv/jails/alice"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line %q lacks %q", line, want)
		}
	}

	// With a terminal the line goes to the terminal, ending in CRLF.
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm", 24, 80, nil); err != nil {
		t.Fatal(err)
	}
	tout, err := s.Output("true")
	if code, _, ok := exitStatus(err); !ok || code != 255 || !strings.HasPrefix(string(tout), "jailgate: your environment could not start (ref ") || !strings.HasSuffix(string(tout), ")\r\n") {
		t.Errorf("with a pty: %q, %v", tout, err)
	}
}

func TestSpawnFailureReleases(t *testing.T) {
	m := &jailtest.HostManager{}
	key, pub := gatewaytest.NewKey(t)
	u := gatewaytest.User("alice", pub)
	u.Shell = "/nonexistent/shell"
	h := gatewaytest.Start(t, gatewaytest.Config(u), m)
	c, err := gatewaytest.Dial(t, h.Addr, "alice", key)
	if err != nil {
		t.Fatal(err)
	}
	_, errOut, err := run(t, c, "true")
	if code, _, ok := exitStatus(err); !ok || code != 255 || !refRE.MatchString(errOut) || strings.Contains(errOut, "nonexistent") {
		t.Errorf("stderr %q err %v", errOut, err)
	}
	if !strings.Contains(h.Logs(), "step=spawn") {
		t.Errorf("no spawn failure in the log:\n%s", h.Logs())
	}
	if !m.WaitFor(wait, func() bool { return m.Live() == 0 }) {
		t.Error("a failed spawn left its environment held")
	}
}

func TestProvision(t *testing.T) {
	m := &jailtest.HostManager{}
	var calls int
	l := newLab(t, m, config.EnvTenant, func(o *gateway.Options) {
		o.Provision = func(_ context.Context, u *config.User) (*jail.EnvSpec, error) {
			calls++
			spec := provision.SpecFor(u)
			spec.IDMap = jail.IDMap{UID: 100000, GID: 100000, Size: 65536}
			return spec, nil
		}
	})
	if _, _, err := run(t, l.client(t, "alice"), "true"); err != nil {
		t.Fatal(err)
	}
	if spec := m.Specs()["tenant/alice"]; spec == nil || spec.IDMap.UID != 100000 || calls != 1 {
		t.Errorf("spec %+v after %d Provision calls", spec, calls)
	}
}

func TestGarbageAndStalledClients(t *testing.T) {
	m := &jailtest.HostManager{}
	l := newLab(t, m, config.EnvTenant, func(o *gateway.Options) { o.LoginGraceTime = time.Second })
	stalled := dialRaw(t, l.Addr) // sends nothing at all
	midKex := dialRaw(t, l.Addr)  // sends its version, then nothing
	io.WriteString(midKex, "SSH-2.0-stall\r\n")
	garbage := dialRaw(t, l.Addr)
	io.WriteString(garbage, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"+strings.Repeat("\x00\xff", 4096))

	// Meanwhile a real client is served.
	if out, _, err := run(t, l.client(t, "alice"), "echo ok"); err != nil || out != "ok\n" {
		t.Fatalf("a client next to stalled ones: %q, %v", out, err)
	}
	if !closedWithin(garbage, wait) {
		t.Error("the garbage connection is still open")
	}
	if !closedWithin(stalled, wait) {
		t.Error("the stalled connection outlived the login grace time")
	}
	if !closedWithin(midKex, wait) {
		t.Error("the connection stalled in the handshake outlived the login grace time")
	}
	if !strings.Contains(l.Logs(), "login grace time exceeded") {
		t.Errorf("no grace timeout in the log:\n%s", l.Logs())
	}
	// The authenticated client's session outlives the grace time.
	c := l.client(t, "alice")
	s, in := startWaiting(t, c)
	stalledAgain := dialRaw(t, l.Addr)
	if !closedWithin(stalledAgain, wait) { // one grace time has passed
		t.Fatal("stalled connection not closed")
	}
	in.Close()
	if err := s.Wait(); err != nil {
		t.Errorf("a logged-in session was cut by the grace timer: %v", err)
	}
}

// TestClientDisconnectHangsUp: a client that leaves closes her pipes (sshd's
// rule), it does not kill her processes; the fake environment's end (its
// linger is 0) takes them.
func TestClientDisconnectHangsUp(t *testing.T) {
	m := &jailtest.HostManager{}
	l := newLab(t, m, config.EnvTenant)
	c := l.client(t, "alice")
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := s.StdoutPipe()
	if err := s.Start("echo started; sleep 100"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "started", wait)
	c.Close()
	if !m.WaitFor(wait, func() bool { return m.Procs()[0].Exited }) {
		t.Fatalf("process after the client left: %+v", m.Procs()[0])
	}
	if m.Procs()[0].Killed {
		t.Error("the gateway killed the session's processes; it must only close her pipes")
	}
	if st := m.Procs()[0].Status; st.Signal == 0 {
		t.Errorf("status %+v, want ended by a signal", st)
	}
	if !m.WaitFor(wait, func() bool { return m.Live() == 0 }) {
		t.Error("environment not released")
	}
}

func TestCloseEndsSessions(t *testing.T) {
	m := &jailtest.HostManager{}
	l := newLab(t, m, config.EnvTenant)
	// Commands that do not end on stdin EOF: the connection closing must
	// not let them finish on their own before Close kills them.
	for _, u := range []string{"alice", "bob"} {
		s, err := l.client(t, u).NewSession()
		if err != nil {
			t.Fatal(err)
		}
		out, _ := s.StdoutPipe()
		if err := s.Start("echo ready; exec sleep 100"); err != nil {
			t.Fatal(err)
		}
		gatewaytest.Expect(t, out, "ready\n", wait)
	}
	stalled := dialRaw(t, l.Addr)
	if err := l.Server.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waited for the handlers: everything is over by now.
	if m.Live() != 0 {
		t.Errorf("Live = %d after Close", m.Live())
	}
	// Her sessions were hung up; her environment's end (linger 0) ends
	// what ran in them.
	allExited := func() bool {
		for _, p := range m.Procs() {
			if !p.Exited {
				return false
			}
		}
		return true
	}
	if !m.WaitFor(wait, allExited) {
		t.Errorf("after Close: %+v", m.Procs())
	}
	if !closedWithin(stalled, wait) {
		t.Error("a connection still in its handshake survived Close")
	}
	if _, err := gatewaytest.Dial(t, l.Addr, "alice", l.keys["alice"]); err == nil {
		t.Error("login after Close")
	}
}

func TestPanicIsContained(t *testing.T) {
	m := &jailtest.HostManager{}
	l := newLab(t, m, config.EnvTenant, func(o *gateway.Options) {
		o.Provision = func(_ context.Context, u *config.User) (*jail.EnvSpec, error) {
			if u.Name == "bob" {
				panic("provisioner bug")
			}
			return provision.SpecFor(u), nil
		}
	})
	_, errOut, err := run(t, l.client(t, "bob"), "true")
	if code, _, ok := exitStatus(err); !ok || code != 255 || !refRE.MatchString(errOut) {
		t.Errorf("bob after a panic: stderr %q, %v", errOut, err)
	}
	if !strings.Contains(l.Logs(), "panic in session") || !strings.Contains(l.Logs(), "provisioner bug") {
		t.Errorf("panic not logged:\n%s", l.Logs())
	}
	if out, _, err := run(t, l.client(t, "alice"), "echo fine"); err != nil || out != "fine\n" {
		t.Errorf("alice after bob's panic: %q, %v", out, err)
	}
}

func TestReload(t *testing.T) {
	m := &jailtest.HostManager{}
	l := newLab(t, m, config.EnvTenant)
	old := l.client(t, "alice") // connected under the first snapshot
	live, err := old.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var liveErr lockedBuffer
	live.Stderr = &liveErr
	out, _ := live.StdoutPipe()
	if err := live.Start("echo up; exec sleep 100"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "up", wait)
	carolKey, carolPub := gatewaytest.NewKey(t)
	next := gatewaytest.Config(gatewaytest.User("carol", carolPub))
	l.Server.SetConfig(next)
	if l.Server.Config() != next {
		t.Error("Config() is not the new snapshot")
	}
	if _, err := gatewaytest.Dial(t, l.Addr, "carol", carolKey); err != nil {
		t.Errorf("carol, added by the reload: %v", err)
	}
	if _, err := gatewaytest.Dial(t, l.Addr, "alice", l.keys["alice"]); err == nil {
		t.Error("alice, removed by the reload, logged in")
	}
	// Her live session was ended with a line saying why.
	if err := live.Wait(); err == nil {
		t.Error("alice's live session survived her removal")
	}
	if !strings.Contains(liveErr.String(), "jailgate: your access was revoked") {
		t.Errorf("alice was not told: %q", liveErr.String())
	}
	// Her connection was closed with it: no new session on it either.
	if s, err := old.NewSession(); err == nil {
		s.Close()
		t.Error("alice's old connection opened a new session after her removal")
	}
}

func TestReloadKeepSessions(t *testing.T) {
	m := &jailtest.HostManager{}
	l := newLab(t, m, config.EnvTenant)
	c := l.client(t, "alice")
	_, carolPub := gatewaytest.NewKey(t)
	next := gatewaytest.Config(gatewaytest.User("carol", carolPub))
	next.Revoke = config.RevokeKeepSessions
	s, _ := c.NewSession()
	out, _ := s.StdoutPipe()
	in, _ := s.StdinPipe()
	if err := s.Start("echo up; cat"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "up", wait)
	l.Server.SetConfig(next)
	in.Write([]byte("after\n"))
	gatewaytest.Expect(t, out, "after", wait)
	in.Close()
	if err := s.Wait(); err != nil {
		t.Errorf("with revoke: keep-sessions the live session was ended: %v", err)
	}
}
