package gateway_test

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// echoListener listens on the host's loopback (with the host fake, that is
// "inside her environment") and answers each connection with tag: and what
// it read.
func echoListener(t *testing.T, tag string) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				fmt.Fprintf(c, "%s:%s", tag, b)
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// roundTrip sends msg over c, half-closes and returns the answer.
func roundTrip(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	defer c.Close()
	io.WriteString(c, msg)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	got, _ := io.ReadAll(c)
	return string(got)
}

// TestKeyPermitOpen: a key with permitopen="localhost:P" may ssh -L to
// localhost:P and nowhere else (not another port, not 127.0.0.1:P, which
// sshd compares literally too), each refusal logged with its reason; with
// restrict, port-forwarding gives -L back but permitopen still binds.
func TestKeyPermitOpen(t *testing.T) {
	allowed, other := echoListener(t, "allowed"), echoListener(t, "other")
	for _, opts := range [][]string{
		{fmt.Sprintf(`permitopen="localhost:%d"`, allowed)},
		{"restrict", "port-forwarding", fmt.Sprintf(`permitopen="localhost:%d,localhost:1"`, allowed)},
	} {
		t.Run(strings.Join(opts, ","), func(t *testing.T) {
			h, _, c := fwdLab(t, func(u *config.User) { u.Forwarding.Local, u.Keys[0].Options = true, opts })
			fc, err := c.Dial("tcp", "localhost:"+strconv.Itoa(allowed))
			if err != nil {
				t.Fatalf("ssh -L to the permitted localhost:%d: %v", allowed, err)
			}
			if got := roundTrip(t, fc, "hi"); got != "allowed:hi" {
				t.Errorf("through the permitted forward: %q, want allowed:hi", got)
			}
			for _, dest := range []string{"localhost:" + strconv.Itoa(other), "127.0.0.1:" + strconv.Itoa(allowed)} {
				if fc, err := c.Dial("tcp", dest); err == nil {
					t.Errorf("ssh -L to %s accepted; it answered %q", dest, roundTrip(t, fc, "hi"))
				} else if !strings.Contains(err.Error(), "not permitted for this key") {
					t.Errorf("ssh -L to %s: %v, want the permitopen refusal", dest, err)
				}
				if want := dest + " is not in the key's permitopen"; !strings.Contains(h.Logs(), want) {
					t.Errorf("log does not say %q:\n%s", want, h.Logs())
				}
			}
		})
	}
}

// TestKeyPermitOpenNone: permitopen="none" refuses every -L, and restrict
// without port-forwarding refuses -L whatever permitopen says.
func TestKeyPermitOpenNone(t *testing.T) {
	port := strconv.Itoa(echoListener(t, "echo"))
	for _, tc := range []struct {
		opts []string
		why  string
	}{
		{[]string{`permitopen="none"`}, "localhost:" + port + " is not in the key's permitopen"},
		{[]string{"restrict", `permitopen="localhost:` + port + `"`}, "no-port-forwarding"},
	} {
		h, _, c := fwdLab(t, func(u *config.User) { u.Forwarding.Local, u.Keys[0].Options = true, tc.opts })
		if fc, err := c.Dial("tcp", "localhost:"+port); err == nil {
			t.Errorf("%v: ssh -L accepted; it answered %q", tc.opts, roundTrip(t, fc, "hi"))
		}
		if !strings.Contains(h.Logs(), tc.why) {
			t.Errorf("%v: log does not say %q:\n%s", tc.opts, tc.why, h.Logs())
		}
	}
}

