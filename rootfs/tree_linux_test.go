package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jailgate/jailgate/internal/testfs"
	"github.com/jailgate/jailgate/statedir"
)

// TestTreesAreSubvolumes (issue 19): on btrfs, the trees a tenant's disk
// quota bounds are made as subvolumes, so that the btrfs backend can put a
// qgroup limit on them: a rootfs: tree built by FromHost, Import or
// Debootstrap, and an image: tenant's layer dir; each takes a limit, and
// RemoveLayer (tenant reset) removes her layer subvolume. On
// ext4 the same calls make plain directories.
func TestTreesAreSubvolumes(t *testing.T) {
	requireRoot(t)
	mnt := testfs.Btrfs(t)
	bin := filepath.Join(t.TempDir(), "debootstrap")
	if err := os.WriteFile(bin, []byte(fakeDebootstrap), 0o755); err != nil {
		t.Fatal(err)
	}
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "etc/hostname", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2})
	tw.Write([]byte("x\n"))
	tw.Close()
	build := map[string]func(dir string) error{
		"from-host": func(dir string) error { return FromHost(dir, FromHostOptions{}) },
		"import": func(dir string) error {
			_, err := Import(dir, bytes.NewReader(tarball.Bytes()), ImportOptions{})
			return err
		},
		"debootstrap": func(dir string) error {
			return Debootstrap(context.Background(), dir, DebootstrapOptions{Command: bin})
		},
	}
	for name, f := range build {
		dir := filepath.Join(mnt, "tenants", name)
		if err := f(dir); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		requireSubvolume(t, name, dir)
	}

	state := filepath.Join(mnt, "state")
	for _, d := range []string{"etc", "root"} {
		if err := os.MkdirAll(filepath.Join(ImageDir(state, "base"), d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	layers := NewLayers(state, LayerOptions{})
	defer layers.Close()
	_, release, err := layers.Acquire("alice", "base", aliceBase, rangeSize)
	if err != nil {
		t.Fatal(err)
	}
	release()
	requireSubvolume(t, "her layer dir", statedir.New(state).Tenant("alice"))
	// tenant reset removes her layer, subvolume and all.
	if err := layers.Close(); err != nil {
		t.Fatal(err)
	}
	if err := RemoveLayer(state, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(statedir.New(state).Tenant("alice")); err == nil {
		t.Error("her layer subvolume survived RemoveLayer")
	}

	ext := testfs.MustLoop(t, "ext4", "", "-q")
	dir := filepath.Join(ext, "tenants", "import")
	if err := build["import"](dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "etc/hostname")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("import on ext4: %v", err)
	}
}

// requireSubvolume checks that dir is a btrfs subvolume that takes a
// qgroup limit.
func requireSubvolume(t *testing.T, what, dir string) {
	t.Helper()
	tr, err := ProbeBtrfs(dir)
	if err != nil || !tr.Subvolume {
		t.Errorf("%s: %s is %+v (%v), want a btrfs subvolume", what, dir, tr, err)
		return
	}
	if err := SetBtrfsLimit(dir, 64<<20); err != nil {
		t.Errorf("%s: a limit on %s: %v", what, dir, err)
	}
	if u, err := btrfsUsage(dir); err != nil || u.BytesLimit != 64<<20 {
		t.Errorf("%s: %s's qgroup %+v (%v), want a 64 MiB limit", what, dir, u, err)
	}
}
