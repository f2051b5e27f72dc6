package jailtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/jailgate/jailgate/rootfs"
)

// SearchableTempDir returns a fresh directory whose every ancestor is
// searchable by others (t.TempDir is 0700), so a tenant's unprivileged host
// ids can reach a rootfs inside it. It is removed when the test ends.
func SearchableTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "jailgate-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Rootfs builds a working root filesystem from the host's binaries in a
// searchable temp dir, owned by host root as an operator would leave it.
func Rootfs(t testing.TB, name string, with ...string) string {
	t.Helper()
	dir := filepath.Join(SearchableTempDir(t), name)
	if err := rootfs.FromHost(dir, rootfs.FromHostOptions{With: with}); err != nil {
		t.Fatalf("build rootfs: %v", err)
	}
	return dir
}

// ShiftedRootfs is Rootfs with ownership already shifted to base, as
// rootfs.Prepare would leave it, for tests that start environments without
// the gateway.
func ShiftedRootfs(t testing.TB, name string, base, size uint32, with ...string) string {
	t.Helper()
	dir := Rootfs(t, name, with...)
	if err := rootfs.Shift(dir, 0, base, size); err != nil {
		t.Fatalf("shift rootfs: %v", err)
	}
	return dir
}
