//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/rootfs"
)

// hostHas reports whether the host has the program name in one of the
// directories FromHost looks in first.
func hostHas(name string) bool {
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		if fi, err := os.Stat(filepath.Join(d, name)); err == nil && fi.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// hostHasCUTF8 reports whether the host has the C.UTF-8 locale's files.
func hostHasCUTF8() bool {
	for _, d := range []string{"/usr/lib/locale/C.utf8", "/usr/lib/locale/C.UTF-8"} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

// TestFromHostLabEnvironment builds the tree `jailgate rootfs from-host`
// builds by default (Lab) once, logs in to an environment on it, and runs
// what a lab user's day needs (issue 15). A case whose program the host
// lacks is not run, and says so; CI installs them all (.ci/run).
func TestFromHostLabEnvironment(t *testing.T) {
	jailtest.RequireRoot(t)
	dir := jailtest.SearchableTempDir(t)
	tree := filepath.Join(dir, "lab-rootfs")
	start := time.Now()
	var logged []string
	if err := rootfs.FromHost(tree, rootfs.FromHostOptions{Lab: true,
		Log: func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }}); err != nil {
		t.Fatalf("build the lab rootfs: %v", err)
	}
	t.Logf("lab rootfs built in %v: %s", time.Since(start).Round(time.Millisecond), logged[len(logged)-1])

	l := &lab{stateDir: filepath.Join(dir, "state"), keys: map[string]gossh.Signer{},
		rootfs: map[string]string{"carol": tree}, log: &syncBuffer{}}
	signer, pub := gatewaytest.NewKey(t)
	l.keys["carol"] = signer
	l.serve(t, dir, fmt.Sprintf("listen: 127.0.0.1:0\nstate_dir: %s\nusers:\n  carol:\n    keys: [%q]\n    rootfs: %s\n",
		l.stateDir, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pub))), tree))
	c := l.client(t, "carol")

	hasLocale := func() bool { return hostHasCUTF8() && hostHas("locale") }
	for _, tc := range []struct {
		name  string
		needs []string    // host programs the case runs
		has   func() bool // else, what the host must have
		cmd   string      // run in the environment under LANG=C.UTF-8
		check func(out, errOut string) string
	}{
		{name: "python3 stdlib and extension modules", needs: []string{"python3"},
			cmd:   `python3 -c 'import json, ssl, sqlite3; print(json.dumps([ssl.OPENSSL_VERSION != "", sqlite3.sqlite_version != ""]))'`,
			check: want("[true, true]\n")},
		{name: "perl POSIX", needs: []string{"perl"}, cmd: `perl -MPOSIX -e 'print floor(2.5), "\n"'`, check: want("2\n")},
		{name: "git clone of a local repository", needs: []string{"git"},
			cmd: `set -e; cd /tmp; rm -rf repo copy; git init -q repo; cd repo; echo hello > f; git add f
git -c user.name=lab -c user.email=lab@example.com commit -q -m first
cd /tmp; git clone -q file:///tmp/repo copy; cat copy/f`,
			check: want("hello\n")},
		{name: "sha256sum", needs: []string{"sha256sum"}, cmd: `printf abc | sha256sum`,
			check: want("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  -\n")},
		{name: "gzip", needs: []string{"gzip"}, cmd: `echo squeezed | gzip -9 | gzip -dc`, check: want("squeezed\n")},
		{name: "curl", needs: []string{"curl"}, cmd: `curl --version`, check: prefix("curl ")},
		{name: "locale C.UTF-8 without a warning", has: hasLocale, cmd: `locale; locale -a`,
			check: func(out, errOut string) string {
				if errOut != "" {
					return fmt.Sprintf("locale warned: %q", errOut)
				}
				if !strings.Contains(out, `LC_CTYPE="C.UTF-8"`) {
					return fmt.Sprintf("locale printed %q", out)
				}
				return ""
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range tc.needs {
				if !hostHas(p) {
					t.Logf("not run: the host has no %s (CI installs it)", p)
					return
				}
			}
			if tc.has != nil && !tc.has() {
				t.Logf("not run: the host has no C.UTF-8 locale or no locale program (CI installs them)")
				return
			}
			out, errOut, err := runSSH(t, c, "export LANG=C.UTF-8; unset LC_ALL; "+tc.cmd)
			if err != nil {
				t.Fatalf("%s: %v\nstdout %q\nstderr %q", tc.cmd, err, out, errOut)
			}
			if msg := tc.check(out, errOut); msg != "" {
				t.Errorf("%s: %s (stderr %q)", tc.cmd, msg, errOut)
			}
		})
	}
}

// want checks that a case printed exactly s.
func want(s string) func(out, errOut string) string {
	return func(out, _ string) string {
		if out != s {
			return fmt.Sprintf("printed %q, want %q", out, s)
		}
		return ""
	}
}

// prefix checks that a case's output begins with s.
func prefix(s string) func(out, errOut string) string {
	return func(out, _ string) string {
		if !strings.HasPrefix(out, s) {
			return fmt.Sprintf("printed %q, want it to begin with %q", out, s)
		}
		return ""
	}
}
