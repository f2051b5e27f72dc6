package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// TestE2EPlainGoBuild: `go build ./cmd/jailgate` with cgo on (the default
// on a host with a C compiler, and what `go install` does) gives a gateway
// whose logins work and whose tenants get the dropped capability set on
// every thread of the init (issue 15). Before, such a binary refused every
// login: syscall.AllThreadsSyscall returns ENOTSUP when cgo is linked.
func TestE2EPlainGoBuild(t *testing.T) {
	jailtest.RequireRoot(t)
	bin := filepath.Join(jailtest.SearchableTempDir(t), "jailgate")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build with CGO_ENABLED=1 (needs gcc): %v\n%s", err, out)
	}
	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil || !strings.Contains(string(info), "CGO_ENABLED=1") {
		t.Fatalf("the binary is not a cgo build: %v\n%s", err, info)
	}
	g := startServeBin(t, bin, "")
	out, errOut, code := g.ssh(t, "alice", "", "grep -E '^(CapBnd|CapEff|NoNewPrivs|Seccomp):' /proc/self/status; exit 3")
	if code != 3 {
		t.Fatalf("ssh with a cgo-built gateway: code %d, stderr %q\n%s", code, errOut, g.log.String())
	}
	want := defaultCapMask(t)
	for _, line := range []string{"CapBnd:\t" + want, "CapEff:\t" + want, "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("tenant process status lacks %q:\n%s", line, out)
		}
	}
	// The SFTP server is this binary again, started inside her environment.
	batch := filepath.Join(g.dir, "batch")
	if err := os.WriteFile(batch, []byte("put "+batch+" uploaded\nls -l uploaded\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = g.openssh(t, "sftp", "", append(g.clientOpts("alice", "-P"), "-b", batch, "alice@127.0.0.1")...)
	if code != 0 || !strings.Contains(out, "uploaded") {
		t.Errorf("sftp with a cgo-built gateway: exit %d\n%s\n%s", code, out, errOut)
	}
}

// defaultCapMask is jail.DefaultCaps as /proc/PID/status prints a set.
func defaultCapMask(t *testing.T) string {
	t.Helper()
	mask, err := jail.CapMask(jail.DefaultCaps)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%016x", mask)
}
