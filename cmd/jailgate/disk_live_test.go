//go:build linux

package main

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/rootfs"
	"github.com/jailgate/jailgate/statedir"
)

// ptyLogin opens a shell in a terminal as c's tenant, as her interactive
// login does, and returns what it printed up to a command's output.
func ptyLogin(t *testing.T, c *gossh.Client) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.RequestPty("xterm", 24, 80, nil)
	out, _ := s.StdoutPipe()
	in, _ := s.StdinPipe()
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	in.Write([]byte("echo end-$((6*7))\n"))
	return gatewaytest.Expect(t, out, "end-42", 10*time.Second)
}

// statusOf is tenant's line of jailgate status for the config at path.
func statusOf(t *testing.T, path, tenant string) string {
	t.Helper()
	var out, errOut strings.Builder
	code := run([]string{"status", "--config", path}, &out, &errOut)
	for _, l := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(l); code == 0 && len(f) > 0 && f[0] == tenant {
			return l
		}
	}
	t.Errorf("status: exit %d, no line for %s:\n%s%s", code, tenant, out.String(), errOut.String())
	return ""
}

// reloadDisk rewrites the config at path with alice's (the first tenant's)
// limits.disk set to size, and reloads it into l's gateway as jailgate
// reload does: swapped in, then applied live (applyDisk, whose lines it
// returns).
func (l *lab) reloadDisk(t *testing.T, path, size string) []string {
	t.Helper()
	b, _ := os.ReadFile(path)
	loc := regexp.MustCompile(`disk: \S+`).FindIndex(b)
	b = append(append(b[:loc[0]:loc[0]], "disk: "+size...), b[loc[1]:]...)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	l.srv.SetConfig(c)
	return applyDisk(l.prov, c, slog.New(slog.NewTextHandler(l.log, nil)))
}

// restart ends l's gateway with its environments and layers, and serves
// the config at path again on the same state dir.
func (l *lab) restart(t *testing.T, path string) {
	t.Helper()
	l.stop()
	if l.layers != nil {
		layers := rootfs.NewLayers(l.stateDir, rootfs.LayerOptions{Logger: slog.New(slog.NewTextHandler(l.log, nil))})
		t.Cleanup(func() { layers.Close() })
		l.layers = layers
	}
	yaml, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l.serve(t, filepath.Dir(path), string(yaml))
}

// stop ends l's gateway, its environments and its layers (unmounted).
func (l *lab) stop() {
	l.srv.Close()
	l.sup.Close()
	l.prov.Close()
}

// ddSize writes up to 200 MiB into file (anew) as c's tenant and returns
// the size it reached; it must stop with EDQUOT or ENOSPC.
func ddSize(t *testing.T, c *gossh.Client, file string) int64 {
	t.Helper()
	must(t, c, "rm -f "+file)
	exec.Command("sync").Run() // btrfs counts what rm freed at commit
	out, _ := tryAttack(t, c, "alice", "dd of 200 MiB", "dd if=/dev/zero of="+file+" bs=1M count=200; stat -c 'size %s' "+file)
	if !strings.Contains(out, "Disk quota exceeded") && !strings.Contains(out, "No space left on device") {
		t.Errorf("dd of 200 MiB past her quota: %s", out)
	}
	var n int64
	if m := regexp.MustCompile(`size (\d+)`).FindStringSubmatch(out); m != nil {
		n, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return n
}

// diskGauge is the value of a per-tenant disk gauge in reg for tenant.
func diskGauge(t *testing.T, m *gateway.Metrics, name, tenant string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, s := range f.GetMetric() {
			if f.GetName() == name && len(s.GetLabel()) == 1 && s.GetLabel()[0].GetValue() == tenant {
				return s.GetGauge().GetValue()
			}
		}
	}
	t.Errorf("/metrics has no %s{tenant=%q}", name, tenant)
	return -1
}

