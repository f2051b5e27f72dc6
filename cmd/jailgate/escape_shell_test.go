//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/statedir"
)

// openExtra switches the configurable protections off for a tenant:
// seccomp unconfined and the capabilities an attacker would want. The
// escape cases run against a default lab and against one like this, so
// each check is shown to be able to fail.
const openExtra = "    seccomp: unconfined\n    capabilities: [CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_MKNOD, CAP_NET_RAW, " +
	"CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_SETUID, CAP_SETGID, CAP_KILL, CAP_SYS_CHROOT]\n"

// attempt runs cmd as alice and reports whether it exited 0.
func attempt(t *testing.T, l *lab, cmd string) (string, bool) {
	t.Helper()
	out, errOut, err := runSSH(t, l.client(t, "alice"), cmd)
	return out + errOut, err == nil
}

// TestEscapeShell: Eve-style attacks from a root shell, each blocked by
// default, and each either shown to succeed with its protection switched
// off (seccomp, capabilities) or paired with a positive control where the
// protection is structural (namespaces, mounts) and cannot be switched off.
func TestEscapeShell(t *testing.T) {
	def := startLab(t, "")
	open := startLab(t, openExtra)

	// Guarded by seccomp (mount family) and capabilities (CAP_SYS_ADMIN).
	t.Run("mount", func(t *testing.T) {
		if out, ok := attempt(t, def, "mkdir -p /tmp/m && mount -t tmpfs x /tmp/m"); ok {
			t.Errorf("mount succeeded in a default jail: %s", out)
		}
		if out, ok := attempt(t, open, "mkdir -p /tmp/m && mount -t tmpfs x /tmp/m && umount /tmp/m"); !ok {
			t.Errorf("control: mount failed with seccomp off and CAP_SYS_ADMIN: %s", out)
		}
	})
	// Guarded by seccomp (umount2) and capabilities (CAP_SYS_ADMIN).
	t.Run("umount", func(t *testing.T) {
		if out, ok := attempt(t, def, "umount /dev/shm"); ok {
			t.Errorf("umount succeeded in a default jail: %s", out)
		}
		if out, ok := attempt(t, open, "umount /dev/shm"); !ok {
			t.Errorf("control: umount failed with seccomp off and CAP_SYS_ADMIN: %s", out)
		}
	})
	// Guarded by seccomp (unshare with CLONE_NEWUSER needs no capability).
	t.Run("unshare -U then mount", func(t *testing.T) {
		cmd := "unshare -Urm sh -c 'mount -t tmpfs x /mnt && echo MOUNTED'"
		if out, _ := attempt(t, def, cmd); strings.Contains(out, "MOUNTED") {
			t.Errorf("a nested user namespace mounted in a default jail: %s", out)
		}
		if out, ok := attempt(t, open, "unshare -U true"); !ok {
			t.Errorf("control: unshare -U failed with seccomp off: %s", out)
		}
	})
	// Guarded by the non-dumpable init (CVE-2019-5736 class: /proc/1/exe
	// and /proc/1/mem need CAP_SYS_PTRACE over its mm) and by masking its
	// fd tables (its /proc/1 belongs to her root: see jail initPrivate).
	t.Run("the init's fds and exe", func(t *testing.T) {
		if out, _ := attempt(t, def, "ls /proc/1/fd /proc/1/task/*/fd 2>&1 | grep -v ':$' | grep -v '^$'"); strings.TrimSpace(out) != "" {
			t.Errorf("the init's fds are listed in a default jail: %q", out)
		}
		if out, ok := attempt(t, def, "head -c 4 /proc/1/exe"); ok {
			t.Errorf("/proc/1/exe read in a default jail: %q", out)
		}
		if out, ok := attempt(t, open, "head -c 4 /proc/1/exe"); !ok || !strings.Contains(out, "ELF") {
			t.Errorf("control: /proc/1/exe unreadable even with CAP_SYS_PTRACE: %q", out)
		}
		if out, _ := attempt(t, def, "ls /proc/self/fd"); strings.Fields(out)[0] != "0" {
			t.Errorf("control: a shell's own fds unreadable: %s", out)
		}
	})
	// Guarded by the pid namespace (structural): the gateway is invisible.
	t.Run("signal a host process", func(t *testing.T) {
		if out, ok := attempt(t, def, fmt.Sprintf("kill -0 %d", os.Getpid())); ok {
			t.Errorf("kill -0 of the gateway succeeded: %s", out)
		}
		if out, ok := attempt(t, def, "kill -0 $$"); !ok {
			t.Errorf("control: kill -0 of itself failed: %s", out)
		}
	})
	// Guarded by the pid and mount namespaces (structural).
	t.Run("another tenant's processes and files", func(t *testing.T) {
		bob := def.client(t, "bob")
		s, err := bob.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out, _ := s.StdoutPipe()
		if err := s.Start("echo bob-secret > /root/bob-secret.txt; echo up; exec sleep 4242"); err != nil {
			t.Fatal(err)
		}
		gatewaytest.Expect(t, out, "up", 10*time.Second)
		// The patterns are assembled at run time so that alice's own command
		// line, which ps shows, cannot match them.
		got, _ := attempt(t, def, `n=secret; ps -eo args; find / -xdev -name "*-$n.txt" 2>/dev/null; echo mine > /root/alice-own.txt; find / -xdev -name "alice-own*"`)
		if strings.Contains(got, "sleep 4242") || strings.Contains(got, "/bob-secret.txt") {
			t.Errorf("alice sees bob's process or file:\n%s", got)
		}
		if !strings.Contains(got, "/root/alice-own.txt") {
			t.Errorf("control: find does not even find her own file:\n%s", got)
		}
	})
	// Guarded by the read-only /proc/sys and sysrq-trigger mounts: even
	// with CAP_SYS_ADMIN and no seccomp they stay read-only.
	t.Run("proc writes", func(t *testing.T) {
		for _, l := range []*lab{def, open} {
			if out, ok := attempt(t, l, "echo x > /proc/sys/kernel/hostname"); ok {
				t.Errorf("wrote /proc/sys/kernel/hostname: %s", out)
			}
			if out, ok := attempt(t, l, "echo h > /proc/sysrq-trigger"); ok {
				t.Errorf("wrote /proc/sysrq-trigger: %s", out)
			}
		}
		host, _ := os.Hostname()
		if out, ok := attempt(t, open, "hostname changed-inside && hostname"); !ok || !strings.Contains(out, "changed-inside") {
			t.Errorf("control: hostname with CAP_SYS_ADMIN failed: %s", out)
		}
		if now, _ := os.Hostname(); now != host {
			t.Errorf("the host's hostname changed to %q", now)
		}
	})
	// Guarded by masked paths (bind of /dev/null).
	t.Run("kernel memory and keys", func(t *testing.T) {
		if out, _ := attempt(t, def, "wc -c < /proc/kcore; wc -c < /proc/keys"); strings.Fields(out)[0] != "0" {
			t.Errorf("/proc/kcore or /proc/keys readable: %s", out)
		}
		if out, _ := attempt(t, def, "wc -c < /proc/self/status"); strings.TrimSpace(out) == "0" {
			t.Errorf("control: /proc/self/status empty too")
		}
	})
	// Guarded by the user namespace: no device node can be made or used.
	t.Run("mknod a block device", func(t *testing.T) {
		for _, l := range []*lab{def, open} {
			if out, ok := attempt(t, l, "mknod /tmp/sda b 8 0 && head -c 1 /tmp/sda"); ok {
				t.Errorf("made and read a block device: %s", out)
			}
		}
		if out, ok := attempt(t, def, "mknod /tmp/fifo p && test -p /tmp/fifo"); !ok {
			t.Errorf("control: mknod of a fifo failed: %s", out)
		}
	})
	// Guarded by the network namespace (structural): the host's loopback
	// is not hers.
	t.Run("host loopback port", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("HOST\n"))
				c.Close()
			}
		}()
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		if out, _ := attempt(t, def, "exec 3<>/dev/tcp/127.0.0.1/"+port+" && head -1 <&3"); strings.Contains(out, "HOST") {
			t.Errorf("reached the host's loopback listener: %s", out)
		}
		if out, _ := attempt(t, def, "sleep 100 </dev/null >/dev/null 2>&1 & exec 3<>/dev/tcp/127.0.0.1/"+port+" || echo refused"); !strings.Contains(out, "refused") {
			t.Errorf("control: expected a refused connection on her own loopback: %s", out)
		}
	})
	// Guarded by pivot_root (structural): host paths do not exist inside.
	t.Run("host key and state dir", func(t *testing.T) {
		key := statedir.New(def.stateDir).HostKey()
		os.MkdirAll(def.stateDir, 0o700)
		os.WriteFile(key, []byte("secret"), 0o600)
		if out, ok := attempt(t, def, "cat "+key+"; ls "+def.stateDir); ok || strings.Contains(out, "secret") {
			t.Errorf("host state reachable: %s", out)
		}
		if out, ok := attempt(t, def, "echo mine > /root/k && cat /root/k"); !ok || out != "mine\n" {
			t.Errorf("control: her own file: %q", out)
		}
	})
}

// TestEscapeHostileMountPoints: a tenant who turned dev, sys or tmp into a
// symlink to a host directory, or into a file, cannot start an environment
// that follows it; the host directory is unchanged (guarded by openat2
// RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS and mounting through /proc/self/fd).
func TestEscapeHostileMountPoints(t *testing.T) {
	for _, name := range []string{"dev", "sys", "tmp", "proc"} {
		for _, kind := range []string{"symlink", "file"} {
			t.Run(name+" as a "+kind, func(t *testing.T) {
				l := startLab(t, "")
				target := t.TempDir()
				p := filepath.Join(l.rootfs["alice"], name)
				os.RemoveAll(p)
				if kind == "symlink" {
					os.Symlink(target, p)
				} else {
					os.WriteFile(p, nil, 0o644)
				}
				_, errOut, err := runSSH(t, l.client(t, "alice"), "true")
				if err == nil || !strings.Contains(errOut, "could not start") {
					t.Errorf("environment started with %s as a %s: %v %q", name, kind, err, errOut)
				}
				if ents, _ := os.ReadDir(target); len(ents) != 0 {
					t.Errorf("the host directory behind the link was written: %v", ents)
				}
			})
		}
	}
}
