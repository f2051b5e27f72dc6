package gateway_test

import (
	"bytes"
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

// fwdLab is a gateway over the host fake (so "inside her environment" is
// the host's loopback) with one tenant, alice, shaped by tune.
func fwdLab(t *testing.T, tune func(u *config.User)) (*gatewaytest.Harness, *jailtest.HostManager, *gossh.Client) {
	t.Helper()
	h, m, c, _ := fwdLabKey(t, tune)
	return h, m, c
}

// fwdLabKey is fwdLab that also returns alice's key, for more connections.
func fwdLabKey(t *testing.T, tune func(u *config.User)) (*gatewaytest.Harness, *jailtest.HostManager, *gossh.Client, gossh.Signer) {
	t.Helper()
	signer, pub := gatewaytest.NewKey(t)
	u := gatewaytest.User("alice", pub)
	tune(u)
	cfg := gatewaytest.Config(u)
	m := &jailtest.HostManager{}
	h := gatewaytest.Start(t, cfg, m)
	c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return h, m, c, signer
}

// TestRemoteForward: ssh -R with port 0 gets a port allocated; a program
// in her environment connecting to it reaches the client, both ways;
// closing the forward (cancel-tcpip-forward) stops the listener and
// releases her environment.
func TestRemoteForward(t *testing.T) {
	h, m, c := fwdLab(t, func(u *config.User) { u.Forwarding.Remote = true })
	l, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("ssh -R: %v", err)
	}
	addr := l.Addr().String()
	if l.Addr().(*net.TCPAddr).Port == 0 {
		t.Fatalf("no port allocated: %v", addr)
	}
	go func() {
		for {
			a, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.WriteString(a, "client:"); io.Copy(a, a); a.Close() }()
		}
	}()
	inside, err := net.Dial("tcp", addr) // the fake's environment is the host
	if err != nil {
		t.Fatalf("connect to the forwarded port: %v", err)
	}
	io.WriteString(inside, "hello")
	inside.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(inside)
	inside.Close()
	if string(got) != "client:hello" {
		t.Errorf("through the forward: %q, want client:hello", got)
	}
	if !strings.Contains(h.Logs(), "forward open") || !strings.Contains(h.Logs(), "kind=remote") {
		t.Errorf("no forward open line:\n%s", h.Logs())
	}
	if err := l.Close(); err != nil {
		t.Errorf("cancel-tcpip-forward: %v", err)
	}
	if !m.WaitFor(wait, func() bool { return m.Live() == 0 }) {
		t.Error("the environment is still held after the forward was cancelled")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the listener still accepts after cancel-tcpip-forward")
	}
}

// TestRemoteForwardEndsWithConnection: the connection's end closes its
// listeners.
func TestRemoteForwardEndsWithConnection(t *testing.T) {
	_, m, c := fwdLab(t, func(u *config.User) { u.Forwarding.Remote = true })
	l, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	c.Close()
	if !m.WaitFor(wait, func() bool { return m.Live() == 0 }) {
		t.Fatal("the environment is still held after the connection ended")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the listener outlived its connection")
	}
}

// TestRemoteForwardRefused: off by default, non-loopback binds, keys with
// restrict, and session mode without exactly one session are refused,
// each with a logged reason.
func TestRemoteForwardRefused(t *testing.T) {
	for _, tc := range []struct {
		name, bind, why string
		tune            func(u *config.User)
	}{
		{"default off", "127.0.0.1:0", "forwarding.remote is off", func(*config.User) {}},
		{"all addresses", "0.0.0.0:0", "not loopback", func(u *config.User) { u.Forwarding.Remote = true }},
		{"restrict", "127.0.0.1:0", "no-port-forwarding", func(u *config.User) {
			u.Forwarding.Remote = true
			u.Keys[0].Options = []string{"restrict"}
		}},
		{"session mode", "127.0.0.1:0", "0 live sessions", func(u *config.User) {
			u.Forwarding.Remote = true
			u.Environment = config.EnvSession
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, m, c := fwdLab(t, tc.tune)
			if l, err := c.Listen("tcp", tc.bind); err == nil {
				l.Close()
				t.Fatal("ssh -R accepted")
			}
			if !strings.Contains(h.Logs(), tc.why) {
				t.Errorf("log does not say %q:\n%s", tc.why, h.Logs())
			}
			if len(m.Started()) != 0 {
				t.Errorf("a refused forward started an environment: %v", m.Started())
			}
		})
	}
}

