//go:build linux

package rootfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestPrepare(t *testing.T) {
	requireRoot(t)
	state := filepath.Join(t.TempDir(), "state")
	dir, _ := makeTree(t)
	file := filepath.Join(dir, "file")

	if err := Prepare(state, "alice", dir, 100000, 65536); err != nil {
		t.Fatal(err)
	}
	if got, _ := lstatOwner(t, file); got != (owner{100000, 100000}) {
		t.Fatalf("file: %v after Prepare", got)
	}
	recPath := filepath.Join(state, "rootfs", "alice.json")
	data, err := os.ReadFile(recPath)
	if err != nil {
		t.Fatal(err)
	}
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	if rec != (Record{Rootfs: dir, UID: 100000, GID: 100000, Size: 65536}) {
		t.Errorf("record = %+v", rec)
	}
	for p, want := range map[string]os.FileMode{recPath: 0o600, filepath.Dir(recPath): os.ModeDir | 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, want)
		}
	}

	// The shift is done once: a second call must not walk the tree again.
	if err := os.Lchown(file, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := Prepare(state, "alice", dir+"/", 100000, 65536); err != nil {
		t.Fatal(err)
	}
	if got, _ := lstatOwner(t, file); got != (owner{0, 0}) {
		t.Errorf("second Prepare walked the tree again: file owned by %v", got)
	}

	// A new base moves the tree from the old base.
	if err := os.Lchown(file, 100000, 100000); err != nil {
		t.Fatal(err)
	}
	if err := Prepare(state, "alice", dir, 300000, 65536); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]owner{"file": {300000, 300000}, "a/b/c/user": {301000, 301000}} {
		if got, _ := lstatOwner(t, filepath.Join(dir, name)); got != want {
			t.Errorf("after a new base: %s owned by %v, want %v", name, got, want)
		}
	}

	// Bob may not have it, by its path or through another one.
	err = Prepare(state, "bob", dir, 500000, 65536)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "rootfs "+dir+" is already prepared for tenant alice") {
		t.Errorf("another tenant's dir: err = %v", err)
	}
	alias := filepath.Join(t.TempDir(), "alias")
	if err := os.Symlink(filepath.Dir(dir), alias); err != nil {
		t.Fatal(err)
	}
	if err := Prepare(state, "bob", filepath.Join(alias, "tree"), 500000, 65536); !errors.Is(err, ErrInUse) {
		t.Errorf("another tenant's dir through a parent link: err = %v", err)
	}
	if got, _ := lstatOwner(t, file); got != (owner{300000, 300000}) {
		t.Errorf("a refused Prepare changed the tree: %v", got)
	}
	if _, err := os.Stat(filepath.Join(state, "rootfs", "bob.json")); err == nil {
		t.Error("a refused Prepare wrote a record")
	}
}

func TestPrepareRefuses(t *testing.T) {
	requireRoot(t)
	state := t.TempDir()
	dir, _ := makeTree(t)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, tenant, dir string
		is                error
	}{
		{"symlink", "alice", link, ErrSymlink},
		{"file", "alice", filepath.Join(dir, "file"), ErrNotDir},
		{"missing", "alice", filepath.Join(dir, "nope"), os.ErrNotExist},
		{"relative", "alice", "tree", nil},
		{"bad tenant", "../x", dir, nil},
		{"empty tenant", "", dir, nil},
	}
	for _, c := range cases {
		err := Prepare(state, c.tenant, c.dir, 100000, 65536)
		if err == nil || c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.is)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "rootfs: prepare ") {
			t.Errorf("%s: error %q lacks its op", c.name, err)
		}
	}
	if got, _ := lstatOwner(t, filepath.Join(dir, "file")); got != (owner{0, 0}) {
		t.Errorf("a refused Prepare changed the tree: %v", got)
	}
	var pe *os.PathError
	if err := Prepare(state, "alice", link, 100000, 65536); !errors.As(err, &pe) || pe.Path != link {
		t.Errorf("symlink: err = %#v, want an *os.PathError for %s", err, link)
	}
}

func TestPrepareConcurrent(t *testing.T) {
	requireRoot(t)
	state := t.TempDir()
	const tenants = 6
	dirs := make([]string, tenants)
	for i := range dirs {
		dirs[i], _ = makeTree(t)
	}
	shared, _ := makeTree(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4*tenants)
	var sharedWins sync.Map
	for i := 0; i < tenants; i++ {
		tenant := fmt.Sprintf("t%d", i)
		base := uint32(100000 + i*65536)
		for range 3 { // the same tenant, several times at once
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- Prepare(state, tenant, dirs[i], base, 65536)
			}()
		}
		wg.Add(1)
		go func() { // every tenant wants the shared dir too
			defer wg.Done()
			if err := Prepare(state, tenant+"-s", shared, base+32768, 1024); err == nil {
				sharedWins.Store(tenant, true)
			} else if !errors.Is(err, ErrInUse) {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for i, d := range dirs {
		base := uint32(100000 + i*65536)
		if got, _ := lstatOwner(t, filepath.Join(d, "file")); got != (owner{base, base}) {
			t.Errorf("tenant %d: file owned by %v, want %d", i, got, base)
		}
	}
	wins := 0
	sharedWins.Range(func(any, any) bool { wins++; return true })
	if wins != 1 {
		t.Errorf("%d tenants got the shared dir, want exactly 1", wins)
	}
}
