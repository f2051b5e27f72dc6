package rootfs

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bases of the test tenants' id ranges.
const aliceBase, bobBase, rangeSize = 300000, 400000, 65536

// layerLab is a state directory with an image "base" and Layers over it.
type layerLab struct {
	stateDir, image string
	layers          *Layers
	log             *logBuffer
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *logBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *logBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// newLayerLab makes a small image: root's files, and one of uid 1000.
func newLayerLab(t *testing.T, opts LayerOptions) *layerLab {
	t.Helper()
	requireRoot(t)
	l := &layerLab{stateDir: t.TempDir(), log: &logBuffer{}}
	l.image = ImageDir(l.stateDir, "base")
	for _, d := range []string{"etc", "root", "home/user"} {
		if err := os.MkdirAll(filepath.Join(l.image, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(l.image, "etc/motd"), []byte("image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	user := filepath.Join(l.image, "home/user/notes")
	if err := os.WriteFile(user, []byte("user's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{user, filepath.Dir(user)} {
		if err := os.Lchown(p, 1000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	opts.Logger = slog.New(slog.NewTextHandler(l.log, nil))
	l.layers = NewLayers(l.stateDir, opts)
	t.Cleanup(func() {
		if err := l.layers.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if t.Failed() {
			t.Logf("log:\n%s", l.log.String())
		}
	})
	return l
}

func (l *layerLab) acquire(t *testing.T, tenant string, base uint32) (string, func()) {
	t.Helper()
	merged, release, err := l.layers.Acquire(tenant, "base", base, rangeSize)
	if err != nil {
		t.Fatal(err)
	}
	return merged, release
}

// mountIDs returns the ids of the mounts on dir, from the bottom up.
func mountIDs(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var ids []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			ids = append(ids, f[0])
		}
	}
	return ids
}

// waitUnmounted waits for tenant's layer to go and says when it went.
func (l *layerLab) waitUnmounted(t *testing.T, tenant string) time.Time {
	t.Helper()
	end := time.Now().Add(10 * time.Second)
	for ; l.layers.Mounted(tenant); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s's layer is still mounted", tenant)
		}
	}
	gone := time.Now()
	// The unmount drops her directory's lock just after the mount goes;
	// a RemoveLayer in between would find it held.
	for ; l.locked(tenant); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s's layer is unmounted but still holds her directory's lock", tenant)
		}
	}
	return gone
}

// locked reports whether tenant's layer still holds her directory's lock.
func (l *layerLab) locked(tenant string) bool {
	l.layers.mu.Lock()
	ly := l.layers.tenants[tenant]
	l.layers.mu.Unlock()
	if ly == nil {
		return false
	}
	ly.mu.Lock()
	defer ly.mu.Unlock()
	return ly.lock != nil
}

// asTenant runs argv as the host uid and gid base (a tenant's root).
func asTenant(t *testing.T, base uint32, argv ...string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: base, Gid: base}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v as uid %d: %v: %s", argv, base, err, out)
	}
}

func hostUID(t *testing.T, p string) uint32 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Uid
}