// TestRemoteForwardSlowClient: a client that stops reading one forwarded
// connection holds up that connection only.
func TestRemoteForwardSlowClient(t *testing.T) {
	_, _, c := fwdLab(t, func(u *config.User) { u.Forwarding.Remote = true })
	l, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			a, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- a
		}
	}()
	slow, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	held := <-accepted // never read
	defer held.Close()
	go slow.Write(bytes.Repeat([]byte("x"), 8<<20)) // more than any window holds
	fast, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	var echo net.Conn
	select {
	case echo = <-accepted:
	case <-time.After(wait):
		t.Fatal("a second connection was not forwarded while the first was stalled")
	}
	defer echo.Close()
	go io.Copy(echo, echo)
	io.WriteString(fast, "ping")
	fast.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(fast, buf); err != nil || string(buf) != "ping" {
		t.Errorf("echo on the second connection: %q, %v", buf, err)
	}
}

// TestRemoteForwardAfterReload: a reload that turns forwarding.remote off
// stops a live listener at its next connection, which never reaches the
// client.
func TestRemoteForwardAfterReload(t *testing.T) {
	h, m, c := fwdLab(t, func(u *config.User) { u.Forwarding.Remote = true })
	l, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reached := make(chan struct{}, 1)
	go func() {
		if a, err := l.Accept(); err == nil {
			reached <- struct{}{}
			a.Close()
		}
	}()
	old := h.Server.Config()
	next := *old
	next.Users = map[string]*config.User{}
	for name, u := range old.Users {
		cp := *u
		next.Users[name] = &cp
	}
	next.Users["alice"].Forwarding.Remote = false
	h.Server.SetConfig(&next)
	inside, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	inside.SetReadDeadline(time.Now().Add(wait))
	if n, _ := inside.Read(make([]byte, 1)); n != 0 {
		t.Error("read data from a forward refused after the reload")
	}
	inside.Close()
	if !m.WaitFor(wait, func() bool { return m.Live() == 0 }) {
		t.Error("the listener still holds her environment after the reload turned it off")
	}
	select {
	case <-reached:
		t.Error("the connection reached the client after the reload")
	default:
	}
	if !strings.Contains(h.Logs(), "since a reload") {
		t.Errorf("refusal not logged:\n%s", h.Logs())
	}
}

// TestRemoteForwardRefusalSaysWhy is issue 16's "-R refusal says why": the
// failure reply to tcpip-forward has no room for a reason, so the tenant
// reads it in her session on that connection: one that is live when the
// refusal happens, or the next one (OpenSSH asks for -R before it opens
// the session).
func TestRemoteForwardRefusalSaysWhy(t *testing.T) {
	h, _, c, signer := fwdLabKey(t, func(*config.User) {})
	live, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	liveIn, _ := live.StdinPipe()
	defer liveIn.Close()
	liveErr, _ := live.StderrPipe()
	liveOut, _ := live.StdoutPipe()
	if err := live.Start("echo up; cat"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, liveOut, "up\n", wait)
	const why = "remote forwarding is disabled for alice: the gateway's config must set forwarding.remote: true"
	if l, err := c.Listen("tcp", "127.0.0.1:8080"); err == nil {
		l.Close()
		t.Fatal("ssh -R accepted with forwarding.remote off")
	}
	gatewaytest.Expect(t, liveErr, "jailgate: ssh -R 127.0.0.1:8080: "+why+"\n", wait)

	// ssh -R host: the refusal comes before the session.
	c2, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := c2.Listen("tcp", "127.0.0.1:8081"); err == nil {
		l.Close()
		t.Fatal("ssh -R accepted with forwarding.remote off")
	}
	next, err := c2.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	var stderr bytes.Buffer
	next.Stderr = &stderr
	next.Run("true")
	if want := "jailgate: ssh -R 127.0.0.1:8081: " + why + "\n"; stderr.String() != want {
		t.Errorf("the next session's stderr: %q, want %q", stderr.String(), want)
	}
}
