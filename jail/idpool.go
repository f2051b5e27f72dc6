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
// JSON file so a tenant keeps her range across restarts and reloads.
type IDPool struct {
	path string
	mu   sync.Mutex
}

// idRecord is one tenant's range in the pool file.
type idRecord struct {
	Base uint32 `json:"base"`
	Size uint32 `json:"size"`
}

// NewIDPool uses the pool file of state directory stateDir
// (statedir.Layout.IDs).
func NewIDPool(stateDir string) *IDPool {
	return &IDPool{path: statedir.New(stateDir).IDs()}
}

// Reserved is a range the pool must not hand out (an explicit uid_base).
type Reserved struct {
	Tenant     string
	Base, Size uint32
}

// Allocate returns tenant's host id base: the persisted one if she has one
// of the right size, else the lowest free range of size ids that overlaps
// neither another tenant's range nor a reserved one.
func (p *IDPool) Allocate(tenant string, size uint32, reserved []Reserved) (uint32, error) {
	if size == 0 {
		size = DefaultSize
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	all, err := p.load()
	if err != nil {
		return 0, err
	}
	if r, ok := all[tenant]; ok && r.Size == size {
		return r.Base, nil
	}
	type span struct{ lo, hi uint64 }
	var used []span
	for name, r := range all {
		if name != tenant {
			used = append(used, span{uint64(r.Base), uint64(r.Base) + uint64(r.Size)})
		}
	}
	for _, r := range reserved {
		used = append(used, span{uint64(r.Base), uint64(r.Base) + uint64(r.Size)})
	}
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
		return 0, fmt.Errorf("allocate ids for %s: the id pool is exhausted", tenant)
	}
	all[tenant] = idRecord{Base: uint32(base), Size: size}
	if err := p.save(all); err != nil {
		return 0, err
	}
	return uint32(base), nil
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
