//go:build linux

package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
)

// agentListOnce builds testdata/agentlist (a static ssh-add -l that also
// has the first key sign), once per test binary.
var agentListOnce = sync.OnceValues(func() (string, error) { return buildStatic("./testdata/agentlist", "agentlist") })

// TestAgentForwardIntoTheJail: with forwarding.agent on, ssh -A's agent is
// reachable inside the jail at SSH_AUTH_SOCK: a unix socket in a 0700
// directory of her root under the jail's own /tmp, which lists and signs
// with the client's key; the socket goes when the session ends, even while
// her environment lives on.
func TestAgentForwardIntoTheJail(t *testing.T) {
	l := startLab(t, "    forwarding: { agent: true }\n")
	installStatic(t, l.rootfs["alice"], agentListOnce)
	c := l.client(t, "alice")
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	keyring.Add(agent.AddedKey{PrivateKey: priv, Comment: "alice@laptop"})
	if err := agent.ForwardToAgent(c, keyring); err != nil {
		t.Fatal(err)
	}
	pub, _ := gossh.NewPublicKey(priv.Public())

	// A session that stays, so that her environment outlives the agent's.
	hold, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	holdOut, _ := hold.StdoutPipe()
	if err := hold.Start("echo up; exec sleep 100"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, holdOut, "up", 10*time.Second)

	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := agent.RequestAgentForwarding(s); err != nil {
		t.Fatalf("auth-agent-req: %v", err)
	}
	out, err := s.CombinedOutput(`echo "$SSH_AUTH_SOCK"; stat -c '%a %u %F' "$(dirname "$SSH_AUTH_SOCK")" "$SSH_AUTH_SOCK"; agentlist`)
	if err != nil {
		t.Fatalf("agentlist in the jail: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{"", "700 0 directory", "600 0 socket", gossh.FingerprintSHA256(pub) + " alice@laptop", "signed ok"}
	if len(lines) != len(want) || !strings.HasPrefix(lines[0], "/tmp/jailgate-agent-") {
		t.Fatalf("output:\n%s\nwant the socket path, its 0700 directory, the socket, the key and a signature", out)
	}
	for i := 1; i < len(want); i++ {
		if lines[i] != want[i] {
			t.Errorf("line %d: %q, want %q", i, lines[i], want[i])
		}
	}
	sock := lines[0]
	if _, err := os.Stat(sock); err == nil {
		t.Errorf("%s exists on the host: the socket must be in the jail's /tmp", sock)
	}
	// The socket and its directory go with the session; the environment
	// (held by the first session) does not.
	if out, _ := runOut(t, c, `test -e `+filepath.Dir(sock)+` && echo left || echo gone; echo "sock=${SSH_AUTH_SOCK-}"`); out != "gone\nsock=\n" {
		t.Errorf("after the agent session: %q, want the directory gone and no SSH_AUTH_SOCK without -A", out)
	}
}

// TestE2EAgentOpenSSH: OpenSSH's ssh -A with a real ssh-agent on the
// client side: the agent's key is listed, and signs, inside the jail.
func TestE2EAgentOpenSSH(t *testing.T) {
	g := startServe(t)
	installStatic(t, g.rootfs["alice"], agentListOnce)
	enableForwarding(t, g)
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	sshAgent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := sshAgent.Start(); err != nil {
		t.Skipf("ssh-agent: %v", err)
	}
	defer func() { sshAgent.Process.Kill(); sshAgent.Wait() }()
	key := filepath.Join(dir, "forwarded")
	sshKeygen(t, key)
	t.Setenv("SSH_AUTH_SOCK", sock)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command("ssh-add", key).CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh-add: %v\n%s", err, out)
		}
		time.Sleep(20 * time.Millisecond) // ssh-agent is still starting
	}
	fp, err := exec.Command("ssh-keygen", "-lf", key+".pub").Output()
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := g.ssh(t, "alice", "", "-A", "agentlist")
	if code != 0 || !strings.Contains(out, strings.Fields(string(fp))[1]) || !strings.Contains(out, "signed ok") {
		t.Errorf("ssh -A agentlist: stdout %q stderr %q code %d; want %s listed and signed ok", out, errOut, code, strings.Fields(string(fp))[1])
	}
	// Without -A there is no agent in the jail.
	if out, _, _ := g.ssh(t, "alice", "", `echo "sock=${SSH_AUTH_SOCK-}"`); out != "sock=\n" {
		t.Errorf("without -A: %q", out)
	}
}
