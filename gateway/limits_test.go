package gateway_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// limitLab is a gateway over the host fake with one tenant, alice, whose
// settings and the server section are set by tune before it starts.
func limitLab(t *testing.T, tune func(c *config.Config, alice *config.User)) (*gatewaytest.Harness, gossh.Signer) {
	t.Helper()
	signer, pub := gatewaytest.NewKey(t)
	u := gatewaytest.User("alice", pub)
	cfg := gatewaytest.Config(u)
	tune(cfg, u)
	cfg.Keys = gatewaytest.Config(u).Keys // the index again, with any key options tune set
	return gatewaytest.Start(t, cfg, &jailtest.HostManager{}), signer
}

// dialFrom logs in from a given loopback source address.
func dialFrom(t *testing.T, src, addr, user string, signer gossh.Signer) (*gossh.Client, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	cc, chans, reqs, err := gossh.NewClientConn(nc, addr, &gossh.ClientConfig{User: user,
		Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)}, HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		Timeout: 5 * time.Second})
	if err != nil {
		nc.Close()
		return nil, err
	}
	c := gossh.NewClient(cc, chans, reqs)
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// TestHalfOpenFloodDoesNotLockOut: 200 half-open connections from one
// source hit per_source_max_startups and max_startups, yet a tenant from
// another address still logs in (sshd MaxStartups / PerSourceMaxStartups).
func TestHalfOpenFloodDoesNotLockOut(t *testing.T) {
	h, signer := limitLab(t, func(c *config.Config, _ *config.User) {
		c.Server.MaxStartups, c.Server.PerSourceMaxStartups = 100, 10
	})
	var served, held int
	for i := 0; i < 200; i++ {
		nc := dialRaw(t, h.Addr)
		if i < 13 { // enough to see the per-source cap; the rest just hold
			switch greeting(nc, 300*time.Millisecond) {
			case "served":
				served++
			case "held":
				held++
			}
		}
	}
	if served != 10 || held != 3 {
		t.Errorf("of 13 half-open connections from one address, %d were served and %d held, want 10 and 3 (per_source_max_startups 10)", served, held)
	}
	if _, err := dialFrom(t, "127.0.0.2", h.Addr, "alice", signer); err != nil {
		t.Fatalf("alice from 127.0.0.2 during the flood: %v", err)
	}
	if !strings.Contains(h.Logs(), "per_source_max_startups") {
		t.Errorf("the waiting connections are not logged:\n%s", h.Logs())
	}
}

// greeting says what a client that has not sent anything sees on nc
// within d: "served" (the server's version line), "held" (nothing: it
// waits for a startup slot) or "closed".
func greeting(nc net.Conn, d time.Duration) string {
	nc.SetReadDeadline(time.Now().Add(d))
	defer nc.SetReadDeadline(time.Time{})
	buf := make([]byte, 4)
	n, err := io.ReadFull(nc, buf)
	var ne net.Error
	switch {
	case n == 4 && string(buf) == "SSH-":
		return "served"
	case n == 0 && errors.As(err, &ne) && ne.Timeout():
		return "held"
	default:
		return "closed"
	}
}

// TestStartupBurstWaits: more simultaneous logins from one address than
// per_source_max_startups all succeed, in turn (sshd would drop some);
// past the wait queue (10 × the cap) connections are refused and logged.
func TestStartupBurstWaits(t *testing.T) {
	h, signer := limitLab(t, func(c *config.Config, _ *config.User) {
		c.Server.MaxStartups, c.Server.PerSourceMaxStartups = 4, 2
	})
	const n = 12
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
			if err == nil {
				var s *gossh.Session
				if s, err = c.NewSession(); err == nil {
					var out []byte
					out, err = s.Output("echo in")
					if err == nil && strings.TrimSpace(string(out)) != "in" {
						err = fmt.Errorf("echo in printed %q", out)
					}
				}
				c.Close()
			}
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Errorf("login %d of a burst of %d from one address: %v", i, n, err)
		}
	}

	// The queue: 2 served and 40 waiting (10 × max_startups 4) from one
	// address; the next one is refused.
	for i := 0; i < 42; i++ {
		dialRaw(t, h.Addr)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(h.Logs(), "connections already waiting") && time.Now().Before(deadline) {
		if nc := dialRaw(t, h.Addr); greeting(nc, 100*time.Millisecond) != "closed" {
			continue
		}
	}
	if !strings.Contains(h.Logs(), "connections already waiting") {
		t.Errorf("no refusal once the wait queue was full:\n%s", h.Logs())
	}
}