// TestLayersGrace: the layer stays mounted for the grace after its last
// release and no longer; an Acquire within the grace keeps the very mount,
// and files outlive an unmount.
func TestLayersGrace(t *testing.T) {
	const grace = 300 * time.Millisecond
	l := newLayerLab(t, LayerOptions{Grace: grace})
	merged, release := l.acquire(t, "alice", aliceBase)
	first := mountIDs(merged)
	if len(first) != 1 {
		t.Fatalf("mounts on %s: %v, want one", merged, first)
	}
	if err := os.WriteFile(filepath.Join(merged, "root/kept"), []byte("kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	release()
	release() // a second call does nothing
	// Within the grace: the same mount, and the pending unmount is off.
	_, release = l.acquire(t, "alice", aliceBase)
	time.Sleep(2 * grace) // nothing must happen: there is no event to wait for
	if ids := mountIDs(merged); len(ids) != 1 || ids[0] != first[0] {
		t.Fatalf("an Acquire within the grace: mounts %v, want the first one %v", ids, first)
	}
	release()
	released := time.Now()
	if d := l.waitUnmounted(t, "alice").Sub(released); d < grace {
		t.Errorf("unmounted %v after the last release, before the grace of %v", d, grace)
	}
	// Then its idmapped lower goes, and the mount points are removed.
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(filepath.Dir(merged)); err != nil {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the mount point directories stay after the unmount")
		}
	}
	merged, release = l.acquire(t, "alice", aliceBase)
	defer release()
	if b, err := os.ReadFile(filepath.Join(merged, "root/kept")); err != nil || string(b) != "kept\n" {
		t.Errorf("after a remount: %q, %v", b, err)
	}
}

// TestLayersConcurrent: Acquires and releases of one tenant racing each
// other and the grace timer never stack two overlays on her upper dir, and
// every holder sees one tree.
func TestLayersConcurrent(t *testing.T) {
	l := newLayerLab(t, LayerOptions{Grace: time.Millisecond})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				merged, release, err := l.layers.Acquire("alice", "base", aliceBase, rangeSize)
				if err != nil {
					t.Error(err)
					return
				}
				if ids := mountIDs(merged); len(ids) != 1 {
					t.Errorf("held, %s has mounts %v, want one", merged, ids)
				}
				name := filepath.Join(merged, "root", string(rune('a'+i)))
				if err := os.WriteFile(name, []byte{byte(j)}, 0o644); err != nil {
					t.Error(err)
				}
				if b, err := os.ReadFile(name); err != nil || len(b) != 1 || b[0] != byte(j) {
					t.Errorf("read back %v, %v", b, err)
				}
				if j%3 == 0 {
					time.Sleep(time.Millisecond) // let the grace pass now and then
				}
				release()
			}
		}()
	}
	wg.Wait()
	l.waitUnmounted(t, "alice")
	merged, release := l.acquire(t, "alice", aliceBase)
	defer release()
	ents, _ := os.ReadDir(filepath.Join(merged, "root"))
	if len(ents) != 8 {
		t.Errorf("her root holds %d files after the race, want 8", len(ents))
	}
}

// TestLayersBusy: a layer still in use on the host when the grace ends is
// not detached (her next mount would stack a second overlay on her upper
// dir): it stays mounted, and goes once it is free.
func TestLayersBusy(t *testing.T) {
	l := newLayerLab(t, LayerOptions{Grace: 50 * time.Millisecond})
	merged, release := l.acquire(t, "alice", aliceBase)
	f, err := os.Open(filepath.Join(merged, "etc/motd"))
	if err != nil {
		t.Fatal(err)
	}
	release()
	for end := time.Now().Add(10 * time.Second); !strings.Contains(l.log.String(), "still in use"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			f.Close()
			t.Fatalf("no unmount attempt logged")
		}
	}
	if !l.layers.Mounted("alice") {
		t.Error("a busy layer was detached")
	}
	f.Close()
	l.waitUnmounted(t, "alice")
}

// TestLayersLowers: with the idmapped image and with the shifted copy,
// two tenants on one image each see their own changes only; what they
// write and what is copied up is owned by their ranges on disk; the image
// is unchanged.
func TestLayersLowers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		viaCopy bool
	}{{"idmapped", false}, {"shifted copy", true}} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayerLab(t, LayerOptions{Copy: tc.viaCopy})
			a, releaseA := l.acquire(t, "alice", aliceBase)
			defer releaseA()
			b, releaseB := l.acquire(t, "bob", bobBase)
			defer releaseB()
			// As seen from her jail's host ids: the image is her root's.
			if u := hostUID(t, filepath.Join(a, "home/user/notes")); u != aliceBase+1000 {
				t.Errorf("alice sees the image's uid 1000 file as host uid %d, want %d", u, aliceBase+1000)
			}
			asTenant(t, aliceBase, "touch", filepath.Join(a, "root/alice"))
			asTenant(t, aliceBase+1000, "touch", filepath.Join(a, "home/user/notes"))
			if err := os.Remove(filepath.Join(b, "etc/motd")); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				path string
				uid  uint32
			}{
				{"tenants/alice/upper/root/alice", aliceBase},
				{"tenants/alice/upper/home/user/notes", aliceBase + 1000}, // copied up
			} {
				if u := hostUID(t, filepath.Join(l.stateDir, c.path)); u != c.uid {
					t.Errorf("%s is owned by host uid %d, want %d", c.path, u, c.uid)
				}
			}
			if _, err := os.Stat(filepath.Join(b, "root/alice")); err == nil {
				t.Error("bob sees alice's file")
			}
			if _, err := os.Stat(filepath.Join(a, "etc/motd")); err != nil {
				t.Error("bob's removal reached alice")
			}
			if _, err := os.Stat(filepath.Join(l.image, "etc/motd")); err != nil {
				t.Error("bob's removal reached the image")
			}
			if u := hostUID(t, filepath.Join(l.image, "home/user/notes")); u != 1000 {
				t.Errorf("the image's file is now owned by %d", u)
			}
			if _, err := os.Stat(filepath.Join(l.image, "root/alice")); err == nil {
				t.Error("alice's file landed in the image")
			}
			copies, _ := filepath.Glob(filepath.Join(l.stateDir, "tenants", "*", "lower-*"))
			if tc.viaCopy != (len(copies) == 2) || (!tc.viaCopy && len(copies) != 0) {
				t.Errorf("shifted copies: %v", copies)
			}
			if tc.viaCopy != strings.Contains(l.log.String(), `lower="shifted copy"`) {
				t.Errorf("the log does not say which lower layer was taken:\n%s", l.log.String())
			}
		})
	}
}

