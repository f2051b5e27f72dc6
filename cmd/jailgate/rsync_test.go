//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2ERsync: rsync -e ssh (OpenSSH) to and from alice's jail, which has
// rsync in its rootfs: a tree with a large file, a nested file, an odd mode
// and a symlink round-trips byte-identical, lands in her tree owned by her
// ids, and a changed file goes up again through rsync's delta transfer.
func TestE2ERsync(t *testing.T) {
	if _, err := exec.LookPath("rsync"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("rsync is not installed (.ci/run installs it)")
		}
		t.Skip("rsync is not installed")
	}
	g := startServe(t)
	if _, err := os.Stat(filepath.Join(g.rootfs["alice"], "usr/bin/rsync")); err != nil {
		t.Fatalf("the test rootfs has no rsync: %v", err)
	}
	src := filepath.Join(t.TempDir(), "src")
	big := make([]byte, 8<<20+123)
	rand.Read(big)
	files := map[string][]byte{"big.bin": big, "notes.txt": []byte("hello\n"), "sub/deeper/nested.txt": []byte("nested\n")}
	for name, data := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(src, "notes.txt"), 0o640)
	if err := os.Symlink("notes.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	e := "ssh " + strings.Join(g.clientOpts("alice", "-p"), " ")
	rsync := func(args ...string) {
		t.Helper()
		cmd := exec.Command("rsync", append([]string{"-a", "-e", e}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("rsync %v: %v\n%s", args, err, out)
		}
	}

	rsync(src+"/", "alice@127.0.0.1:up/")
	up := filepath.Join(g.rootfs["alice"], "root", "up")
	base := g.idBase(t, "alice")
	sameTree(t, src, up, base)

	down := filepath.Join(t.TempDir(), "down")
	rsync("alice@127.0.0.1:up/", down+"/")
	sameTree(t, src, down, 0)

	// A change in the middle of the big file goes up as a delta.
	copy(big[4<<20:], "changed in the middle")
	if err := os.WriteFile(filepath.Join(src, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	// rsync skips files of the same size and mtime; this second may be
	// the upload's.
	later := time.Now().Add(time.Minute)
	os.Chtimes(filepath.Join(src, "big.bin"), later, later)
	rsync("--no-whole-file", src+"/", "alice@127.0.0.1:up/")
	sameTree(t, src, up, base)
}

// sameTree checks that got holds exactly want's files, modes and symlinks,
// every entry owned by uid and gid owner.
func sameTree(t *testing.T, want, got string, owner uint32) {
	t.Helper()
	seen := 0
	filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(want, p)
		gp := filepath.Join(got, rel)
		wi, _ := os.Lstat(p)
		gi, err := os.Lstat(gp)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		seen++
		if wi.Mode() != gi.Mode() {
			t.Errorf("%s: mode %v, want %v", rel, gi.Mode(), wi.Mode())
		}
		if st := gi.Sys().(*syscall.Stat_t); st.Uid != owner || st.Gid != owner {
			t.Errorf("%s: owned by %d:%d, want %d:%d", rel, st.Uid, st.Gid, owner, owner)
		}
		switch {
		case wi.Mode()&fs.ModeSymlink != 0:
			wl, _ := os.Readlink(p)
			if gl, _ := os.Readlink(gp); gl != wl {
				t.Errorf("%s: symlink to %q, want %q", rel, gl, wl)
			}
		case wi.Mode().IsRegular():
			wb, _ := os.ReadFile(p)
			if gb, _ := os.ReadFile(gp); !bytes.Equal(wb, gb) {
				t.Errorf("%s: %d bytes differ from the %d sent", rel, len(gb), len(wb))
			}
		}
		return nil
	})
	n := 0
	filepath.WalkDir(got, func(string, fs.DirEntry, error) error { n++; return nil })
	if n != seen {
		t.Errorf("%s holds %d entries, want %d", got, n, seen)
	}
}
