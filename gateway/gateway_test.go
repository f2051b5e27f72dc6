package gateway_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/keys"
)

const wait = 10 * time.Second

// lab is a gateway with a fake jail and two tenants, alice and bob.
type lab struct {
	*gatewaytest.Harness
	m    *jailtest.HostManager
	keys map[string]gossh.Signer
}

// newLab starts a gateway over m; mode is alice's environment mode.
func newLab(t *testing.T, m *jailtest.HostManager, mode string, configure ...func(*gateway.Options)) *lab {
	t.Helper()
	l := &lab{m: m, keys: map[string]gossh.Signer{}}
	var users []*config.User
	for _, name := range []string{"alice", "bob"} {
		signer, pub := gatewaytest.NewKey(t)
		l.keys[name] = signer
		u := gatewaytest.User(name, pub)
		if name == "alice" {
			u.Environment = mode
		}
		users = append(users, u)
	}
	l.Harness = gatewaytest.Start(t, gatewaytest.Config(users...), m, configure...)
	return l
}

// client logs in as user with her own key.
func (l *lab) client(t *testing.T, user string) *gossh.Client {
	t.Helper()
	c, err := gatewaytest.Dial(t, l.Addr, user, l.keys[user])
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

// run execs cmd in a new session and returns stdout, stderr and the error.
func run(t *testing.T, c *gossh.Client, cmd string) (string, string, error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	err = s.Run(cmd)
	return out.String(), errb.String(), err
}

func exitStatus(err error) (int, string, bool) {
	var ee *gossh.ExitError
	if !errors.As(err, &ee) {
		return 0, "", false
	}
	return ee.ExitStatus(), ee.Signal(), true
}

func TestExecExitStatusAndStreams(t *testing.T) {
	l := newLab(t, &jailtest.HostManager{}, config.EnvTenant)
	c := l.client(t, "alice")
	out, errOut, err := run(t, c, "echo hi; echo oops >&2; exit 7")
	if code, _, ok := exitStatus(err); !ok || code != 7 || out != "hi\n" || errOut != "oops\n" {
		t.Errorf("got stdout %q stderr %q err %v; want hi, oops, exit 7", out, errOut, err)
	}
	if out, _, err := run(t, c, "true"); err != nil || out != "" {
		t.Errorf("true: %q, %v", out, err)
	}
	// The process got exactly the gateway's environment, not the gateway's own.
	t.Setenv("JAILGATE_GATEWAY_SECRET", "x")
	out, _, err = run(t, c, `echo "$HOME $USER $LOGNAME $SHELL $PATH ${JAILGATE_GATEWAY_SECRET-unset}"; echo "$SSH_CONNECTION"`)
	want := "/root root root /bin/sh /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin unset\n"
	if err != nil || !strings.HasPrefix(out, want) || !regexp.MustCompile(`\n127\.0\.0\.1 \d+ 127\.0\.0\.1 \d+\n$`).MatchString(out) {
		t.Errorf("environment: %q, %v", out, err)
	}
	procs := l.m.Procs()
	if a := procs[0].Argv; len(a) != 3 || a[0] != "/bin/sh" || a[1] != "-c" || procs[0].Dir != "/root" {
		t.Errorf("spawned %q in %q, want /bin/sh -c … in /root", a, procs[0].Dir)
	}
}

func TestStdinPiped(t *testing.T) {
	l := newLab(t, &jailtest.HostManager{}, config.EnvTenant)
	s, err := l.client(t, "alice").NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Stdin = strings.NewReader("line one\nline two\n")
	out, err := s.Output("cat")
	if err != nil || string(out) != "line one\nline two\n" {
		t.Errorf("cat: %q, %v", out, err)
	}
}

func TestShellIsALoginShell(t *testing.T) {
	l := newLab(t, &jailtest.HostManager{}, config.EnvTenant)
	s, err := l.client(t, "alice").NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Stdin = strings.NewReader("echo in-shell; exit 4\n")
	var out bytes.Buffer
	s.Stdout = &out
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	if code, _, ok := exitStatus(s.Wait()); !ok || code != 4 || out.String() != "in-shell\n" {
		t.Errorf("shell: output %q, want in-shell and exit 4", out.String())
	}
	if a := l.m.Procs()[0].Argv; len(a) != 2 || a[0] != "/bin/sh" || a[1] != "-l" {
		t.Errorf("shell spawned as %q, want [/bin/sh -l]", a)
	}
}

func TestExitSignal(t *testing.T) {
	l := newLab(t, &jailtest.HostManager{}, config.EnvTenant)
	_, _, err := run(t, l.client(t, "alice"), "kill -TERM $$")
	if _, sig, ok := exitStatus(err); !ok || sig != "TERM" {
		t.Errorf("kill -TERM $$: %v, want exit-signal TERM", err)
	}
}

func TestAuth(t *testing.T) {
	l := newLab(t, &jailtest.HostManager{}, config.EnvTenant)
	stranger, _ := gatewaytest.NewKey(t)
	cases := []struct {
		name, user string
		key        gossh.Signer
		reason     string
	}{
		{"another tenant's key", "alice", l.keys["bob"], "key not listed"},
		{"unknown key", "alice", stranger, "key not listed"},
		{"unknown user", "mallory", l.keys["alice"], "unknown user"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := gatewaytest.Dial(t, l.Addr, tc.user, tc.key)
			if err == nil {
				c.Close()
				t.Fatal("login succeeded")
			}
			if strings.Contains(err.Error(), tc.reason) {
				t.Errorf("the client learned the reason: %v", err)
			}
			fp := keys.Fingerprint(tc.key.PublicKey())
			line := logLine(l.Logs(), "auth failed", fp)
			for _, want := range []string{"user=" + tc.user, "remote=127.0.0.1:", "fingerprint=" + fp, "reason=\"" + tc.reason + "\""} {
				if !strings.Contains(line, want) {
					t.Errorf("auth failure line %q lacks %s; log:\n%s", line, want, l.Logs())
				}
			}
		})
	}
	if l.m.Live() != 0 || len(l.m.Started()) != 0 {
		t.Errorf("a refused login started an environment: %v", l.m.Started())
	}
	l.client(t, "alice") // and the right key still works
	if !strings.Contains(l.Logs(), "auth ok") {
		t.Errorf("no auth ok line:\n%s", l.Logs())
	}
}

