package gateway_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/jailgate/jailgate/config"
)

// requireTool skips a test without an OpenSSH tool, except in CI, where
// .ci/run installs them.
func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed", name)
		}
		t.Skipf("%s is not installed", name)
	}
}

// agentSession opens a session that asks for agent forwarding to keyring.
func agentSession(t *testing.T, c *gossh.Client, keyring agent.Agent) (*gossh.Session, error) {
	t.Helper()
	if err := agent.ForwardToAgent(c, keyring); err != nil {
		t.Fatal(err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, agent.RequestAgentForwarding(s)
}

// TestAgentForwarding: with forwarding.agent on, the session's command
// finds SSH_AUTH_SOCK in a private directory, ssh-add -l there lists the
// client's key, and the socket is gone when the session ends.
func TestAgentForwarding(t *testing.T) {
	requireTool(t, "ssh-add")
	h, m, c := fwdLab(t, func(u *config.User) { u.Forwarding.Agent = true })
	keyring := agent.NewKeyring()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv, Comment: "alice@laptop"}); err != nil {
		t.Fatal(err)
	}
	s, err := agentSession(t, c, keyring)
	if err != nil {
		t.Fatalf("auth-agent-req refused: %v", err)
	}
	out, err := s.CombinedOutput(`echo "$SSH_AUTH_SOCK"; ls -ld "$(dirname "$SSH_AUTH_SOCK")"; ssh-add -l`)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lines := strings.Split(string(out), "\n")
	sock := lines[0]
	if !strings.HasPrefix(sock, "/tmp/jailgate-agent-") || !strings.HasSuffix(sock, "/agent.sock") {
		t.Errorf("SSH_AUTH_SOCK = %q", sock)
	}
	if len(lines) < 3 || !strings.HasPrefix(lines[1], "drwx------") || !strings.Contains(lines[2], "alice@laptop") {
		t.Errorf("output %q: want the socket's 0700 directory and the key listed", out)
	}
	if !m.WaitFor(wait, func() bool { return m.Live() == 0 }) {
		t.Fatal("the environment did not end")
	}
	if _, err := os.Stat(filepath.Dir(sock)); err == nil {
		t.Errorf("%s still exists after the session ended", filepath.Dir(sock))
	}
	if !strings.Contains(h.Logs(), "agent forwarding") {
		t.Errorf("no agent forwarding line:\n%s", h.Logs())
	}
}

// TestAgentForwardingRefused: off by default, and for restrict keys, with
// a logged reason; X11 is always refused. The command then has no
// SSH_AUTH_SOCK.
func TestAgentForwardingRefused(t *testing.T) {
	for _, tc := range []struct {
		name, why string
		tune      func(u *config.User)
	}{
		{"default off", "forwarding.agent is off", func(*config.User) {}},
		{"restrict", "no-agent-forwarding", func(u *config.User) {
			u.Forwarding.Agent = true
			u.Keys[0].Options = []string{"restrict"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _, c := fwdLab(t, tc.tune)
			s, err := agentSession(t, c, agent.NewKeyring())
			if err == nil {
				t.Error("auth-agent-req accepted")
			}
			if ok, _ := s.SendRequest("x11-req", true, gossh.Marshal(struct {
				Single        bool
				Proto, Cookie string
				Screen        uint32
			}{false, "MIT-MAGIC-COOKIE-1", "00", 0})); ok {
				t.Error("x11-req accepted")
			}
			out, _ := s.Output(`echo "sock=${SSH_AUTH_SOCK-}"`)
			if string(out) != "sock=\n" {
				t.Errorf("SSH_AUTH_SOCK set after a refusal: %q", out)
			}
			for _, want := range []string{tc.why, "X11 forwarding is not supported"} {
				if !strings.Contains(h.Logs(), want) {
					t.Errorf("log does not say %q:\n%s", want, h.Logs())
				}
			}
		})
	}
}

// TestAgentStalledClient: a client that never answers its agent channels
// holds up only those connections: with more of them waiting than the
// session's cap, the session still ends and reports its exit.
func TestAgentStalledClient(t *testing.T) {
	requireTool(t, "ssh-add")
	_, m, c := fwdLab(t, func(u *config.User) { u.Forwarding.Agent = true })
	opens := c.HandleChannelOpen("auth-agent@openssh.com")
	var held []gossh.NewChannel
	var mu sync.Mutex
	go func() {
		for nc := range opens { // neither accepted nor rejected
			mu.Lock()
			held = append(held, nc)
			mu.Unlock()
		}
	}()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := agent.RequestAgentForwarding(s); err != nil {
		t.Fatal(err)
	}
	// 40 clients of the agent socket, more than it serves at once; the
	// command waits until the gateway has opened the channels it can.
	out, err := s.CombinedOutput(`for i in $(seq 40); do timeout 20 ssh-add -l </dev/null >/dev/null 2>&1 & done; sleep 1; echo done`)
	if err != nil || string(out) != "done\n" {
		t.Fatalf("%q, %v", out, err)
	}
	mu.Lock()
	n := len(held)
	mu.Unlock()
	if n == 0 || n > 32 {
		t.Errorf("%d agent channels opened; want some, at most 32", n)
	}
	if !m.WaitFor(wait, func() bool { return m.Live() == 0 }) {
		t.Error("the session's end is held up by its stalled agent connections")
	}
}