// TestMaxAuthTries: with max_auth_tries 6, a client whose right key comes
// 7th is refused; 6th still logs in.
func TestMaxAuthTries(t *testing.T) {
	h, right := limitLab(t, func(c *config.Config, _ *config.User) { c.Server.MaxAuthTries = 6 })
	try := func(wrong int) error {
		var signers []gossh.Signer
		for i := 0; i < wrong; i++ {
			s, _ := gatewaytest.NewKey(t)
			signers = append(signers, s)
		}
		signers = append(signers, right)
		c, err := gossh.Dial("tcp", h.Addr, &gossh.ClientConfig{User: "alice",
			Auth: []gossh.AuthMethod{gossh.PublicKeys(signers...)}, HostKeyCallback: gossh.InsecureIgnoreHostKey(),
			Timeout: 5 * time.Second})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := try(5); err != nil {
		t.Errorf("right key 6th: %v", err)
	}
	if err := try(6); err == nil {
		t.Error("right key 7th was accepted past max_auth_tries 6")
	}
}

func TestMaxSessions(t *testing.T) {
	h, signer := limitLab(t, func(_ *config.Config, u *config.User) { u.MaxSessions = 1 })
	c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	s1, _ := c.NewSession()
	defer s1.Close()
	out, _ := s1.StdoutPipe()
	if err := s1.Start("echo up; exec sleep 100"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "up", 5*time.Second)
	if s2, err := c.NewSession(); err == nil {
		s2.Close()
		t.Error("a second session was opened with max_sessions 1")
	}
}

// runStderr runs cmd and returns its stderr and exit error.
func runStderr(t *testing.T, h *gatewaytest.Harness, signer gossh.Signer, cmd string) (string, error) {
	t.Helper()
	c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := c.NewSession()
	defer s.Close()
	var errb bytes.Buffer
	s.Stderr = &errb
	err = s.Run(cmd)
	return errb.String(), err
}

func TestIdleTimeout(t *testing.T) {
	h, signer := limitLab(t, func(_ *config.Config, u *config.User) {
		u.IdleTimeout, u.IdleGrace = 300*time.Millisecond, 300*time.Millisecond
	})
	errOut, err := runStderr(t, h, signer, "sleep 100")
	var ee *gossh.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("idle session: %v, want it ended", err)
	}
	if !strings.Contains(errOut, "idle for 300ms; this session closes in 300ms") || !strings.Contains(errOut, "idle timeout; closing") {
		t.Errorf("no warning then close on stderr: %q", errOut)
	}
	// Output counts as activity: a command printing every 100ms outlives it.
	if errOut, err := runStderr(t, h, signer, "for i in 1 2 3 4 5 6 7 8 9 10; do echo x; sleep 0.1; done"); err != nil || errOut != "" {
		t.Errorf("a busy session was ended or warned: %v %q", err, errOut)
	}
}

func TestMaxSessionTime(t *testing.T) {
	h, signer := limitLab(t, func(_ *config.Config, u *config.User) { u.MaxSessionTime = 500 * time.Millisecond })
	errOut, err := runStderr(t, h, signer, "while :; do echo busy; sleep 0.05; done")
	var ee *gossh.ExitError
	if !errors.As(err, &ee) || !strings.Contains(errOut, "maximum session time (500ms) reached") {
		t.Errorf("max_session_time: err %v, stderr %q", err, errOut)
	}
}

func TestBannerOnShell(t *testing.T) {
	h, signer := limitLab(t, func(_ *config.Config, u *config.User) { u.Banner = "Welcome alice\nbe nice" })
	c, out, in := ptyShell(t, h, signer)
	// The banner, then the line about keys: ssh-copy-id's key in the
	// environment is never read.
	gatewaytest.Expect(t, out, "Welcome alice\r\nbe nice\r\n"+
		"jailgate: login keys come from the gateway's config; ~/.ssh/authorized_keys here is not read\r\n", 5*time.Second)
	in.Write([]byte("exit\n"))
	// An exec session gets no banner and no keys line.
	s2, _ := c.NewSession()
	defer s2.Close()
	got, _ := s2.Output("echo plain")
	if string(got) != "plain\n" {
		t.Errorf("exec output %q, want no banner", got)
	}
}

// TestKeysLineWithoutBanner: a tenant with no banner still reads where her
// login keys live when she opens a terminal.
func TestKeysLineWithoutBanner(t *testing.T) {
	h, signer := limitLab(t, func(*config.Config, *config.User) {})
	_, out, in := ptyShell(t, h, signer)
	gatewaytest.Expect(t, out, "jailgate: login keys come from the gateway's config", 5*time.Second)
	in.Write([]byte("exit\n"))
}

// ptyShell logs alice in with signer and starts a shell in a terminal; it
// returns the client, the terminal's output and its input.
func ptyShell(t *testing.T, h *gatewaytest.Harness, signer gossh.Signer) (*gossh.Client, io.Reader, io.Writer) {
	t.Helper()
	c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := c.NewSession()
	t.Cleanup(func() { s.Close() })
	s.RequestPty("xterm", 24, 80, nil)
	out, _ := s.StdoutPipe()
	in, _ := s.StdinPipe()
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	return c, out, in
}

