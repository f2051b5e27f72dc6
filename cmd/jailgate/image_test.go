//go:build linux

package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/rootfs"
	"github.com/jailgate/jailgate/statedir"
)

// imageLab serves alice and bob, both on the image "base" (built from the
// host's binaries) in environment mode, their layers kept by a
// rootfs.Layers with opts that logs to the lab's log. It returns the lab,
// its directory (the config is dir/jailgate.yaml) and the image.
func imageLab(t *testing.T, mode string, opts rootfs.LayerOptions) (l *lab, dir, image string) {
	t.Helper()
	jailtest.RequireRoot(t)
	dir = jailtest.SearchableTempDir(t)
	l = &lab{stateDir: filepath.Join(dir, "state"), keys: map[string]gossh.Signer{},
		rootfs: map[string]string{}, log: &syncBuffer{}}
	image = statedir.New(l.stateDir).Image("base")
	if err := rootfs.FromHost(image, rootfs.FromHostOptions{}); err != nil {
		t.Fatal(err)
	}
	opts.Logger = slog.New(slog.NewTextHandler(l.log, nil))
	layers := rootfs.NewLayers(l.stateDir, opts)
	// Registered before the gateway's cleanup, so it runs after it.
	t.Cleanup(func() { layers.Close() })
	var users strings.Builder
	for _, u := range []string{"alice", "bob"} {
		signer, pub := gatewaytest.NewKey(t)
		l.keys[u] = signer
		fmt.Fprintf(&users, "  %s:\n    keys: [%q]\n    image: base\n    environment: %s\n", u,
			strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pub))), mode)
	}
	l.layers = layers
	l.serve(t, dir, fmt.Sprintf("listen: 127.0.0.1:0\nstate_dir: %s\nusers:\n%s", l.stateDir, users.String()))
	return l, dir, image
}

// mounts counts the times tenant's layer was mounted, by the log.
func (l *lab) mounts(tenant string) int {
	return strings.Count(l.log.String(), `msg="tenant layer mounted" tenant=`+tenant+" ")
}

// unmounts counts the times tenant's layer was unmounted, by the log: the
// line comes once its lock is let go, a moment after Mounted turns false,
// so a tenant reset waits for it.
func (l *lab) unmounts(tenant string) int {
	return strings.Count(l.log.String(), `msg="tenant layer unmounted" tenant=`+tenant+" ")
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
	}
}

// hold keeps an environment of c's tenant alive with a session running
// sleep, until the test ends or the returned func is called.
func hold(t *testing.T, c *gossh.Client) func() {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	out, _ := s.StdoutPipe()
	if err := s.Start("echo started; exec sleep 1000"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "started\n", 10*time.Second)
	return func() { s.Close() }
}

// TestImageLayers: two tenants on one shared image each get a persistent
// copy-on-write layer: each sees her own changes and not the other's, the
// image on disk is unchanged, her upper dir holds her files owned by her
// id range, and her two connections see each other's writes at once. So
// too with the shifted copy that stands in where the kernel cannot idmap
// the image.
func TestImageLayers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		viaCopy bool
	}{{"idmapped", false}, {"shifted copy", true}} {
		t.Run(tc.name, func(t *testing.T) {
			testImageLayers(t, tc.viaCopy)
		})
	}
}

