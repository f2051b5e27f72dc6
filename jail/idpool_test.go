package jail

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIDPool: ranges are stable across pool instances (restarts), never
// overlap each other or reserved (explicit uid_base) ranges, and a broken
// or exhausted pool is an error, not a silent reuse.
func TestIDPool(t *testing.T) {
	dir := t.TempDir()
	alloc := func(p *IDPool, tenant string, size uint32, reserved ...Reserved) uint32 {
		t.Helper()
		base, err := p.Allocate(tenant, size, reserved)
		if err != nil {
			t.Fatalf("allocate %s: %v", tenant, err)
		}
		return base
	}
	p := NewIDPool(dir)
	reserved := Reserved{Tenant: "eve", Base: PoolStart + DefaultSize, Size: DefaultSize}
	alice := alloc(p, "alice", 0, reserved)
	bob := alloc(p, "bob", 0, reserved)
	if alice != PoolStart {
		t.Errorf("alice's base %d, want the pool's start %d", alice, PoolStart)
	}
	if bob != PoolStart+2*DefaultSize {
		t.Errorf("bob's base %d, want %d: past alice's range and eve's reserved one", bob, PoolStart+2*DefaultSize)
	}

	// A new pool on the same state dir (a restart) gives the same ranges.
	q := NewIDPool(dir)
	if got := alloc(q, "alice", 0, reserved); got != alice {
		t.Errorf("alice after a restart: %d, want %d", got, alice)
	}
	if got := alloc(q, "bob", DefaultSize, reserved); got != bob {
		t.Errorf("bob after a restart: %d, want %d", got, bob)
	}
	if fi, err := os.Stat(filepath.Join(dir, "ids.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ids.json: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	// A bigger range for carol fits nowhere below bob's: it goes above.
	carol := alloc(q, "carol", 4*DefaultSize, reserved)
	if carol < bob+DefaultSize {
		t.Errorf("carol's 4-range base %d overlaps bob's range at %d", carol, bob)
	}

	// Exhausted: everything from the pool's start is reserved.
	all := Reserved{Tenant: "root", Base: PoolStart, Size: 1<<32 - 2 - PoolStart}
	if _, err := NewIDPool(t.TempDir()).Allocate("dave", 0, []Reserved{all}); err == nil || !strings.Contains(err.Error(), "exhausted") {
		t.Errorf("allocating from a full pool: %v, want exhausted", err)
	}

	// A corrupt pool file is reported with its path, never overwritten.
	os.WriteFile(filepath.Join(dir, "ids.json"), []byte("{not json"), 0o600)
	if _, err := NewIDPool(dir).Allocate("frank", 0, nil); err == nil || !strings.Contains(err.Error(), "ids.json") {
		t.Errorf("a corrupt ids.json: %v, want an error naming it", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ids.json")); string(b) != "{not json" {
		t.Errorf("the corrupt pool file was rewritten: %q", b)
	}
}