// TestLayersShiftedCopyReused: the copy is made once per tenant and image,
// and remade (the old one removed) for a new id range.
func TestLayersShiftedCopyReused(t *testing.T) {
	l := newLayerLab(t, LayerOptions{Copy: true, Grace: time.Millisecond})
	_, release := l.acquire(t, "alice", aliceBase)
	release()
	l.waitUnmounted(t, "alice")
	first, _ := filepath.Glob(filepath.Join(l.stateDir, "tenants/alice/lower-*"))
	marker := filepath.Join(first[0], "marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, release = l.acquire(t, "alice", aliceBase)
	release()
	l.waitUnmounted(t, "alice")
	if _, err := os.Stat(marker); err != nil {
		t.Error("the second mount made a new copy")
	}
	merged, release := l.acquire(t, "alice", bobBase)
	defer release()
	now, _ := filepath.Glob(filepath.Join(l.stateDir, "tenants/alice/lower-*"))
	if len(now) != 1 || now[0] == first[0] {
		t.Errorf("copies after a new range: %v (first %v)", now, first)
	}
	if u := hostUID(t, filepath.Join(merged, "home/user/notes")); u != bobBase+1000 {
		t.Errorf("after a new range the image's uid 1000 file is host uid %d, want %d", u, bobBase+1000)
	}
}

// TestRemoveLayer: a reset is refused while the layer is mounted, and
// discards it once it is not.
func TestRemoveLayer(t *testing.T) {
	l := newLayerLab(t, LayerOptions{Grace: time.Millisecond})
	_, release := l.acquire(t, "alice", aliceBase)
	if err := RemoveLayer(l.stateDir, "alice"); !errors.Is(err, ErrLayerInUse) {
		t.Errorf("reset while mounted: %v, want ErrLayerInUse", err)
	}
	release()
	l.waitUnmounted(t, "alice")
	if err := RemoveLayer(l.stateDir, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.stateDir, "tenants/alice")); err == nil {
		t.Error("her layer is still there")
	}
	// She comes back to a fresh layer.
	merged, release := l.acquire(t, "alice", aliceBase)
	defer release()
	if _, err := os.Stat(filepath.Join(merged, "etc/motd")); err != nil {
		t.Error(err)
	}
}

// TestLayersClose: Close unmounts layers in use; later Acquires fail, and
// late releases are harmless.
func TestLayersClose(t *testing.T) {
	l := newLayerLab(t, LayerOptions{})
	_, release := l.acquire(t, "alice", aliceBase)
	if err := l.layers.Close(); err != nil {
		t.Fatal(err)
	}
	if l.layers.Mounted("alice") {
		t.Error("Close left her layer mounted")
	}
	release()
	if _, _, err := l.layers.Acquire("alice", "base", aliceBase, rangeSize); err == nil {
		t.Error("Acquire after Close succeeded")
	}
}

// TestLayersStale: a layer a crashed gateway left mounted is mounted
// afresh by the next one, not stacked on.
func TestLayersStale(t *testing.T) {
	l := newLayerLab(t, LayerOptions{})
	merged, _ := l.acquire(t, "alice", aliceBase) // never released: the gateway "crashed"
	next := NewLayers(l.stateDir, LayerOptions{Logger: l.layers.log})
	defer next.Close()
	_, release, err := next.Acquire("alice", "base", aliceBase, rangeSize)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if ids := mountIDs(merged); len(ids) != 1 {
		t.Errorf("mounts on %s: %v, want one", merged, ids)
	}
	if ids := mountIDs(filepath.Join(filepath.Dir(merged), "lower")); len(ids) != 1 {
		t.Errorf("idmapped lower mounts: %v, want one", ids)
	}
}