// logLine returns the first log line containing every part.
func logLine(logs string, parts ...string) string {
	for _, line := range strings.Split(logs, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return line
		}
	}
	return ""
}

func TestPasswordNotOffered(t *testing.T) {
	l := newLab(t, &jailtest.HostManager{}, config.EnvTenant)
	var offered []string
	c, err := gossh.Dial("tcp", l.Addr, &gossh.ClientConfig{
		User: "alice",
		Auth: []gossh.AuthMethod{
			gossh.Password("secret"),
			gossh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) {
				offered = append(offered, "keyboard-interactive")
				return nil, nil
			}),
		},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		Timeout:         wait,
	})
	if err == nil {
		c.Close()
		t.Fatal("login without a key succeeded")
	}
	if !strings.Contains(err.Error(), "[none]") {
		t.Errorf("client tried more than none (password or keyboard-interactive was offered): %v", err)
	}
	if len(offered) > 0 || strings.Contains(l.Logs(), "password") || strings.Contains(l.Logs(), "auth ok") {
		t.Errorf("password/keyboard-interactive reached the server:\n%s", l.Logs())
	}
}

func TestOtherChannelTypesRejected(t *testing.T) {
	l := newLab(t, &jailtest.HostManager{}, config.EnvTenant)
	c := l.client(t, "alice")
	if _, err := c.Dial("tcp", "127.0.0.1:1"); err == nil {
		t.Error("direct-tcpip accepted")
	}
	if _, _, err := run(t, c, "true"); err != nil {
		t.Errorf("the connection broke after a rejected channel: %v", err)
	}
}

// dialRaw opens a plain TCP connection to the gateway.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// closedWithin reports whether the server closes nc within d.
func closedWithin(nc net.Conn, d time.Duration) bool {
	nc.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, nc)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}
