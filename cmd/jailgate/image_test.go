//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/rootfs"
)

// TestImageLayers: two tenants on one shared image each get a persistent
// copy-on-write layer: each sees her own changes and not the other's, the
// image on disk is unchanged, her upper dir holds her files owned by her
// id range, and her two connections see each other's writes at once.
func TestImageLayers(t *testing.T) {
	jailtest.RequireRoot(t)
	dir := jailtest.SearchableTempDir(t)
	l := &lab{stateDir: filepath.Join(dir, "state"), keys: map[string]gossh.Signer{},
		rootfs: map[string]string{}, log: &syncBuffer{}}
	image := rootfs.ImageDir(l.stateDir, "base")
	if err := rootfs.FromHost(image, rootfs.FromHostOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rootfs.UnmountImages(l.stateDir) })
	var users strings.Builder
	for _, u := range []string{"alice", "bob"} {
		signer, pub := gatewaytest.NewKey(t)
		l.keys[u] = signer
		fmt.Fprintf(&users, "  %s:\n    keys: [%q]\n    image: base\n    environment: connection\n", u,
			strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pub))))
	}
	l.serve(t, dir, fmt.Sprintf("listen: 127.0.0.1:0\nstate_dir: %s\nusers:\n%s", l.stateDir, users.String()))

	a1, a2, b := l.client(t, "alice"), l.client(t, "alice"), l.client(t, "bob")
	must(t, a1, "echo mine > /root/alice.txt; echo changed >> /etc/hostname-of-alice; rm /usr/bin/yes")
	// Her second connection (another environment, the same layer) sees it.
	if out := must(t, a2, "cat /root/alice.txt; test -e /usr/bin/yes && echo yes-there || echo yes-gone"); out != "mine\nyes-gone\n" {
		t.Errorf("alice's second connection sees %q", out)
	}
	// Bob sees the image as it was.
	if out := must(t, b, "cat /root/alice.txt 2>&1; test -e /usr/bin/yes && echo yes-there"); !strings.Contains(out, "No such file") || !strings.Contains(out, "yes-there") {
		t.Errorf("bob sees alice's changes: %q", out)
	}
	if _, err := os.Stat(filepath.Join(image, "usr/bin/yes")); err != nil {
		t.Error("the shared image lost /usr/bin/yes on disk")
	}
	if _, err := os.Stat(filepath.Join(image, "root/alice.txt")); err == nil {
		t.Error("alice's file landed in the shared image")
	}
	upper := filepath.Join(l.stateDir, "tenants", "alice", "upper", "root", "alice.txt")
	fi, err := os.Stat(upper)
	if err != nil {
		t.Fatalf("alice's file is not in her upper dir: %v", err)
	}
	if uid := fileUID(fi); uid != l.base(t, "alice") {
		t.Errorf("her file is owned by host uid %d, want her base %d", uid, l.base(t, "alice"))
	}
	// Inside, the image's files are her root's.
	if out := must(t, b, "stat -c %u /usr/bin/ls"); out != "0\n" {
		t.Errorf("image files inside bob's jail are owned by %q, want 0 (idmapped)", out)
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
	b.Close()
	l.srv.Close()
	rootfs.UnmountImages(l.stateDir)
	if code := run([]string{"tenant", "reset", "--yes", "--config", cfgPath, "alice"}, &out, &errb); code != 0 {
		t.Fatalf("tenant reset: %s", errb.String())
	}
	if _, err := os.Stat(filepath.Join(l.stateDir, "tenants", "alice")); err == nil {
		t.Error("alice's layer is still there after reset")
	}
}
