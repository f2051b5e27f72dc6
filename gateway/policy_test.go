package gateway

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"slices"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/keys"
)

func newPub(t *testing.T) gossh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// meta is the connection metadata of a client logged in as user.
type meta struct{ user string }

func (m meta) User() string        { return m.user }
func (meta) SessionID() []byte     { return nil }
func (meta) ClientVersion() []byte { return nil }
func (meta) ServerVersion() []byte { return nil }
func (meta) RemoteAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (meta) LocalAddr() net.Addr   { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2} }

func TestAuthorizeSession(t *testing.T) {
	alice, bob := newPub(t), newPub(t)
	cfg := &config.Config{Users: map[string]*config.User{"alice": {Name: "alice"}, "bob": {Name: "bob"}}, Keys: keys.NewIndex()}
	cfg.Keys.Add("alice", alice)
	cfg.Keys.Add("bob", bob)
	verified := func(k gossh.PublicKey) *gossh.Permissions {
		return &gossh.Permissions{Extensions: map[string]string{extVerifiedKey: string(k.Marshal())}}
	}
	cases := []struct {
		name   string
		user   string
		ctxKey gossh.PublicKey
		perms  *gossh.Permissions
		reason string
	}{
		{"ok", "alice", alice, verified(alice), ""},
		{"no key", "alice", nil, verified(alice), reasonNoKey},
		{"no verified key", "alice", alice, &gossh.Permissions{}, reasonNotVerified},
		{"nil permissions", "alice", alice, nil, reasonNotVerified},
		// CVE-2024-45337: the last key the callback accepted (alice's,
		// only offered) is not the one the client signed with (bob's).
		{"offered but not used", "bob", alice, verified(bob), reasonNotVerified},
		{"another tenant's key", "bob", alice, verified(alice), reasonKeyNotListed},
		{"unknown user", "mallory", alice, verified(alice), reasonUnknownUser},
	}
	for _, tc := range cases {
		u, _, reason := authorizeSession(cfg, meta{tc.user}, tc.ctxKey, tc.perms)
		if reason != tc.reason || (reason == "") != (u != nil) {
			t.Errorf("%s: user %v reason %q, want %q", tc.name, u, reason, tc.reason)
		}
	}
	if _, reason := authorize(nil, "alice", alice); reason != reasonNoConfig {
		t.Errorf("nil config: %q", reason)
	}
}

func TestEnvAllowed(t *testing.T) {
	for _, name := range []string{"TERM", "LANG", "LC_ALL", "LC_CTYPE", "LC_"} {
		if !envAllowed(name) {
			t.Errorf("%s refused", name)
		}
	}
	for _, name := range []string{"LD_PRELOAD", "LD_LIBRARY_PATH", "FOO", "PATH", "HOME", "SHELL", "SSH_CONNECTION",
		"lang", "LC-ALL", "LC_ALL=1", "LC_ ALL", "", "LANG\x00", "LC_\xff"} {
		if envAllowed(name) {
			t.Errorf("%q allowed", name)
		}
	}
	vars := envVars{}
	for i := 0; i < maxEnvVars; i++ {
		if !vars.set("LC_X"+strings.Repeat("A", i), "v") {
			t.Fatalf("var %d refused", i)
		}
	}
	if vars.set("LC_ONE_TOO_MANY", "v") {
		t.Error("var 65 accepted")
	}
	if !vars.set("LC_X", "again") {
		t.Error("replacing an existing var refused at the limit")
	}
	if (envVars{}).set("LANG", strings.Repeat("x", maxEnvSize)) || (envVars{}).set("LANG", "a\x00b") {
		t.Error("oversized or NUL value accepted")
	}
}

func TestProcessEnv(t *testing.T) {
	remote := &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 50000}
	local := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 2222}
	vars := envVars{"TERM": "vt100", "LC_ALL": "C", "LANG": "en_US.UTF-8"}
	got := processEnv("/bin/bash", &jail.TTY{Term: "xterm"}, vars, local, remote)
	want := []string{"HOME=/root", "USER=root", "LOGNAME=root", "SHELL=/bin/bash",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"SSH_CONNECTION=192.0.2.7 50000 192.0.2.1 2222", "SSH_CLIENT=192.0.2.7 50000 2222",
		"TERM=xterm", "LANG=en_US.UTF-8", "LC_ALL=C"}
	if !slices.Equal(got, want) {
		t.Errorf("env\n got %q\nwant %q", got, want)
	}
	if got := processEnv("/bin/sh", nil, vars, local, remote); !slices.Contains(got, "TERM=vt100") {
		t.Errorf("without a pty TERM comes from env: %q", got)
	}
	v6 := &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 22}
	if got := processEnv("/bin/sh", nil, envVars{}, v6, v6); !slices.Contains(got, "SSH_CONNECTION=2001:db8::1 22 2001:db8::1 22") {
		t.Errorf("IPv6: %q", got)
	}
}

func TestSignals(t *testing.T) {
	for name, want := range map[string]unix.Signal{"TERM": unix.SIGTERM, "INT": unix.SIGINT, "HUP": unix.SIGHUP,
		"KILL": unix.SIGKILL, "QUIT": unix.SIGQUIT, "USR1": unix.SIGUSR1, "USR2": unix.SIGUSR2,
		"ALRM": unix.SIGALRM, "PIPE": unix.SIGPIPE} {
		if got, ok := signalByName(name); !ok || got != want {
			t.Errorf("%s: %v", name, got)
		}
	}
	for _, name := range []string{"SIGTERM", "STOP", "CONT", "WINCH", "term", ""} {
		if _, ok := signalByName(name); ok {
			t.Errorf("%q accepted", name)
		}
	}
	for sig, want := range map[unix.Signal]string{unix.SIGTERM: "TERM", unix.SIGKILL: "KILL", unix.SIGSEGV: "SEGV", unix.Signal(40): "SIG@openssh.com"} {
		if got := signalName(sig); got != want {
			t.Errorf("signalName(%d) = %q, want %q", sig, got, want)
		}
	}
}

func TestEnvKey(t *testing.T) {
	for mode, want := range map[string]string{"": "tenant/alice", config.EnvTenant: "tenant/alice",
		config.EnvConnection: "conn/c0ffee000001", config.EnvSession: "session/c0ffee000001-2", "bogus": "session/c0ffee000001-2"} {
		if got := envKey(&config.User{Name: "alice", Environment: mode}, "c0ffee000001", "c0ffee000001-2"); got != want {
			t.Errorf("mode %q: %q, want %q", mode, got, want)
		}
	}
}
