package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/internal/atomicfile"
	"github.com/jailgate/jailgate/statedir"
)

// Record is what Prepare keeps of the last shift of a tenant's tree, as JSON
// in stateDir/rootfs/<tenant>.json.
type Record struct {
	Rootfs string `json:"rootfs"` // absolute, clean host path of the tree
	UID    uint32 `json:"uid"`    // host uid the tree's root is owned by
	GID    uint32 `json:"gid"`    // host gid the tree's root is owned by
	Size   uint32 `json:"size"`   // number of ids in the tenant's range
}

// Prepare makes dir ready to be the root filesystem of tenant, whose root
// user is the host id base (with size ids): the first time, it shifts the
// tree's ownership from host root's range to the tenant's (Shift(dir, 0,
// base, size)); when the tenant's base has changed since, from the old base
// to the new one. The shift is recorded in stateDir/rootfs/<tenant>.json
// and not done again while dir and base stay the same.
//
// Dir must be an absolute path to a directory, not a link (ErrSymlink,
// ErrNotDir); a dir recorded for another tenant is refused with ErrInUse.
// Prepare may be called concurrently, from one process or several: calls for
// one tenant, and calls for one directory, are serialized by flock(2) on lock
// files beside the records.
func Prepare(stateDir, tenant, dir string, base, size uint32) error {
	if err := prepare(stateDir, tenant, dir, base, size); err != nil {
		return fmt.Errorf("rootfs: prepare %s: %w", tenant, err)
	}
	return nil
}

func prepare(stateDir, tenant, dir string, base, size uint32) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	if !filepath.IsAbs(dir) {
		return &os.PathError{Op: "prepare", Path: dir, Err: errors.New("not an absolute path")}
	}
	dir = filepath.Clean(dir)
	if _, err := newIDShift(0, base, size); err != nil {
		return err
	}
	state := statedir.New(stateDir)
	recs := state.RootfsRecords()
	if err := os.MkdirAll(recs, 0o700); err != nil {
		return err
	}
	unlock, err := lock(filepath.Join(recs, tenant+".lock"))
	if err != nil {
		return err
	}
	defer unlock()

	recPath := state.RootfsRecord(tenant)
	rec, err := readRecord(recPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	fd, err := openTree(dir)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if rec != nil && rec.Rootfs == dir && rec.UID == base {
		return nil // shifted before: the tree is hers as it is
	}

	// One directory, one tenant: hold the directory's lock while looking
	// for other claims on it, shifting it and writing the record, so two
	// tenants preparing the same tree cannot both win.
	sum := sha256.Sum256([]byte(dir))
	unlockDir, err := lock(filepath.Join(recs, "dir-"+hex.EncodeToString(sum[:12])+".lock"))
	if err != nil {
		return err
	}
	defer unlockDir()
	if err := checkUnclaimed(recs, tenant, dir, fd); err != nil {
		return err
	}
	from := uint32(0)
	if rec != nil && rec.Rootfs == dir {
		from = rec.UID
	}
	ids, err := newIDShift(from, base, size)
	if err != nil {
		return err
	}
	if _, err := shiftFD(fd, dir, ids); err != nil {
		return fmt.Errorf("shift %s from %d to %d: %w", dir, from, base, err)
	}
	return writeRecord(recPath, &Record{Rootfs: dir, UID: base, GID: base, Size: size})
}

// checkTenant refuses names that are not safe as a file name.
func checkTenant(tenant string) error {
	if tenant == "" || len(tenant) > 128 || tenant[0] == '.' || tenant[0] == '-' {
		return fmt.Errorf("bad tenant name %q", tenant)
	}
	for _, r := range tenant {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-@", r)) {
			return fmt.Errorf("bad tenant name %q", tenant)
		}
	}
	return nil
}

// checkUnclaimed looks through the other tenants' records for dir, by path
// and by inode (the same tree reached through another path).
func checkUnclaimed(recs, tenant, dir string, fd int) error {
	entries, err := os.ReadDir(recs)
	if err != nil {
		return err
	}
	var self unix.Stat_t
	if err := unix.Fstat(fd, &self); err != nil {
		return &os.PathError{Op: "fstat", Path: dir, Err: err}
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") || name == tenant+".json" {
			continue
		}
		other, err := readRecord(filepath.Join(recs, name))
		if err != nil {
			return err
		}
		var st unix.Stat_t
		same := other.Rootfs == dir ||
			unix.Lstat(other.Rootfs, &st) == nil && st.Dev == self.Dev && st.Ino == self.Ino
		if same {
			return &inUseError{dir: dir, tenant: strings.TrimSuffix(name, ".json")}
		}
	}
	return nil
}

func readRecord(name string) (*Record, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("read record %s: %w", name, err)
	}
	return &r, nil
}

// writeRecord replaces the record at name atomically: a reader sees the old
// record or the new one, never a part of one, even after a crash.
func writeRecord(name string, r *Record) error {
	data, err := json.MarshalIndent(r, "", "\t")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(name, append(data, '\n'), 0o600)
}

// mutexes serialize the callers of one lock file within this process, so
// they wait on a mutex rather than each holding a thread in flock(2).
var mutexes sync.Map // lock file name → *sync.Mutex

// lock takes the in-process mutex and then the flock(2) of the lock file
// name, which serializes other processes (jailgate rootfs subcommands).
// The lock files are never removed: unlinking a lock file while another
// process waits on it would let a third one lock a new file of that name.
func lock(name string) (func(), error) {
	m, _ := mutexes.LoadOrStore(name, new(sync.Mutex))
	mu := m.(*sync.Mutex)
	mu.Lock()
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		mu.Unlock()
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		mu.Unlock()
		return nil, &os.PathError{Op: "flock", Path: name, Err: err}
	}
	return func() {
		f.Close() // releases the flock
		mu.Unlock()
	}, nil
}
