//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jailgate/jailgate/rootfs"
	"github.com/jailgate/jailgate/statedir"
)

// TestTenantResetWhileLive: `jailgate tenant reset` is refused, saying
// why, while the tenant has a live session (the gateway holds her layer's
// lock); once her session has ended and the layer's grace has passed it
// discards her changes, and her next login sees the image as it was.
func TestTenantResetWhileLive(t *testing.T) {
	l, dir, _ := imageLab(t, "tenant", rootfs.LayerOptions{Grace: 300 * time.Millisecond})
	cfg := filepath.Join(dir, "jailgate.yaml")
	c := l.client(t, "alice")
	must(t, c, "echo mine > /root/mine.txt")
	end := hold(t, c)

	if _, out, code := cliIn(t, "no\n", "tenant", "reset", "--config", cfg, "alice"); code == 0 || !strings.Contains(out, "not confirmed") {
		t.Errorf("reset answered no: exit %d, %q", code, out)
	}
	_, out, code := cliIn(t, "", "tenant", "reset", "--yes", "--config", cfg, "alice")
	if code != 1 || !strings.Contains(out, "layer in use") || !strings.Contains(out, "try again") {
		t.Errorf("reset during her live session: exit %d, %q; want exit 1 saying her layer is in use", code, out)
	}
	if got := must(t, c, "cat /root/mine.txt"); got != "mine\n" {
		t.Fatalf("her file after the refused reset reads %q", got)
	}

	end()
	waitFor(t, "her layer to be unmounted after the grace", 20*time.Second, func() bool { return l.unmounts("alice") == 1 })
	if out, _, code := cliIn(t, "", "tenant", "reset", "--yes", "--config", cfg, "alice"); code != 0 || !strings.Contains(out, "discarded alice's layer") {
		t.Fatalf("reset after her session ended: exit %d, %q", code, out)
	}
	if _, err := os.Stat(statedir.New(l.stateDir).Tenant("alice")); err == nil {
		t.Error("her layer is still on disk after the reset")
	}
	if got := must(t, c, "cat /root/mine.txt 2>&1 || echo gone"); !strings.Contains(got, "gone") {
		t.Errorf("after the reset her next login still sees %q", got)
	}
	if _, out, code := cliIn(t, "", "tenant", "reset", "--yes", "--config", cfg, "bob"); code == 0 || !strings.Contains(out, "no layer") {
		t.Errorf("reset of bob, who never logged in: exit %d, %q", code, out)
	}
}
