//go:build linux

package main

import (
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// labNetwork opens the host side of nat for a lab whose config has a nat
// tenant (nil otherwise), as serve's openNetwork does, under a name of
// the test's own, with ip_forward turned on as network_forwarding: auto
// does (startLab's config has no top-level extra); put back when the test
// ends.
func labNetwork(t *testing.T, cfg *config.Config, log *slog.Logger) *jail.Network {
	t.Helper()
	nat := false
	for _, u := range cfg.Users {
		nat = nat || u.Network == jail.NetworkNAT
	}
	if !nat {
		return nil
	}
	restoreIPForward(t)
	n, err := jail.OpenNetwork(jail.NetworkOptions{Logger: log, Name: jailtest.NetName(), Pool: cfg.NetworkPool,
		Forwarding: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() }) // registered first: runs after the Supervisor's Close
	return n
}

// restoreIPForward puts net.ipv4.ip_forward back when the test ends
// (network_forwarding: auto turns it on).
func restoreIPForward(t *testing.T) {
	const fwd = "/proc/sys/net/ipv4/ip_forward"
	if old, err := os.ReadFile(fwd); err == nil {
		t.Cleanup(func() { os.WriteFile(fwd, old, 0o644) })
	}
}

// TestIntegrationNAT: through the whole gateway, alice (network: nat)
// reaches the fake internet from her ssh session and not the metadata
// service, and ssh -L, which dials from inside her namespace, follows the
// same policy: the upstream answers, the metadata service and a private
// destination do not.
func TestIntegrationNAT(t *testing.T) {
	jailtest.RequireRoot(t)
	jailtest.FakeInternet(t)
	l := startLab(t, "    network: nat\n")
	c := l.client(t, "alice")
	// Her shell connects (bash's /dev/tcp) and reads, given 2 seconds (a
	// dropped SYN hangs; the test tree has no timeout(1)).
	dial := func(addr string) string {
		return "(exec 3<>/dev/tcp/" + addr + " && cat <&3) 2>/dev/null & p=$!; sleep 2; kill $p 2>/dev/null; wait $p; true"
	}
	if got := must(t, c, dial(jailtest.UpstreamAddr+"/80")); got != "upstream\n" {
		t.Errorf("her session read %q from %s:80, want upstream", got, jailtest.UpstreamAddr)
	}
	if got := must(t, c, dial(jailtest.MetadataAddr+"/80")); got != "" {
		t.Errorf("her session read %q from the metadata service", got)
	}
	fc, err := c.Dial("tcp", jailtest.UpstreamAddr+":80")
	if err != nil {
		t.Fatalf("ssh -L to the upstream: %v", err)
	}
	if b, _ := io.ReadAll(fc); string(b) != "upstream\n" {
		t.Errorf("ssh -L to the upstream read %q, want upstream", b)
	}
	fc.Close()
	for _, addr := range []string{jailtest.MetadataAddr + ":80", jailtest.Private10 + ":80"} {
		if fc, err := c.Dial("tcp", addr); err == nil {
			buf := make([]byte, 64)
			n, _ := fc.Read(buf)
			fc.Close()
			if n > 0 {
				t.Errorf("ssh -L to %s read %q", addr, buf[:n])
			}
		}
	}
}