func testImageLayers(t *testing.T, viaCopy bool) {
	l, dir, image := imageLab(t, "connection", rootfs.LayerOptions{Grace: 200 * time.Millisecond, Copy: viaCopy})
	a1, a2, b := l.client(t, "alice"), l.client(t, "alice"), l.client(t, "bob")
	// Each connection's environment lives as long as a session does.
	hold(t, a1)
	hold(t, b)
	must(t, a1, "echo mine > /root/alice.txt; echo changed >> /etc/hostname-of-alice; rm /usr/bin/yes")
	// Her second connection (another environment, the same layer) sees it.
	if out := must(t, a2, "cat /root/alice.txt; test -e /usr/bin/yes && echo yes-there || echo yes-gone"); out != "mine\nyes-gone\n" {
		t.Errorf("alice's second connection sees %q", out)
	}
	// Bob sees the image as it was.
	if out := must(t, b, "cat /root/alice.txt 2>&1; test -e /usr/bin/yes && echo yes-there"); !strings.Contains(out, "No such file") || !strings.Contains(out, "yes-there") {
		t.Errorf("bob sees alice's changes: %q", out)
	}
	if fi, err := os.Stat(filepath.Join(image, "usr/bin/yes")); err != nil || fileUID(fi) != 0 {
		t.Error("the shared image lost /usr/bin/yes on disk, or it is no longer root's")
	}
	if _, err := os.Stat(filepath.Join(image, "root/alice.txt")); err == nil {
		t.Error("alice's file landed in the shared image")
	}
	upper := filepath.Join(statedir.New(l.stateDir).TenantUpper("alice"), "root", "alice.txt")
	fi, err := os.Stat(upper)
	if err != nil {
		t.Fatalf("alice's file is not in her upper dir: %v", err)
	}
	if uid := fileUID(fi); uid != l.base(t, "alice") {
		t.Errorf("her file is owned by host uid %d, want her base %d", uid, l.base(t, "alice"))
	}
	// Inside, the image's files are her root's.
	if out := must(t, b, "stat -c %u /usr/bin/ls"); out != "0\n" {
		t.Errorf("image files inside bob's jail are owned by %q, want 0", out)
	}
	copies, _ := filepath.Glob(filepath.Join(statedir.New(l.stateDir).Tenant("bob"), "lower-*", "usr", "bin", "ls"))
	if viaCopy {
		if len(copies) != 1 {
			t.Fatalf("bob's shifted copy of the image: found %v", copies)
		}
		if fi, err := os.Stat(copies[0]); err != nil || fileUID(fi) != l.base(t, "bob") {
			t.Errorf("bob's copy of /usr/bin/ls is not owned by his base %d: %v", l.base(t, "bob"), err)
		}
		if !strings.Contains(l.log.String(), "shifted copy") {
			t.Errorf("the log does not say the shifted copy was taken:\n%s", l.log.String())
		}
	} else if len(copies) != 0 {
		t.Errorf("idmapped lower layer, yet a copy of the image was made: %v", copies)
	}
	if n := l.mounts("alice"); n != 1 {
		t.Errorf("alice's layer was mounted %d times while her first connection lived, want 1", n)
	}

	// tenant du and reset.
	cfgPath := filepath.Join(dir, "jailgate.yaml")
	var out, errb bytes.Buffer
	if code := run([]string{"tenant", "du", "--config", cfgPath}, &out, &errb); code != 0 || !strings.Contains(out.String(), "alice\t") {
		t.Errorf("tenant du: %d %q %q", code, out.String(), errb.String())
	}
	if code := run([]string{"tenant", "reset", "--yes", "--config", cfgPath, "alice"}, &out, &errb); code == 0 {
		t.Error("tenant reset discarded a layer that is mounted")
	}
	a1.Close()
	a2.Close()
	// Her last environment gone, her layer goes after the grace; Bob's stays.
	waitFor(t, "alice's layer to be unmounted", 20*time.Second, func() bool { return l.unmounts("alice") == 1 })
	if !l.layers.Mounted("bob") {
		t.Error("bob's layer was unmounted while he is logged in")
	}
	if code := run([]string{"tenant", "reset", "--yes", "--config", cfgPath, "alice"}, &out, &errb); code != 0 {
		t.Fatalf("tenant reset: %s", errb.String())
	}
	if _, err := os.Stat(statedir.New(l.stateDir).Tenant("alice")); err == nil {
		t.Error("alice's layer is still there after reset")
	}
}

// TestImageLayerGrace: her layer stays mounted for the grace after her
// last environment ended, and not longer; a login within the grace finds it
// mounted, one after it mounts it again, and her files outlive the mount.
func TestImageLayerGrace(t *testing.T) {
	const grace = 3 * time.Second
	l, _, _ := imageLab(t, "tenant", rootfs.LayerOptions{Grace: grace})
	layers := l.layers
	c := l.client(t, "alice")
	must(t, c, "echo kept > /root/kept")
	ended := time.Now()
	// Her session, and with it her environment (linger 0), has ended.
	waitFor(t, "her environment to end", 10*time.Second, func() bool {
		return strings.Count(l.log.String(), `msg="environment end" tenant=alice `) == 1
	})
	if !layers.Mounted("alice") {
		t.Fatal("her layer was unmounted as her environment ended, not after the grace")
	}
	// A login within the grace: a new environment on the same mount.
	must(t, c, "cat /root/kept")
	if time.Since(ended) >= grace {
		t.Fatalf("the second login took longer than the grace (%v): nothing shown", grace)
	}
	if n := l.mounts("alice"); n != 1 {
		t.Errorf("a login within the grace mounted her layer again (%d mounts)", n)
	}
	ended = time.Now()
	waitFor(t, "her layer to be unmounted", grace+20*time.Second, func() bool { return !layers.Mounted("alice") })
	if d := time.Since(ended); d < grace {
		t.Errorf("her layer was unmounted %v after her last session, before the grace of %v", d, grace)
	}
	if out := must(t, c, "cat /root/kept"); out != "kept\n" {
		t.Errorf("after a remount her file reads %q", out)
	}
	if n := l.mounts("alice"); n != 2 {
		t.Errorf("her layer was mounted %d times, want 2 (the login after the grace mounts it again)", n)
	}
}

// TestImageLayerSessionMode: in session mode each session has its own
// environment, yet her concurrent sessions share one mount of her layer
// and see each other's writes at once.
func TestImageLayerSessionMode(t *testing.T) {
	l, _, _ := imageLab(t, "session", rootfs.LayerOptions{Grace: 200 * time.Millisecond})
	c := l.client(t, "alice")
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, _ := s.StdinPipe()
	out, _ := s.StdoutPipe()
	if err := s.Start("echo started; read go; cat /root/from-second; echo first > /root/from-first; echo written; exec sleep 1000"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "started\n", 10*time.Second)
	must(t, c, "echo second > /root/from-second")
	fmt.Fprintln(in, "go")
	gatewaytest.Expect(t, out, "second\nwritten\n", 10*time.Second)
	if got := must(t, c, "cat /root/from-first; ps -eo comm"); !strings.HasPrefix(got, "first\n") || strings.Contains(got, "sleep") {
		t.Errorf("a third session (own environment) sees %q; want the first one's file and not its sleep", got)
	}
	if n := l.mounts("alice"); n != 1 {
		t.Errorf("her layer was mounted %d times for concurrent sessions, want 1", n)
	}
	s.Close()
	waitFor(t, "her layer to be unmounted", 20*time.Second, func() bool { return !l.layers.Mounted("alice") })
}
