package gateway_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/keys"
)

// keygenKRL runs ssh-keygen -k -s ca over spec and parses the KRL.
func keygenKRL(t *testing.T, ca gossh.PublicKey, spec string) *keys.KRL {
	t.Helper()
	requireTool(t, "ssh-keygen")
	dir := t.TempDir()
	caFile, specFile, krlFile := filepath.Join(dir, "ca.pub"), filepath.Join(dir, "spec"), filepath.Join(dir, "krl")
	os.WriteFile(caFile, gossh.MarshalAuthorizedKey(ca), 0o600)
	os.WriteFile(specFile, []byte(spec), 0o600)
	if out, err := exec.Command("ssh-keygen", "-k", "-f", krlFile, "-s", caFile, specFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -k: %v\n%s", err, out)
	}
	data, err := os.ReadFile(krlFile)
	if err != nil {
		t.Fatal(err)
	}
	k, err := keys.ParseKRL(data)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCertificatesRevokedByKRL: a certificate revoked in a KRL by serial
// or key ID is refused; one the KRL does not name logs in. A reload with a
// new KRL that revokes it ends the live session and refuses the next login.
func TestCertificatesRevokedByKRL(t *testing.T) {
	ca, _ := gatewaytest.NewKey(t)
	key, _ := gatewaytest.NewKey(t)
	var cfg *config.Config
	h, _ := limitLab(t, func(c *config.Config, _ *config.User) {
		c.TrustedUserCAKeys = []gossh.PublicKey{ca.PublicKey()}
		c.RevokedKRLs = []*keys.KRL{keygenKRL(t, ca.PublicKey(), "serial: 5-9\nid: stolen\n")}
		cfg = c
	})
	serial := func(n uint64, id string) gossh.Signer {
		return certFor(t, ca, key, func(c *gossh.Certificate) { c.Serial, c.KeyId = n, id })
	}
	for _, tc := range []struct {
		name   string
		signer gossh.Signer
		ok     bool
	}{
		{"serial 7 (revoked range)", serial(7, "alice"), false},
		{"key ID stolen", serial(20, "stolen"), false},
		{"serial 20", serial(20, "alice"), true},
		{"serial 0", serial(0, "alice"), true},
	} {
		c, err := gatewaytest.Dial(t, h.Addr, "alice", tc.signer)
		if c != nil {
			c.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s: login err = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if !strings.Contains(h.Logs(), "key is revoked") {
		t.Error("no log line says the key is revoked")
	}

	live, err := gatewaytest.Dial(t, h.Addr, "alice", serial(20, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	s, err := live.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := s.StdoutPipe()
	if err := s.Start("echo up; exec sleep 100"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "up", wait)
	next := *cfg
	next.RevokedKRLs = []*keys.KRL{keygenKRL(t, ca.PublicKey(), "serial: 5-9\nserial: 20\n")}
	h.Server.SetConfig(&next)
	if err := s.Wait(); err == nil {
		t.Error("the live session of a certificate revoked by the reload went on")
	}
	if c, err := gatewaytest.Dial(t, h.Addr, "alice", serial(20, "alice")); err == nil {
		c.Close()
		t.Error("serial 20 logged in after the reload revoked it")
	}
}