// freeLoopbackPort returns a port nothing listens on at the moment.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestKeyPermitListen: a key with permitlisten="127.0.0.1:P" may ssh -R on
// 127.0.0.1:P, and a program in her environment reaches the client through
// it; another port, port 0 (allocate one) and another bind address are
// refused, each with a logged reason, and start no environment.
func TestKeyPermitListen(t *testing.T) {
	port := freeLoopbackPort(t)
	h, m, c := fwdLab(t, func(u *config.User) {
		u.Forwarding.Remote = true
		u.Keys[0].Options = []string{fmt.Sprintf(`permitlisten="127.0.0.1:%d"`, port)}
	})
	for _, tc := range []struct {
		bind string
		port uint32
	}{
		{"127.0.0.1", uint32(port) + 1},
		{"127.0.0.1", 0},
		{"localhost", uint32(port)},
		{"", uint32(port)},
	} {
		payload := gossh.Marshal(struct {
			Addr string
			Port uint32
		}{tc.bind, tc.port})
		if ok, _, err := c.SendRequest("tcpip-forward", true, payload); err != nil || ok {
			t.Errorf("ssh -R on %q port %d: ok=%v err=%v, want refused", tc.bind, tc.port, ok, err)
		}
		want := net.JoinHostPort(tc.bind, strconv.Itoa(int(tc.port))) + " is not in the key's permitlisten"
		if !strings.Contains(h.Logs(), want) {
			t.Errorf("log does not say %q:\n%s", want, h.Logs())
		}
	}
	if len(m.Started()) != 0 {
		t.Errorf("refused forwards started an environment: %v", m.Started())
	}
	l, err := c.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("ssh -R on the permitted 127.0.0.1:%d: %v", port, err)
	}
	defer l.Close()
	go func() {
		a, err := l.Accept()
		if err != nil {
			return
		}
		b, _ := io.ReadAll(a)
		fmt.Fprintf(a, "client:%s", b)
		a.Close()
	}()
	inside, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("connect to the forwarded port: %v", err)
	}
	if got := roundTrip(t, inside, "hello"); got != "client:hello" {
		t.Errorf("through the permitted forward: %q, want client:hello", got)
	}
}

// TestForwardNonLoopbackRefused: with network: none her environment has
// nothing but loopback, so ssh -L to any other destination is refused
// with the reason logged, and no environment starts for it.
func TestForwardNonLoopbackRefused(t *testing.T) {
	h, m, c := fwdLab(t, func(u *config.User) { u.Forwarding.Local = true })
	for _, dest := range []string{"10.1.2.3:80", "example.com:443", "127.0.0.2:22", "0.0.0.0:22"} {
		if fc, err := c.Dial("tcp", dest); err == nil {
			t.Errorf("ssh -L to %s accepted; it answered %q", dest, roundTrip(t, fc, "hi"))
		} else if !strings.Contains(err.Error(), "only localhost inside your environment") {
			t.Errorf("ssh -L to %s: %v, want the loopback-only refusal", dest, err)
		}
	}
	if got := strings.Count(h.Logs(), `reason="destination is not loopback"`); got != 4 {
		t.Errorf("%d refusals logged, want 4:\n%s", got, h.Logs())
	}
	if len(m.Started()) != 0 {
		t.Errorf("refused forwards started an environment: %v", m.Started())
	}
}

// TestForwardJoinsEnvironment: ssh -L joins the environment the tenant's
// mode names: in tenant mode her one environment, from any connection; in
// connection mode the connection's, which its exec session started (an
// editor's server and its forwarded port meet), and another connection's
// forward gets its own.
func TestForwardJoinsEnvironment(t *testing.T) {
	port := strconv.Itoa(echoListener(t, "echo"))
	for _, tc := range []struct {
		mode  string
		want  []string // prefixes of the environments started, in order
		other bool     // a forward on a second connection starts another
	}{
		{config.EnvTenant, []string{"tenant/alice"}, false},
		{config.EnvConnection, []string{"conn/", "conn/"}, true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			signer, pub := gatewaytest.NewKey(t)
			u := gatewaytest.User("alice", pub)
			u.Environment, u.Forwarding.Local = tc.mode, true
			m := &jailtest.HostManager{}
			h := gatewaytest.Start(t, gatewaytest.Config(u), m)
			c1, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
			if err != nil {
				t.Fatal(err)
			}
			defer c1.Close()
			startWaiting(t, c1)
			fc, err := c1.Dial("tcp", "localhost:"+port)
			if err != nil {
				t.Fatal(err)
			}
			if got := roundTrip(t, fc, "1"); got != "echo:1" {
				t.Errorf("forward on the session's connection: %q", got)
			}
			if n := len(m.Started()); n != 1 {
				t.Errorf("the forward started another environment: %v", m.Started())
			}
			c2, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			fc, err = c2.Dial("tcp", "localhost:"+port)
			if err != nil {
				t.Fatal(err)
			}
			if got := roundTrip(t, fc, "2"); got != "echo:2" {
				t.Errorf("forward on a second connection: %q", got)
			}
			started := m.Started()
			if len(started) != len(tc.want) {
				t.Fatalf("environments started %v, want %d", started, len(tc.want))
			}
			for i, p := range tc.want {
				if !strings.HasPrefix(started[i], p) {
					t.Errorf("environment %d is %q, want prefix %q", i, started[i], p)
				}
			}
			if tc.other && started[0] == started[1] {
				t.Errorf("two connections' forwards share %q", started[0])
			}
		})
	}
}
