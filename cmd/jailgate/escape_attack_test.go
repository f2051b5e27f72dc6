//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
)

// attackOnce builds testdata/attack, static, once per test binary.
var attackOnce = sync.OnceValues(func() (string, error) { return buildStatic("./testdata/attack", "attack") })

// armed starts a lab whose tenants have the attack program in their tree
// (copied before the first login, so it is shifted into their ids).
func armed(t *testing.T, extra string) *lab {
	t.Helper()
	l := startLab(t, extra)
	bin, err := attackOnce()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(bin)
	for _, root := range l.rootfs {
		os.MkdirAll(filepath.Join(root, "usr/local/bin"), 0o755)
		if err := os.WriteFile(filepath.Join(root, "usr/local/bin/attack"), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// verdictOf runs `attack name` as alice, with a terminal when tty.
func verdictOf(t *testing.T, l *lab, name string, tty bool) string {
	t.Helper()
	s, err := l.client(t, "alice").NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if tty {
		if err := s.RequestPty("xterm", 24, 80, nil); err != nil {
			t.Fatal(err)
		}
	}
	out, _ := s.StdoutPipe()
	if err := s.Start("attack " + name); err != nil {
		t.Fatal(err)
	}
	line := gatewaytest.Expect(t, out, "\n", 10*time.Second)
	return strings.TrimSpace(line)
}

// TestEscapeAttacks: calls no shell can make, from a static program in her
// tree; each blocked by default and shown to get through with its
// protection switched off (or, for the chroot escape, contained by a
// structural one).
func TestEscapeAttacks(t *testing.T) {
	def := armed(t, "")
	open := armed(t, openExtra)
	cases := []struct {
		name, guard string
		tty         bool
	}{
		// seccomp denies the TIOCSTI ioctl (a command typed into her
		// terminal by a process that should not type).
		{"tiocsti", "seccomp", true},
		// The same with the upper half of the request set: the kernel reads
		// 32 bits, so must the filter (CVE-2019-10063).
		{"tiocsti-hi", "seccomp (32-bit ioctl request)", true},
		// io_uring runs syscalls from kernel workers; fanotify watches
		// whole mounts; a persona switches off ASLR; vsock is not
		// network-namespaced and reaches the hypervisor.
		{"io_uring", "seccomp", false},
		{"fanotify", "seccomp", false},
		{"personality", "seccomp", false},
		{"vsock", "seccomp", false},
		// seccomp denies keyctl (the kernel keyring is shared state).
		{"keyctl", "seccomp", false},
		// CAP_NET_RAW is not in the default set.
		{"rawsock", "capabilities", false},
		// The init is non-dumpable: attaching needs CAP_SYS_PTRACE over it.
		{"ptrace-init", "non-dumpable init, no CAP_SYS_PTRACE", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if v := verdictOf(t, def, tc.name, tc.tty); !strings.Contains(v, "BLOCKED") {
				t.Errorf("%s in a default jail: %q (guard: %s)", tc.name, v, tc.guard)
			}
			if v := verdictOf(t, open, tc.name, tc.tty); !strings.Contains(v, "ESCAPED") {
				t.Errorf("control: %s with %s off: %q", tc.name, tc.guard, v)
			}
		})
	}
	// The gateway binary behind /proc/1/exe: closed by the non-dumpable init,
	// and even with that switched off (CAP_SYS_PTRACE, seccomp off) by the
	// uid mapping: the binary's owner is unmapped in her namespace, so her
	// root has no write permission on it (CVE-2019-5736 needed host root).
	t.Run("write the gateway binary", func(t *testing.T) {
		for _, l := range []*lab{def, open} {
			if v := verdictOf(t, l, "write-init-exe", false); !strings.Contains(v, "BLOCKED") {
				t.Errorf("opened /proc/1/exe for writing: %q", v)
			}
		}
	})
	// bpf and module loading are refused by seccomp and again by the
	// kernel's own check for a capability in the host's user namespace,
	// which no tenant setting grants; the control is the same program run
	// on the host as root, where the call gets through (an empty module
	// fails on its content, past the permission check).
	t.Run("bpf and kernel modules", func(t *testing.T) {
		bin, _ := attackOnce()
		for _, name := range []string{"bpf", "module"} {
			if v := verdictOf(t, def, name, false); !strings.Contains(v, "BLOCKED") {
				t.Errorf("%s in a default jail: %q", name, v)
			}
			if v := verdictOf(t, open, name, false); strings.Contains(v, "ESCAPED") {
				t.Errorf("%s in a jail with seccomp off: %q", name, v)
			}
			out, _ := exec.Command(bin, name).CombinedOutput()
			switch {
			case strings.Contains(string(out), "UNSUPPORTED"):
				// A kernel built without modules has nothing to escape to.
				t.Logf("control: %s is not supported by this kernel (%q)", name, out)
			case !strings.Contains(string(out), "ESCAPED"):
				t.Errorf("control: %s as host root did not get through: %q", name, out)
			}
		}
	})
	// pivot_root: seccomp and CAP_SYS_ADMIN; with both off it gets past the
	// permission check (in her own mount namespace only).
	t.Run("pivot_root", func(t *testing.T) {
		if v := verdictOf(t, def, "pivot-root", false); !strings.Contains(v, "BLOCKED") {
			t.Errorf("pivot_root in a default jail: %q", v)
		}
		if v := verdictOf(t, open, "pivot-root", false); !strings.Contains(v, "ESCAPED") {
			t.Errorf("control: pivot_root with seccomp off and CAP_SYS_ADMIN: %q", v)
		}
	})
	// pivot_root with the old root detached: climbing out of a chroot
	// (CAP_SYS_CHROOT is in the default set) lands in her own tree.
	t.Run("chroot and ..", func(t *testing.T) {
		if v := verdictOf(t, def, "chroot", false); !strings.Contains(v, "CONTAINED") {
			t.Errorf("chroot escape: %q", v)
		}
	})
}
