package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/internal/atomicfile"
)

// hostRegistry is the host-wide record of the id ranges every state_dir's
// pool handed out (statedir.HostIDs): state_dir → tenant → range. Each
// state_dir's ids.json stays the source of its tenants' ranges; the
// registry lets a pool skip the ranges of every other state_dir on the
// host, so two gateways never give two tenants overlapping ids (issue 16:
// both gave alice 1073741824, and each Alice could signal the other's
// processes and read her files).
//
// It is read and written under an exclusive flock(2) of path+".lock" (a
// separate file: the registry itself is replaced by rename, which would
// leave a lock on the old inode), and written through atomicfile.
type hostRegistry struct {
	path string
	all  map[string]map[string]idRecord
	lock *os.File
}

// openRegistry locks and reads the registry at path; a missing file is an
// empty registry. Close unlocks it.
func openRegistry(path string) (*hostRegistry, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("host id registry: %w", err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("host id registry: %w", err)
	}
	for {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("lock host id registry: %w", err)
	}
	r := &hostRegistry{path: path, lock: lock}
	if r.all, err = readRegistry(path); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// readRegistry reads the registry at path; a missing file is empty.
func readRegistry(path string) (map[string]map[string]idRecord, error) {
	all := map[string]map[string]idRecord{}
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &all)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read host id registry %s: %w", path, err)
	}
	return all, nil
}

// Close unlocks the registry.
func (r *hostRegistry) Close() {
	if r.lock != nil {
		r.lock.Close()
	}
}

// others lists the ranges of every state_dir but stateDir, dropping
// (reclaiming) those of a state_dir that no longer exists: a deleted
// gateway's tenants own no files and run no processes any more.
func (r *hostRegistry) others(stateDir string) []span {
	var used []span
	for dir, tenants := range r.all {
		if dir == stateDir {
			continue
		}
		if gone(dir) {
			delete(r.all, dir)
			continue
		}
		for _, rec := range tenants {
			used = append(used, rec.span())
		}
	}
	return used
}

// gone reports whether state directory dir no longer exists: its ranges
// are free again (others reclaims them, holder ignores them).
func gone(dir string) bool {
	_, err := os.Lstat(dir)
	return errors.Is(err, fs.ErrNotExist)
}

// holder names who else on the host holds a range overlapping s: "bob of
// /srv/other", or "". A state_dir that no longer exists holds nothing.
func (r *hostRegistry) holder(stateDir string, s span) string {
	dirs := make([]string, 0, len(r.all))
	for dir := range r.all {
		dirs = append(dirs, dir)
	}
	sort.Strings(dirs)
	for _, dir := range dirs {
		if dir == stateDir || gone(dir) {
			continue
		}
		for _, name := range sortedNames(r.all[dir]) {
			if r.all[dir][name].span().overlaps(s) {
				return name + " of state_dir " + dir
			}
		}
	}
	return ""
}

// record sets stateDir's tenant range and writes the registry.
func (r *hostRegistry) record(stateDir, tenant string, rec idRecord) error {
	if r.all[stateDir] == nil {
		r.all[stateDir] = map[string]idRecord{}
	}
	if r.all[stateDir][tenant] == rec {
		return nil
	}
	r.all[stateDir][tenant] = rec
	b, _ := json.MarshalIndent(r.all, "", "  ")
	if err := atomicfile.WriteFile(r.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write host id registry: %w", err)
	}
	return nil
}

// sortedNames returns m's keys in order.
func sortedNames(m map[string]idRecord) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
