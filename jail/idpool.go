package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/jailgate/jailgate/internal/atomicfile"
	"github.com/jailgate/jailgate/statedir"
)

// Host id ranges handed to tenants start here, far above the ids a host
// gives its own users and the /etc/subuid ranges of rootless containers, so
// a tenant's files and processes belong to nobody else on the host.
const (
	PoolStart   uint32 = 1 << 30
	DefaultSize uint32 = 65536
)

// IDPool hands out stable host id ranges, one per tenant, persisted in a
// JSON file so a tenant keeps her range across restarts and reloads, and
// recorded in the host-wide registry (hostids.go) so that no other state_dir
// on the host hands out an overlapping one.
type IDPool struct {
	stateDir string
	path     string // stateDir's ids.json
	registry string // the host registry; statedir.HostIDs by default
	mu       sync.Mutex
}

// idRecord is one tenant's range in the pool file.
type idRecord struct {
	Base uint32 `json:"base"`
	Size uint32 `json:"size"`
}

// span is a range of ids, [lo, hi).
type span struct{ lo, hi uint64 }

func (r idRecord) span() span { return span{uint64(r.Base), uint64(r.Base) + uint64(r.Size)} }

func (s span) overlaps(o span) bool { return s.lo < o.hi && o.lo < s.hi }

// PoolOption configures an IDPool.
type PoolOption func(*IDPool)

// WithRegistry makes the pool check and record its ranges in the host
// registry at path instead of statedir.HostIDs. Tests use a temporary one.
func WithRegistry(path string) PoolOption { return func(p *IDPool) { p.registry = path } }

// NewIDPool uses the pool file of state directory stateDir
// (statedir.Layout.IDs) and the host registry statedir.HostIDs.
func NewIDPool(stateDir string, opts ...PoolOption) *IDPool {
	stateDir = filepath.Clean(stateDir)
	p := &IDPool{stateDir: stateDir, path: statedir.New(stateDir).IDs(), registry: statedir.HostIDs}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Reserved is a range the pool must not hand out (an explicit uid_base).
type Reserved struct {
	Tenant     string
	Base, Size uint32
}

// Allocate returns tenant's host id base: the persisted one if she has one
// of the right size, else the lowest free range of size ids that overlaps
// neither another tenant's range, nor a reserved one, nor any range of
// another state_dir on the host. Either way her range is in the host
// registry when it returns; a persisted range that another state_dir holds
// too (both allocated before the registry existed) is an error naming both.
func (p *IDPool) Allocate(tenant string, size uint32, reserved []Reserved) (uint32, error) {
	if size == 0 {
		size = DefaultSize
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	reg, err := openRegistry(p.registry)
	if err != nil {
		return 0, err
	}
	defer reg.Close()
	all, err := p.load()
	if err != nil {
		return 0, err
	}
	if r, ok := all[tenant]; ok && r.Size == size {
		if who := reg.holder(p.stateDir, r.span()); who != "" {
			return 0, fmt.Errorf("ids of %s: her range %d-%d in %s is also held by %s; remove her entry from %s "+
				"to give her a new range (her rootfs is shifted into it at her next login)",
				tenant, r.Base, uint64(r.Base)+uint64(r.Size)-1, p.path, who, p.path)
		}
		return r.Base, reg.record(p.stateDir, tenant, r)
	}
	used := reg.others(p.stateDir)
	for name, r := range all {
		if name != tenant {
			used = append(used, r.span())
		}
	}
	for _, r := range reserved {
		used = append(used, idRecord{Base: r.Base, Size: r.Size}.span())
	}
	base, ok := lowestFree(used, size)
	if !ok {
		return 0, fmt.Errorf("allocate ids for %s: the id pool is exhausted", tenant)
	}
	rec := idRecord{Base: base, Size: size}
	// The registry first: a crash before ids.json is written leaves a
	// range recorded for her that her next allocation takes over.
	if err := reg.record(p.stateDir, tenant, rec); err != nil {
		return 0, err
	}
	all[tenant] = rec
	if err := p.save(all); err != nil {
		return 0, err
	}
	return base, nil
}

// Holder names who already holds an id of base..base+size-1, other than
// tenant herself: another tenant of this state_dir's pool ("bob") or a
// tenant of another state_dir in the host registry ("alice of state_dir
// /srv/staging"); "" if nobody. It only reads, without locks (both files
// are replaced whole), so a configuration check can call it; a file that
// does not exist holds nothing.
func (p *IDPool) Holder(tenant string, base, size uint32) (string, error) {
	if size == 0 {
		size = DefaultSize
	}
	want := idRecord{Base: base, Size: size}.span()
	all, err := p.load()
	if err != nil {
		return "", err
	}
	for _, name := range sortedNames(all) {
		if name != tenant && all[name].span().overlaps(want) {
			return name, nil
		}
	}
	reg := &hostRegistry{path: p.registry}
	if reg.all, err = readRegistry(p.registry); err != nil {
		return "", err
	}
	return reg.holder(p.stateDir, want), nil
}

// lowestFree is the lowest base from PoolStart whose size ids overlap no
// used span.
func lowestFree(used []span, size uint32) (uint32, bool) {
	sort.Slice(used, func(i, j int) bool { return used[i].lo < used[j].lo })
	base := uint64(PoolStart)
	for _, u := range used {
		if base+uint64(size) <= u.lo {
			break
		}
		if u.hi > base {
			base = u.hi
		}
	}
	if base+uint64(size) > 1<<32-2 {
		return 0, false
	}
	return uint32(base), true
}

// load reads the pool file; a missing file is an empty pool.
func (p *IDPool) load() (map[string]idRecord, error) {
	all := map[string]idRecord{}
	b, err := os.ReadFile(p.path)
	if errors.Is(err, fs.ErrNotExist) {
		return all, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read id pool: %w", err)
	}
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, fmt.Errorf("read id pool %s: %w", p.path, err)
	}
	return all, nil
}

// save writes the pool file atomically (a crash leaves the old pool or the
// new one, never a tenant without her range).
func (p *IDPool) save(all map[string]idRecord) error {
	if err := os.MkdirAll(filepath.Dir(p.path), 0o700); err != nil {
		return fmt.Errorf("write id pool: %w", err)
	}
	b, _ := json.MarshalIndent(all, "", "  ")
	if err := atomicfile.WriteFile(p.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write id pool: %w", err)
	}
	return nil
}
