//go:build slow && linux

package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jailgate/jailgate/statedir"
)

// TestDebootstrapImage builds a Debian image with `jailgate rootfs
// debootstrap` (from the Debian mirror: slow, and run by make test-slow
// only), serves a tenant on it and logs her in. The mirror is
// rootfs.DefaultMirror unless JAILGATE_TEST_MIRROR names another.
func TestDebootstrapImage(t *testing.T) {
	dir, cfg := imageBuildDir(t)
	args := []string{"debootstrap", "deb", "--config", cfg, "--include", "less"}
	if m := os.Getenv("JAILGATE_TEST_MIRROR"); m != "" {
		args = append(args, "--mirror", m)
	}
	start := time.Now()
	log := rootfsCmd(t, args...)
	t.Logf("debootstrap took %s", time.Since(start).Round(time.Second))
	// Not a terminal: debootstrap's lines as they come, then ours.
	for _, want := range []string{"I: Retrieving libc6", "I: Extracting", "I: Configuring", "stripped setuid/setgid from", "built image deb (Debian bookworm)"} {
		if !strings.Contains(log, want) {
			t.Errorf("no %q in the output:\n%s", want, log)
		}
	}
	image := statedir.New(filepath.Join(dir, "state")).Image("deb")
	if ents, _ := os.ReadDir(filepath.Dir(image)); len(ents) != 1 {
		t.Errorf("images/ holds %v, want only deb (nothing half-built or temporary)", ents)
	}
	if fi, err := os.Stat(filepath.Join(image, "usr/bin/su")); err != nil || fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("usr/bin/su: %v %v, want it without its setuid bit", fi, err)
	}
	if _, err := os.Lstat(filepath.Join(image, "dev/null")); err == nil {
		t.Error("the image kept debootstrap's device nodes")
	}

	c := loginToImage(t, dir, "deb")
	if out := must(t, c, "cat /etc/debian_version"); !regexp.MustCompile(`^12\.\d+\n$`).MatchString(out) {
		t.Errorf("/etc/debian_version is %q, want bookworm's 12.x", out)
	}
	if out := must(t, c, "dpkg-query -W -f '${Status}' less; echo; id -un"); out != "install ok installed\nroot\n" {
		t.Errorf("in the jail: %q, want less installed (--include) and root", out)
	}
}
