package jail

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// owners hands out the host uids that create environments' user
// namespaces (init_stage_linux.go): one per live environment, from a range
// the host id registry keeps for this state_dir beside the tenants'
// (provision.Provisioner.Owners). The kernel charges a namespace's counts
// (inotify instances, mqueues, …) to its creator, so no environment shares
// them with another tenant's, and a pool blank can be created before
// anyone logs in. No process ever runs as an owner uid but the first
// stage, for its one clone.
//
// A uid in use has a claim file owner-<uid> in the record directory,
// created O_EXCL: two gateways of one state_dir (an upgrade's two sides)
// never hand out the same one. With no range (Prestart not called, as in
// tests that build a Supervisor alone), the owner is her base uid.
type owners struct {
	mu         sync.Mutex
	base, size uint32
	dir        string // Options.RecordDir; "": claims are this process's only
	used       map[uint32]bool
}

// ownerPrefix names a claim file.
const ownerPrefix = "owner-"

// set gives the range; the owners of live environments found at New are
// marked already.
func (o *owners) set(base, size uint32) {
	o.mu.Lock()
	o.base, o.size = base, size
	o.mu.Unlock()
}

// claim takes a free owner uid; with no range, fallback (her base uid).
func (o *owners) claim(fallback uint32) (uint32, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.size == 0 {
		return fallback, nil
	}
	if o.dir != "" {
		if err := os.MkdirAll(o.dir, 0o700); err != nil {
			return 0, err
		}
	}
	start := rand.Uint32N(o.size)
	for i := uint32(0); i < o.size; i++ {
		uid := o.base + (start+i)%o.size
		if o.used[uid] {
			continue
		}
		if o.dir != "" {
			fd, err := unix.Open(filepath.Join(o.dir, ownerPrefix+strconv.FormatUint(uint64(uid), 10)),
				unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			if errors.Is(err, unix.EEXIST) {
				continue
			}
			if err != nil {
				return 0, fmt.Errorf("claim owner uid %d: %w", uid, err)
			}
			unix.Write(fd, strconv.AppendInt(nil, int64(os.Getpid()), 10))
			unix.Close(fd)
		}
		o.mark(uid)
		return uid, nil
	}
	return 0, fmt.Errorf("all %d environment owner uids (%d-%d) are in use", o.size, o.base, o.base+o.size-1)
}

// mark records uid as in use (claimed here, or an adopted environment's).
func (o *owners) mark(uid uint32) {
	if o.used == nil {
		o.used = map[uint32]bool{}
	}
	o.used[uid] = true
}

// adopt marks an adopted environment's owner as in use.
func (o *owners) adopt(uid uint32) {
	o.mu.Lock()
	o.mark(uid)
	o.mu.Unlock()
}

// release gives uid back when its environment (or blank) is gone.
func (o *owners) release(uid uint32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.used[uid] {
		return // her base uid (no range), or not ours
	}
	delete(o.used, uid)
	if o.dir != "" {
		os.Remove(filepath.Join(o.dir, ownerPrefix+strconv.FormatUint(uint64(uid), 10)))
	}
}

// sweepOwners removes the claims in dir that no live environment holds
// (live: its record names the uid) and whose claiming gateway is gone: a
// crash's, or a blank's whose gateway ended.
func sweepOwners(dir string, live map[uint32]bool) {
	ents, _ := os.ReadDir(dir)
	for _, ent := range ents {
		v, ok := strings.CutPrefix(ent.Name(), ownerPrefix)
		uid, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil || live[uint32(uid)] {
			continue
		}
		p := filepath.Join(dir, ent.Name())
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if pid, err := strconv.Atoi(string(b)); err == nil && pid != os.Getpid() && processExists(pid) {
			continue
		}
		os.Remove(p)
	}
}