// TestDiskLiveBtrfs (issue 19), a rootfs: tenant whose tree is a btrfs
// subvolume with disk: 64MiB: under her quota her login says nothing;
// past it (dd of 200 MiB), her next login in a terminal prints one line
// with what she holds, her quota and the du hint, and the gateway logs
// limit.disk once; /metrics has her use and limit. A reload lowering it to
// 48MiB applies live: status shows it, and dd in her running environment
// stops near 48 MiB; bob's stays 64MiB. It survives a gateway restart.
func TestDiskLiveBtrfs(t *testing.T) {
	l := btrfsLab(t)
	path := l.srv.Config().File
	alice := l.client(t, "alice")
	if got := ptyLogin(t, alice); strings.Contains(got, "disk is full") {
		t.Errorf("under her quota, her login: %q", got)
	}
	ddSize(t, alice, "/root/big")
	exec.Command("sync").Run() // btrfs counts a qgroup at commit
	for i := range 2 {
		got := ptyLogin(t, alice)
		t.Logf("login %d past her quota: %q", i+1, got)
		for _, want := range []string{"\r\njailgate: your disk is full: ", " used of your 64MiB quota (limits.disk)", "What takes it: du -sh ~/* | sort -h\r\n"} {
			if !strings.Contains(got, want) {
				t.Errorf("login %d past her quota lacks %q", i+1, want)
			}
		}
	}
	if n := strings.Count(l.log.String(), "msg=limit.disk tenant=alice"); n != 1 {
		t.Errorf("%d limit.disk lines for alice after two logins past her quota, want 1", n)
	}
	d := &daemon{cfg: l.srv.Config(), srv: l.srv, metrics: gateway.NewMetrics(nil, nil)}
	d.watchDisk()
	used, limit := diskGauge(t, d.metrics, "jailgate_tenant_disk_bytes", "alice"), diskGauge(t, d.metrics, "jailgate_tenant_disk_max_bytes", "alice")
	t.Logf("/metrics: alice holds %v of %v", used, limit)
	if limit != 64<<20 || used < 48<<20 || used > 68<<20 {
		t.Errorf("/metrics: alice holds %v of %v, want near 64 MiB of 64 MiB", used, limit)
	}

	if lines := l.reloadDisk(t, path, "48MiB"); lines != nil {
		t.Errorf("reload to 48MiB: %q", lines)
	}
	if st := statusOf(t, path, "alice"); !strings.Contains(st, "/ 48MiB (btrfs)") {
		t.Errorf("status after the reload: %q, want / 48MiB (btrfs)", st)
	}
	if st := statusOf(t, path, "bob"); !strings.Contains(st, "/ 64MiB (btrfs)") {
		t.Errorf("bob's status after alice's reload: %q, want / 64MiB (btrfs)", st)
	}
	used48 := func(when string) {
		ddSize(t, alice, "/root/big")
		if u := usageOf(t, l, "alice", l.rootfs["alice"])(); u > 48<<20 || u < 40<<20 {
			t.Errorf("dd %s: her tree holds %d bytes, want near 48 MiB", when, u)
		}
	}
	used48("in her running environment after the reload")

	l.restart(t, path)
	alice = l.client(t, "alice")
	if st := statusOf(t, path, "alice"); !strings.Contains(st, "/ 48MiB (btrfs)") {
		t.Errorf("status after a restart: %q, want / 48MiB (btrfs)", st)
	}
	used48("after a restart")
}

// statusDisk parses used and limit from a status line's DISK column.
func statusDisk(t *testing.T, line string) (used, limit int64) {
	t.Helper()
	m := regexp.MustCompile(`(\S+) / (\S+) \(image\)`).FindStringSubmatch(line)
	if m == nil {
		t.Errorf("status line %q has no image disk column", line)
		return -1, -1
	}
	u, _ := config.ParseSize(m[1])
	l, _ := config.ParseSize(m[2])
	return u, l
}