// TestPerSourcePenalty: an address whose connections keep failing to
// authenticate is slowed down, then refused for a while (even with the
// right key); another address is not, and an exempt address never is.
func TestPerSourcePenalty(t *testing.T) {
	h, right := limitLab(t, func(c *config.Config, _ *config.User) { c.Server.PerSourcePenalty = 10 * time.Second })
	wrong, _ := gatewaytest.NewKey(t)
	for i := 0; i < 4; i++ { // 4 x 10s is past the 30s threshold
		if c, err := dialFrom(t, "127.0.0.3", h.Addr, "alice", wrong); err == nil {
			c.Close()
			t.Fatal("a wrong key logged in")
		}
	}
	var err error
	for i := 0; i < 50; i++ { // the last failure's close is logged asynchronously
		if _, err = dialFrom(t, "127.0.0.3", h.Addr, "alice", right); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err == nil {
		t.Error("the penalised address still logs in")
	}
	if _, err := dialFrom(t, "127.0.0.4", h.Addr, "alice", right); err != nil {
		t.Errorf("another address is refused too: %v", err)
	}
	if !strings.Contains(h.Logs(), "penalty starts") {
		t.Errorf("no log line when the penalty started:\n%s", h.Logs())
	}

	if !strings.Contains(h.Logs(), "delay=") {
		t.Errorf("the failures before the penalty were not slowed down:\n%s", h.Logs())
	}

	h2, right2 := limitLab(t, func(c *config.Config, _ *config.User) {
		c.Server.PerSourcePenalty = 10 * time.Second
		c.Server.PerSourcePenaltyExempt = []string{"127.0.0.0/8"}
	})
	for i := 0; i < 4; i++ {
		if c, err := dialFrom(t, "127.0.0.3", h2.Addr, "alice", wrong); err == nil {
			c.Close()
		}
	}
	if _, err := dialFrom(t, "127.0.0.3", h2.Addr, "alice", right2); err != nil {
		t.Errorf("an exempt address was penalised: %v", err)
	}
}

// TestClientAlive: with client_alive_interval and client_alive_count_max
// (sshd ClientAliveInterval/CountMax), a client that stops answering
// keepalive@openssh.com is disconnected after that many probes, with a log
// line; a client that answers stays.
func TestClientAlive(t *testing.T) {
	h, signer := limitLab(t, func(c *config.Config, _ *config.User) {
		c.Server.ClientAliveInterval, c.Server.ClientAliveCountMax = 100*time.Millisecond, 2
	})
	// A dead client: logged in, but nobody serves its global requests, so
	// no probe is ever answered.
	nc := dialRaw(t, h.Addr)
	dead, _, _, err := gossh.NewClientConn(nc, h.Addr, &gossh.ClientConfig{User: "alice",
		Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)}, HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() { dead.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(wait):
		t.Fatal("a client that answers no keepalive is still connected")
	}
	if !strings.Contains(h.Logs(), "client not alive; closing") || !strings.Contains(h.Logs(), "missed=2") {
		t.Errorf("no log line after 2 missed keepalives:\n%s", h.Logs())
	}
	// A live client (x/crypto answers every global request) outlives many
	// probes and still opens a session.
	live, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if out, err := runOn(t, live, "sleep 1; echo alive"); err != nil || out != "alive\n" {
		t.Errorf("a session on a client that answers keepalives: %q, %v", out, err)
	}
}

// runOn runs cmd in a new session on c and returns its stdout.
func runOn(t *testing.T, c *gossh.Client, cmd string) (string, error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.Output(cmd)
	return string(out), err
}

// TestMaxConnections: past max_connections (all connections, logged in or
// not) a new connection is closed at once, with the reason logged; when
// one ends, the next gets in.
func TestMaxConnections(t *testing.T) {
	h, signer := limitLab(t, func(c *config.Config, _ *config.User) { c.Server.MaxConnections = 2 })
	first, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gatewaytest.Dial(t, h.Addr, "alice", signer); err != nil {
		t.Fatal(err)
	}
	if !closedWithin(dialRaw(t, h.Addr), wait) {
		t.Fatal("a third connection was kept with max_connections 2")
	}
	if !strings.Contains(h.Logs(), "max_connections (2) reached") {
		t.Errorf("the refusal is not logged:\n%s", h.Logs())
	}
	first.Close()
	var c *gossh.Client
	for i := 0; i < 100 && c == nil; i++ { // the first connection's end is seen asynchronously
		if c, err = gatewaytest.Dial(t, h.Addr, "alice", signer); err != nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if c == nil {
		t.Errorf("no connection got in after one of 2 ended: %v", err)
	}
}

// TestRevokedPlainKey: a tenant's own listed key that is also in
// revoked_keys is refused (sshd RevokedKeys), with the reason logged.
func TestRevokedPlainKey(t *testing.T) {
	h, signer := limitLab(t, func(c *config.Config, u *config.User) { c.RevokedKeys = []gossh.PublicKey{u.Keys[0].Key} })
	if c, err := gatewaytest.Dial(t, h.Addr, "alice", signer); err == nil {
		c.Close()
		t.Fatal("a revoked key logged in")
	}
	if !strings.Contains(h.Logs(), `reason="key is revoked"`) {
		t.Errorf("the refusal is not logged with its reason:\n%s", h.Logs())
	}
}

// TestIdleTimeoutInTerminal: in a terminal the idle warning and the end
// are lines of their own (CRLF), then the session ends.
func TestIdleTimeoutInTerminal(t *testing.T) {
	h, signer := limitLab(t, func(_ *config.Config, u *config.User) {
		u.IdleTimeout, u.IdleGrace = 300*time.Millisecond, 300*time.Millisecond
	})
	c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := c.NewSession()
	defer s.Close()
	if err := s.RequestPty("xterm", 24, 80, nil); err != nil {
		t.Fatal(err)
	}
	out, _ := s.StdoutPipe()
	if err := s.Start("sleep 100"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "\r\njailgate: idle for 300ms; this session closes in 300ms unless there is input or output\r\n", wait)
	gatewaytest.Expect(t, out, "\r\njailgate: idle timeout; closing\r\n", wait)
	if err := s.Wait(); err == nil {
		t.Error("the idle session ended with status 0")
	}
}

// TestPerSourcePenaltySlowsDown: before an address is refused, each of its
// refused keys is answered later the more penalty it has gathered, with
// the wait in the log line; it still gets to authenticate.
func TestPerSourcePenaltySlowsDown(t *testing.T) {
	h, right := limitLab(t, func(c *config.Config, _ *config.User) { c.Server.PerSourcePenalty = 5 * time.Second })
	wrong, _ := gatewaytest.NewKey(t)
	var slowest time.Duration
	// Five failures gather 25s, under the 30s at which refusal starts.
	for i := 0; i < 5 && slowest < 80*time.Millisecond; i++ {
		start := time.Now()
		if c, err := dialFrom(t, "127.0.0.5", h.Addr, "alice", wrong); err == nil {
			c.Close()
			t.Fatal("a wrong key logged in")
		}
		slowest = max(slowest, time.Since(start))
	}
	if slowest < 80*time.Millisecond {
		t.Errorf("the slowest refusal took %v; with 5s of penalty or more it waits at least 83ms", slowest)
	}
	if !strings.Contains(h.Logs(), "delay=") {
		t.Errorf("the wait is not logged:\n%s", h.Logs())
	}
	if strings.Contains(h.Logs(), "penalty starts") {
		t.Errorf("refused before the threshold:\n%s", h.Logs())
	}
	if c, err := dialFrom(t, "127.0.0.5", h.Addr, "alice", right); err != nil {
		t.Errorf("the slowed-down address cannot log in with the right key: %v", err)
	} else {
		c.Close()
	}
}

// TestReloadKeepsLiveSessionSettings: a reload applies to new connections
// at once, while a live session keeps the settings it started with (here
// max_session_time, set by the reload to less than the session runs).
func TestReloadKeepsLiveSessionSettings(t *testing.T) {
	h, signer := limitLab(t, func(*config.Config, *config.User) {})
	c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	live, _ := c.NewSession()
	defer live.Close()
	var liveErr bytes.Buffer
	live.Stderr = &liveErr
	out, _ := live.StdoutPipe()
	if err := live.Start("echo started; sleep 1.2; echo done"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "started\n", 5*time.Second)

	next := *h.Server.Config()
	alice := *next.Users["alice"]
	alice.MaxSessionTime = 300 * time.Millisecond
	next.Users = map[string]*config.User{"alice": &alice}
	h.Server.SetConfig(&next)

	// A new connection gets the new limit...
	errOut, err := runStderr(t, h, signer, "sleep 5")
	if !strings.Contains(errOut, "maximum session time (300ms) reached") || err == nil {
		t.Errorf("a session after the reload: err %v, stderr %q; want it ended at 300ms", err, errOut)
	}
	// ...while the live one runs to its end.
	gatewaytest.Expect(t, out, "done\n", 5*time.Second)
	if err := live.Wait(); err != nil || liveErr.Len() > 0 {
		t.Errorf("the live session: %v, stderr %q; want it to finish as started", err, liveErr.String())
	}
}
