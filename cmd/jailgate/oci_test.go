//go:build linux

package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/rootfs"
)

// imageBuildDir makes a directory for a test that builds an image with a
// rootfs subcommand and then serves it: a config holding only the state
// directory (dir/state) is at dir/jailgate.yaml, which is what the
// subcommands read.
func imageBuildDir(t *testing.T) (dir, cfg string) {
	t.Helper()
	jailtest.RequireRoot(t)
	dir = jailtest.SearchableTempDir(t)
	cfg = filepath.Join(dir, "jailgate.yaml")
	if err := os.WriteFile(cfg, []byte("state_dir: "+filepath.Join(dir, "state")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, cfg
}

// rootfsCmd runs `jailgate rootfs ARGS…` in-process and fails the test
// unless it succeeds; it returns what it wrote on stderr.
func rootfsCmd(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(append([]string{"rootfs"}, args...), &out, &errb); code != 0 {
		t.Fatalf("jailgate rootfs %s: exit %d\n%s", strings.Join(args, " "), code, errb.String())
	}
	return errb.String()
}

// loginToImage serves alice, a tenant on the image built under dir's
// state directory, and logs her in.
func loginToImage(t *testing.T, dir, image string) *gossh.Client {
	t.Helper()
	l := &lab{stateDir: filepath.Join(dir, "state"), keys: map[string]gossh.Signer{},
		rootfs: map[string]string{}, log: &syncBuffer{}}
	layers := rootfs.NewLayers(l.stateDir, rootfs.LayerOptions{Logger: slog.New(slog.NewTextHandler(l.log, nil))})
	t.Cleanup(func() { layers.Close() }) // after the gateway's cleanup: registered before it
	signer, pub := gatewaytest.NewKey(t)
	l.keys["alice"] = signer
	l.layers = layers
	l.serve(t, dir, fmt.Sprintf("listen: 127.0.0.1:0\nstate_dir: %s\nusers:\n  alice:\n    keys: [%q]\n    image: %s\n",
		l.stateDir, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pub))), image))
	return l.client(t, "alice")
}

// TestOCIImageImport: an OCI image of two layers, the first a tree built
// from the host's binaries and the second deleting a command by a
// whiteout and adding a file, imported with `rootfs import`, is what a
// tenant on it sees.
func TestOCIImageImport(t *testing.T) {
	dir, cfg := imageBuildDir(t)
	tree := filepath.Join(t.TempDir(), "tree")
	if err := rootfs.FromHost(tree, rootfs.FromHostOptions{}); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(t.TempDir(), "base.tar")
	if out, err := exec.Command("tar", "-C", tree, "-cf", base, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	l1, err := tarball.LayerFromFile(base)
	if err != nil {
		t.Fatal(err)
	}
	var top bytes.Buffer
	tw := tar.NewWriter(&top)
	for name, body := range map[string]string{"usr/bin/.wh.yes": "", "etc/motd": "from layer 2\n"} {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
		tw.Write([]byte(body))
	}
	tw.Close()
	l2, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(top.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	oci := filepath.Join(t.TempDir(), "oci")
	p, err := layout.Write(oci, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}

	log := rootfsCmd(t, "import", "layered", oci, "--config", cfg)
	if !strings.Contains(log, "layer 2/2 sha256:") || !strings.Contains(log, "applied 1 whiteouts; skipped 0") {
		t.Errorf("the import did not report its layers and whiteout:\n%s", log)
	}
	c := loginToImage(t, dir, "layered")
	if out := must(t, c, "cat /etc/motd; test -e /usr/bin/yes && echo yes-there || echo yes-gone; id -u; stat -c %u /usr/bin/ls"); out != "from layer 2\nyes-gone\n0\n0\n" {
		t.Errorf("in the jail: %q, want layer 2's motd, no yes, root, and the image's files her root's", out)
	}
}
