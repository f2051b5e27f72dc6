//go:build linux

package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

type owner struct{ uid, gid uint32 }

func lstatOwner(t *testing.T, p string) (owner, uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return owner{st.Uid, st.Gid}, st.Mode
}

// makeTree builds a tree holding every kind of entry a shift meets, and a
// root-owned file outside it that a link inside points at.
func makeTree(t *testing.T) (dir, outside string) {
	t.Helper()
	base := t.TempDir()
	dir = filepath.Join(base, "tree")
	outside = filepath.Join(base, "outside")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "a/b/c"), 0o755))
	must(os.WriteFile(outside, []byte("host"), 0o644))
	for _, f := range []string{"file", "suid", "sgid", "a/b/c/user", "stray", "inrange", "mixed"} {
		must(os.WriteFile(filepath.Join(dir, f), []byte(f), 0o755))
	}
	must(unix.Chmod(filepath.Join(dir, "suid"), 0o4755))
	must(unix.Chmod(filepath.Join(dir, "sgid"), 0o2755))
	must(os.Link(filepath.Join(dir, "file"), filepath.Join(dir, "a/b/hard")))
	must(os.Link(filepath.Join(dir, "file"), filepath.Join(dir, "hard")))
	must(os.Symlink(outside, filepath.Join(dir, "link")))
	must(unix.Mkfifo(filepath.Join(dir, "a/fifo"), 0o644))
	must(os.Lchown(filepath.Join(dir, "a/b/c/user"), 1000, 1000))
	must(os.Lchown(filepath.Join(dir, "a/b/c"), 1000, 1000))
	must(os.Lchown(filepath.Join(dir, "stray"), 200000, 300000))
	must(os.Lchown(filepath.Join(dir, "inrange"), 100005, 100005))
	must(os.Lchown(filepath.Join(dir, "mixed"), 0, 1000))
	return dir, outside
}

func TestShift(t *testing.T) {
	requireRoot(t)
	dir, outside := makeTree(t)
	const base, nobody = 100000, 100000 + 65534
	st, err := ShiftWithStats(dir, 0, base, 65536)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]owner{
		".":          {base, base},
		"file":       {base, base},
		"hard":       {base, base},
		"a/b/hard":   {base, base},
		"suid":       {base, base},
		"sgid":       {base, base},
		"link":       {base, base},
		"a":          {base, base},
		"a/fifo":     {base, base},
		"a/b/c":      {base + 1000, base + 1000},
		"a/b/c/user": {base + 1000, base + 1000},
		"stray":      {nobody, nobody},
		"inrange":    {100005, 100005},
		"mixed":      {base, base + 1000},
	}
	for name, w := range want {
		if got, _ := lstatOwner(t, filepath.Join(dir, name)); got != w {
			t.Errorf("%s: owner %v, want %v", name, got, w)
		}
	}
	if got, _ := lstatOwner(t, outside); got != (owner{0, 0}) {
		t.Errorf("the link's target outside the tree was re-owned: %v", got)
	}
	if _, mode := lstatOwner(t, filepath.Join(dir, "suid")); mode&0o7777 != 0o4755 {
		t.Errorf("suid: mode %o after the shift, want 4755", mode&0o7777)
	}
	if _, mode := lstatOwner(t, filepath.Join(dir, "sgid")); mode&0o7777 != 0o2755 {
		t.Errorf("sgid: mode %o after the shift, want 2755", mode&0o7777)
	}
	if st.Unmapped != 1 || st.Entries != 15 || st.Changed != 12 {
		t.Errorf("stats = %+v, want 15 entries, 12 changed, 1 unmapped", st)
	}

	// And back: everything returns but what was in neither range.
	if err := Shift(dir, base, 0, 65536); err != nil {
		t.Fatal(err)
	}
	want["stray"] = owner{65534, 65534}
	want["inrange"] = owner{5, 5}
	for name, w := range want {
		w.uid, w.gid = w.uid%base, w.gid%base
		if name == "stray" {
			w = owner{65534, 65534}
		}
		if got, _ := lstatOwner(t, filepath.Join(dir, name)); got != w {
			t.Errorf("back: %s: owner %v, want %v", name, got, w)
		}
	}
	if _, mode := lstatOwner(t, filepath.Join(dir, "suid")); mode&0o7777 != 0o4755 {
		t.Errorf("suid: mode %o after shifting back, want 4755", mode&0o7777)
	}
}