// TestDiskLiveImage (issue 19), an image: tenant with disk: 64MiB in her
// disk image: a reload lowering it is refused with the reason (an ext4
// image cannot shrink while mounted) and her quota stays; a reload
// raising it to 128MiB grows her image, online where the gateway has
// CAP_SYS_RESOURCE, else (said) at her next login: after a restart it is
// in force and her file is kept. tenant reset, once she is gone, clears
// her usage: status shows no image, then near 0 used at her next login.
func TestDiskLiveImage(t *testing.T) {
	jailtest.RequireRoot(t)
	dir := jailtest.SearchableTempDir(t)
	l := &lab{stateDir: filepath.Join(dir, "state"), keys: map[string]gossh.Signer{},
		rootfs: map[string]string{}, log: &syncBuffer{}}
	state := statedir.New(l.stateDir)
	if err := rootfs.FromHost(state.Image("base"), rootfs.FromHostOptions{With: []string{"dd", "sync"}}); err != nil {
		t.Fatal(err)
	}
	l.layers = rootfs.NewLayers(l.stateDir, rootfs.LayerOptions{Logger: slog.New(slog.NewTextHandler(l.log, nil))})
	t.Cleanup(func() { l.layers.Close() })
	users := diskUsers(t, l, map[string]string{"alice": ""}, func(string) string { return "image: base" })
	l.serve(t, dir, "listen: 127.0.0.1:0\nstate_dir: "+l.stateDir+"\ndisk_quota: image\nusers:\n"+users)
	path := filepath.Join(dir, "jailgate.yaml")
	alice := l.client(t, "alice")
	hold(t, alice)
	must(t, alice, "dd if=/dev/zero of=/root/kept bs=1M count=20 2>&1; sync")
	_, before := statusDisk(t, statusOf(t, path, "alice"))

	lines := l.reloadDisk(t, path, "32MiB")
	t.Logf("reload to 32MiB: %q", lines)
	if len(lines) != 1 || !strings.Contains(lines[0], "alice: disk quota change refused: limits.disk 33554432 is below alice's disk image of 67108864 bytes: "+
		"an ext4 file system cannot shrink while mounted") {
		t.Errorf("reload lowering her image's size: %q, want it refused with the reason", lines)
	}
	if _, lim := statusDisk(t, statusOf(t, path, "alice")); lim != before {
		t.Errorf("status after a refused shrink: limit %d, want %d kept", lim, before)
	}

	lines = l.reloadDisk(t, path, "128MiB")
	t.Logf("reload to 128MiB: %q", lines)
	_, lim := statusDisk(t, statusOf(t, path, "alice"))
	switch {
	case len(lines) == 0 && lim > 100<<20:
		t.Log("her image grew online")
	case len(lines) == 1 && strings.Contains(lines[0], "could not grow while mounted") && strings.Contains(lines[0], "it grows to 134217728 bytes at her next login"):
		t.Logf("online resize refused here (the gateway lacks CAP_SYS_RESOURCE?): %s", lines[0])
	default:
		t.Errorf("reload to 128MiB: %q, limit %d: want grown, or the reason it grows at her next login", lines, lim)
	}
	l.restart(t, path)
	alice = l.client(t, "alice")
	if out := must(t, alice, "stat -c %s /root/kept"); out != "20971520\n" {
		t.Errorf("her file after a restart: %q", out)
	}
	if _, lim := statusDisk(t, statusOf(t, path, "alice")); lim < 100<<20 {
		t.Errorf("status after a restart: limit %d, want her image grown to 128 MiB", lim)
	}

	l.stop() // tenant reset waits for her layer to be unmounted
	var out, errOut strings.Builder
	if code := run([]string{"tenant", "reset", "--yes", "--config", path, "alice"}, &out, &errOut); code != 0 {
		t.Fatalf("tenant reset: exit %d %s%s", code, out.String(), errOut.String())
	}
	if st := statusOf(t, path, "alice"); !regexp.MustCompile(`\s-\s+-\s`).MatchString(st) {
		t.Errorf("status after tenant reset: %q, want - - (no image)", st)
	}
	l.restart(t, path)
	alice = l.client(t, "alice")
	must(t, alice, "true")
	used, lim := statusDisk(t, statusOf(t, path, "alice"))
	t.Logf("after tenant reset and a login: %d used of %d", used, lim)
	if used > 4<<20 || lim < 100<<20 {
		t.Errorf("after tenant reset and a login: %d used of %d, want near 0 of 128 MiB", used, lim)
	}
}
