package jail

import (
	"fmt"
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
	reg := WithRegistry(filepath.Join(t.TempDir(), "hostids.json"))
	alloc := func(p *IDPool, tenant string, size uint32, reserved ...Reserved) uint32 {
		t.Helper()
		base, err := p.Allocate(tenant, size, reserved)
		if err != nil {
			t.Fatalf("allocate %s: %v", tenant, err)
		}
		return base
	}
	p := NewIDPool(dir, reg)
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
	q := NewIDPool(dir, reg)
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
	if _, err := NewIDPool(t.TempDir(), reg).Allocate("dave", 0, []Reserved{all}); err == nil || !strings.Contains(err.Error(), "exhausted") {
		t.Errorf("allocating from a full pool: %v, want exhausted", err)
	}

	// A corrupt pool file is reported with its path, never overwritten.
	os.WriteFile(filepath.Join(dir, "ids.json"), []byte("{not json"), 0o600)
	if _, err := NewIDPool(dir, reg).Allocate("frank", 0, nil); err == nil || !strings.Contains(err.Error(), "ids.json") {
		t.Errorf("a corrupt ids.json: %v, want an error naming it", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ids.json")); string(b) != "{not json" {
		t.Errorf("the corrupt pool file was rewritten: %q", b)
	}
}

// TestIDPoolAcrossStateDirs: two gateways on one host (two state dirs, one
// host registry) give one tenant name two disjoint ranges (issue 16: both
// gave alice 1073741824); a range of a deleted state dir is reclaimed; and
// a persisted range another state dir holds too is an error naming both.
func TestIDPoolAcrossStateDirs(t *testing.T) {
	hostIDs := filepath.Join(t.TempDir(), "hostids.json")
	staging, production := t.TempDir(), t.TempDir()
	alloc := func(p *IDPool, tenant string) uint32 {
		t.Helper()
		base, err := p.Allocate(tenant, 0, nil)
		if err != nil {
			t.Fatalf("allocate %s: %v", tenant, err)
		}
		return base
	}
	a := alloc(NewIDPool(staging, WithRegistry(hostIDs)), "alice")
	b := alloc(NewIDPool(production, WithRegistry(hostIDs)), "alice")
	if a == b || (a < b && a+DefaultSize > b) || (b < a && b+DefaultSize > a) {
		t.Fatalf("alice of staging at %d and alice of production at %d: ranges overlap", a, b)
	}
	// Restarts keep both.
	if got := alloc(NewIDPool(staging, WithRegistry(hostIDs)), "alice"); got != a {
		t.Errorf("staging's alice after a restart: %d, want %d", got, a)
	}
	if fi, err := os.Stat(hostIDs); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("host registry: %v; want mode 0600", err)
	}

	// Staging is deleted: its range is free again for a third gateway.
	os.RemoveAll(staging)
	if got := alloc(NewIDPool(t.TempDir(), WithRegistry(hostIDs)), "carol"); got != a {
		t.Errorf("carol's base %d, want %d: the range of the deleted state dir", got, a)
	}

	// An explicit uid_base elsewhere on the host over production's alice
	// is named for the configuration check (provision.CheckIDs).
	if who, err := NewIDPool(t.TempDir(), WithRegistry(hostIDs)).Holder("bob", b+10, 1); err != nil || who != "alice of state_dir "+production {
		t.Errorf("Holder of production's alice's ids: %q, %v", who, err)
	}
	// A deleted state dir holds nothing, for the check as for allocation.
	gone := t.TempDir()
	g := alloc(NewIDPool(gone, WithRegistry(hostIDs)), "dave")
	os.RemoveAll(gone)
	if who, err := NewIDPool(t.TempDir(), WithRegistry(hostIDs)).Holder("bob", g, 1); err != nil || who != "" {
		t.Errorf("Holder of a deleted state dir's ids: %q, %v; want none", who, err)
	}

	// Two ids.json holding one range from before the registry existed:
	// the second one to use it is refused, naming the other.
	lab := t.TempDir()
	os.WriteFile(filepath.Join(lab, "ids.json"), []byte(fmt.Sprintf(`{"alice": {"base": %d, "size": %d}}`, b, DefaultSize)), 0o600)
	_, err := NewIDPool(lab, WithRegistry(hostIDs)).Allocate("alice", 0, nil)
	if err == nil || !strings.Contains(err.Error(), "alice of state_dir "+production) {
		t.Errorf("a range production holds too: %v, want an error naming production's alice", err)
	}
}
