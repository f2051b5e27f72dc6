//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jailgate/jailgate/config"
)

// parseConfig parses text as a configuration file in a temporary directory.
func parseConfig(t *testing.T, text string) *config.Config {
	t.Helper()
	c, err := config.Parse(filepath.Join(t.TempDir(), "jailgate.yaml"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A reload's changes and `check --diff` name each changed server-wide
// setting, old and new value, and when it takes effect: listen needs a
// restart, the algorithm lists apply to new connections. State saved
// before server settings were recorded shows no server line.
func TestServerDiff(t *testing.T) {
	old := parseConfig(t, "listen: 127.0.0.1:2222\nusers: {}\n")
	cur := parseConfig(t, `listen: 127.0.0.1:2223
server:
  ciphers: [aes128-gcm@openssh.com, chacha20-poly1305@openssh.com]
  max_startups: 50
users: {}
`)
	want := []string{
		"~ listen: 127.0.0.1:2222 -> 127.0.0.1:2223 (needs a restart: the running server keeps the old value)",
		"~ server.ciphers: aes128-gcm@openssh.com, aes256-gcm@openssh.com, aes128-ctr, aes256-ctr -> " +
			"aes128-gcm@openssh.com, chacha20-poly1305@openssh.com (applies to new connections; live ones keep what they negotiated)",
		"~ server.max_startups: 100 -> 50 (applies to the next connection accepted)",
	}
	if got := diffConfigs(old, cur); !slices.Equal(got, want) {
		t.Errorf("diffConfigs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := diffConfigs(cur, cur); len(got) != 0 {
		t.Errorf("no change shows %q", got)
	}
	// What check --diff compares with went through the saved JSON.
	saved, err := json.Marshal(activeLines(old))
	if err != nil {
		t.Fatal(err)
	}
	var active map[string][]string
	if err := json.Unmarshal(saved, &active); err != nil {
		t.Fatal(err)
	}
	if got := diffActive(active, activeLines(cur)); !slices.Equal(got, want) {
		t.Errorf("diffActive from the saved settings:\n%s", strings.Join(got, "\n"))
	}
	delete(active, serverKey)
	if got := diffActive(active, activeLines(cur)); len(got) != 0 {
		t.Errorf("state without server settings shows %q", got)
	}
}

// `jailgate check` warns about each weak algorithm a configuration adds to
// the offer, at its line, and still exits 0; the default offer has none.
func TestCheckWarnsWeakOffer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "jailgate.yaml")
	os.WriteFile(path, []byte("state_dir: "+dir+"\nserver:\n  kex: [curve25519-sha256, ecdh-sha2-nistp256]\n"+
		"  macs: [hmac-sha2-256-etm@openssh.com, hmac-sha1]\nusers: {}\n"), 0o600)
	var out, errb bytes.Buffer
	code := run([]string{"check", "--config", path}, &out, &errb)
	want := "warning: " + path + ":3: server.kex[1]: ecdh-sha2-nistp256 is weak (ssh-audit: fail, NIST P-curve); " +
		"the default offer is mlkem768x25519-sha256, curve25519-sha256, curve25519-sha256@libssh.org\n" +
		"warning: " + path + ":4: server.macs[1]: hmac-sha1 is weak (ssh-audit: warn, encrypt-and-MAC with SHA-1); " +
		"the default offer is hmac-sha2-256-etm@openssh.com, hmac-sha2-512-etm@openssh.com\n"
	if code != 0 || !strings.HasPrefix(out.String(), want) {
		t.Errorf("check: exit %d, stdout %q, stderr %q; want exit 0 starting with %q", code, out.String(), errb.String(), want)
	}
	os.WriteFile(path, []byte("state_dir: "+dir+"\nusers: {}\n"), 0o600)
	out.Reset()
	if code := run([]string{"check", "--config", path}, &out, &errb); code != 0 || strings.Contains(out.String(), "warning") {
		t.Errorf("check of the default offer: exit %d, %q", code, out.String())
	}
}

// TestE2EServerChanges: a change under server: shows in `check --diff`,
// in what `jailgate reload` prints and in the server's log, and a new
// connection gets the new offer: chacha20-poly1305, not offered by
// default, logs in once server.ciphers lists it.
func TestE2EServerChanges(t *testing.T) {
	g := startServe(t)
	path := filepath.Join(g.dir, "jailgate.yaml")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	chacha := append(g.clientOpts("alice", "-p"), "-c", "chacha20-poly1305@openssh.com", "alice@127.0.0.1", "echo in")
	if _, _, code := g.openssh(t, "ssh", "", chacha...); code == 0 {
		t.Error("a chacha20-only client logged in to the default offer")
	}
	changed := strings.Replace(string(orig), "defaults:\n",
		"server:\n  ciphers: [aes128-gcm@openssh.com, chacha20-poly1305@openssh.com]\n  max_startups: 50\ndefaults:\n", 1)
	os.WriteFile(path, []byte(changed), 0o600)
	ciphers := "~ server.ciphers: aes128-gcm@openssh.com, aes256-gcm@openssh.com, aes128-ctr, aes256-ctr -> " +
		"aes128-gcm@openssh.com, chacha20-poly1305@openssh.com (applies to new connections; live ones keep what they negotiated)"
	startups := "~ server.max_startups: 100 -> 50 (applies to the next connection accepted)"
	if out, errOut, code := cli(t, "check", "--diff", "--config", path); code != 0 || out != ciphers+"\n"+startups+"\n" {
		t.Errorf("check --diff: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code := cli(t, "reload", "--config", path)
	if code != 0 || !strings.Contains(out, "\n  "+ciphers+"\n  "+startups+"\n") {
		t.Errorf("reload: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	g.waitLog(t, "reload change: ~ server.ciphers: ")
	if got, errOut, code := g.openssh(t, "ssh", "", chacha...); code != 0 || got != "in\n" {
		t.Errorf("chacha20 after the reload: %q %q %d", got, errOut, code)
	}
	if out, _, code := cli(t, "check", "--diff", "--config", path); code != 0 || out != "no change\n" {
		t.Errorf("check --diff after the reload: exit %d, %q", code, out)
	}
}

// sshAuditTolerated are the warnings Debian 12's ssh-audit 2.5.0 (2021)
// gives the default offer only because it predates the algorithms: it
// calls any name it does not know "[warn] unknown algorithm".
// mlkem768x25519-sha256 (OpenSSH 9.9, 2024) is in the offer on purpose;
// kex-strict-s-v00@openssh.com is x/crypto's Terrapin (CVE-2023-48795)
// countermeasure, always sent. ssh-audit 3.x knows both ([info]). Only
// these exact lines are tolerated; any other [warn] or [fail] fails.
var sshAuditTolerated = []string{
	"(kex) mlkem768x25519-sha256 -- [warn] unknown algorithm",
	"(kex) kex-strict-s-v00@openssh.com -- [warn] unknown algorithm",
}

// TestE2ESSHAudit runs ssh-audit against a default gateway: no [fail], and
// no [warn] but sshAuditTolerated. (ssh-audit 3.x, from mid-2025, also
// warns that curve25519 "does not provide protection against post-quantum
// attacks"; the offer keeps curve25519 for every client without ML-KEM:
// paramiko, Node ssh2, OpenSSH before 9.9.)
func TestE2ESSHAudit(t *testing.T) {
	if _, err := exec.LookPath("ssh-audit"); err != nil {
		t.Fatal("ssh-audit is not installed: apt-get install ssh-audit (.ci/run installs it)")
	}
	g := startServe(t)
	// -b: batch output, one "(kind) name -- [level] text" line per verdict;
	// -n: no colours.
	out, _ := exec.Command("ssh-audit", "-b", "-n", "-p", strconv.Itoa(g.port), "127.0.0.1").CombinedOutput()
	audited := false
	for line := range strings.SplitSeq(string(out), "\n") {
		line = strings.Join(strings.Fields(line), " ")
		if strings.HasPrefix(line, "(kex) ") {
			audited = true
		}
		if (strings.Contains(line, "[fail]") || strings.Contains(line, "[warn]")) && !slices.Contains(sshAuditTolerated, line) {
			t.Errorf("ssh-audit: %s", line)
		}
	}
	if !audited || t.Failed() {
		t.Errorf("ssh-audit output:\n%s", out)
	}
}