// TestShiftHardLinkOnce uses overlapping ranges, where shifting a file twice
// would show: 0 → 1000 → 2000.
func TestShiftHardLinkOnce(t *testing.T) {
	requireRoot(t)
	dir, _ := makeTree(t)
	if err := Shift(dir, 0, 1000, 65536); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"file", "hard", "a/b/hard", "a/b/c/user"} {
		want := owner{1000, 1000}
		if name == "a/b/c/user" {
			want = owner{2000, 2000}
		}
		if got, _ := lstatOwner(t, filepath.Join(dir, name)); got != want {
			t.Errorf("%s: owner %v, want %v", name, got, want)
		}
	}
}

func TestShiftSkipsMounts(t *testing.T) {
	requireRoot(t)
	dir, _ := makeTree(t)
	for _, m := range []string{"mnt", "bind"} {
		if err := os.Mkdir(filepath.Join(dir, m), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mnt := filepath.Join(dir, "mnt")
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "mode=755"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(mnt, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The tree bound into itself: same device, so only the mount id shows
	// it, and following it would never end.
	bind := filepath.Join(dir, "bind")
	if err := unix.Mount(dir, bind, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(bind, unix.MNT_DETACH) })

	st, err := ShiftWithStats(dir, 0, 100000, 65536)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mounts != 2 {
		t.Errorf("stats = %+v, want 2 mounts skipped", st)
	}
	for _, p := range []string{mnt, filepath.Join(mnt, "f")} {
		if got, _ := lstatOwner(t, p); got != (owner{0, 0}) {
			t.Errorf("%s on another mount was re-owned: %v", p, got)
		}
	}
	if got, _ := lstatOwner(t, filepath.Join(dir, "file")); got != (owner{100000, 100000}) {
		t.Errorf("file: %v", got)
	}
}

func TestShiftRefuses(t *testing.T) {
	requireRoot(t)
	dir, _ := makeTree(t)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if err := Shift(link, 0, 100000, 65536); !errors.Is(err, ErrSymlink) {
		t.Errorf("symlinked dir: err = %v, want ErrSymlink", err)
	}
	if got, _ := lstatOwner(t, filepath.Join(dir, "file")); got != (owner{0, 0}) {
		t.Errorf("the tree behind a link was shifted: %v", got)
	}
	if err := Shift(filepath.Join(dir, "file"), 0, 100000, 65536); !errors.Is(err, ErrNotDir) {
		t.Errorf("file: err = %v, want ErrNotDir", err)
	}
	if err := Shift(filepath.Join(dir, "missing"), 0, 100000, 65536); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: err = %v, want ErrNotExist", err)
	}
	for _, r := range [][3]uint32{{0, 100000, 0}, {0, 0xffff0000, 0x10000}, {0xffffff00, 0, 0x1000}} {
		if err := Shift(dir, r[0], r[1], r[2]); err == nil {
			t.Errorf("Shift(%d, %d, %d) accepted", r[0], r[1], r[2])
		}
	}
}

func TestMapID(t *testing.T) {
	s, err := newIDShift(0, 100000, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in, out uint32
		outside bool
	}{
		{0, 100000, false}, {999, 100999, false}, {1000, 100999, true},
		{100500, 100500, false}, {65534, 100999, true},
	} {
		if out, outside := s.mapID(c.in); out != c.out || outside != c.outside {
			t.Errorf("mapID(%d) = %d, %v; want %d, %v", c.in, out, outside, c.out, c.outside)
		}
	}
	if big, _ := newIDShift(0, 100000, 65536); big.nobody() != 165534 {
		t.Errorf("nobody = %d, want 165534", big.nobody())
	}
}
