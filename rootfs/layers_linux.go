package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/statedir"
)

// maxRetry caps the wait between attempts to unmount a layer still in use.
const maxRetry = 10 * time.Minute

var errClosed = errors.New("tenant layers closed: the gateway is shutting down")

// Layers mounts tenants' persistent layers over shared images (design.md
// "image: NAME"). A tenant's merged tree is mounted once and shared by all
// her environments, whatever their mode: two overlay mounts on one upper
// dir are not allowed. Each Acquire counts a user; the layer is unmounted
// Grace after the last one released it, or at Close. Its methods are safe
// for concurrent use.
//
// The lower layer is the image mounted idmapped into her id range (Linux
// >= 5.19: overlayfs over idmapped layers). Where the kernel or the image's
// file system refuses that, the first attempt says why in the log, and
// from then on each tenant on that image gets a copy of it, shifted into
// her range, under state_dir/tenants/<tenant>/lower-<hash>, made once.
type Layers struct {
	stateDir string
	grace    time.Duration
	copy     bool
	log      *slog.Logger

	mu      sync.Mutex
	tenants map[string]*layer
	copyWhy map[string]error // images whose tenants get a shifted copy, and why
	closed  bool
}

// layer is one tenant's layer.
type layer struct {
	tenant string
	p      layerPaths

	mu         sync.Mutex // held while mounting or unmounting; guards the fields below
	mounted    bool
	image      string
	base, size uint32
	lock       *os.File // her tenant dir, flock(LOCK_SH) while mounted: RemoveLayer keeps off
	changed    bool     // a different image or range was asked for while in use, and logged
	quota      Quota    // her disk quota as last asked for

	// Guarded by Layers.mu.
	refs  int
	gen   uint64 // bumped by every Acquire and timer: an older timer does nothing
	timer *time.Timer
	retry time.Duration // wait before the next unmount attempt
}

// NewLayers returns the layers of the tenants under stateDir.
func NewLayers(stateDir string, opts LayerOptions) *Layers {
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Layers{stateDir: stateDir, grace: opts.Grace, copy: opts.Copy, log: opts.Logger,
		tenants: map[string]*layer{}, copyWhy: map[string]error{}}
}

// Acquire returns tenant's merged tree over image, her ids [base,
// base+size), mounting it unless it is mounted already. Each successful
// call must be paired with one call of release (later ones do nothing);
// the layer is unmounted Grace after the last release. While her layer is
// in use, a different image or range applies only once she has left.
func (l *Layers) Acquire(tenant, image string, base, size uint32) (merged string, release func(), err error) {
	return l.AcquireQuota(tenant, image, base, size, Quota{})
}

// AcquireQuota is Acquire with her disk quota q. With q.Backend
// QuotaImage her layer lives in a disk image of q's size (made at her
// first login); a larger q.Bytes later grows it, online if she is in, and
// a smaller one is refused (logged, the image keeps its size). Her layer
// stays in her image once she has one, whatever q says.
func (l *Layers) AcquireQuota(tenant, image string, base, size uint32, q Quota) (merged string, release func(), err error) {
	if err := checkTenant(tenant); err != nil {
		return "", nil, fmt.Errorf("rootfs: layer: %w", err)
	}
	if image == "" || image == "." || image == ".." || strings.ContainsRune(image, '/') {
		return "", nil, fmt.Errorf("rootfs: layer of %s: bad image name %q", tenant, image)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return "", nil, errClosed
	}
	ly := l.tenants[tenant]
	if ly == nil {
		ly = &layer{tenant: tenant, p: pathsOf(l.stateDir, tenant)}
		l.tenants[tenant] = ly
	}
	ly.refs++
	ly.gen++ // a login within the grace: the pending unmount is off
	if ly.timer != nil {
		ly.timer.Stop()
		ly.timer = nil
	}
	l.mu.Unlock()
	release = sync.OnceFunc(func() { l.release(ly) })

	ly.mu.Lock()
	defer ly.mu.Unlock()
	if err := l.ensure(ly, tenant, image, base, size, q); err != nil {
		release()
		return "", nil, fmt.Errorf("rootfs: image %s for %s: %w", image, tenant, err)
	}
	return ly.p.merged, release, nil
}

// ensure mounts ly unless it is mounted as asked; ly.mu is held.
func (l *Layers) ensure(ly *layer, tenant, image string, base, size uint32, q Quota) error {
	if ly.mounted {
		if ly.image == image && ly.base == base && ly.size == size {
			if q != ly.quota {
				return l.requota(ly, q)
			}
			return nil
		}
		l.mu.Lock()
		inUse := ly.refs > 1
		l.mu.Unlock()
		if !inUse { // only this login: remount as asked
			if err := l.unmount(ly, false); err != nil {
				inUse = true
			}
		}
		if inUse {
			if !ly.changed {
				l.log.Info("tenant layer in use: her new image or id range applies once she has left",
					"tenant", tenant, "image", ly.image, "new_image", image)
				ly.changed = true
			}
			return nil
		}
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed { // Close has been here, or waits for ly.mu: mount nothing more
		return errClosed
	}
	if mounted(ly.p.merged) {
		// Mounted by another gateway on this state_dir: one whose
		// environments outlive it (adopted, or lingering), or the old side
		// of an upgrade, still serving. It is in use inside them, so it is
		// taken as it is: a second overlay on her upper dir would corrupt
		// it, and unmounting it here would leave the other side's next
		// start an empty mount point. (Those of tenants with no live
		// environment are swept at a start with no other gateway.)
		l.log.Info("tenant layer mounted by an earlier gateway; used as it is", "tenant", tenant)
		return l.mounted(ly, image, base, size)
	}
	if err := l.mount(ly, tenant, image, base, size, q); err != nil {
		return err
	}
	return l.mounted(ly, image, base, size)
}

// mounted records ly as mounted, holding her tenant dir's shared lock.
func (l *Layers) mounted(ly *layer, image string, base, size uint32) error {
	if ly.lock == nil {
		f, err := lockShared(ly.p.tenant)
		if err != nil {
			return err
		}
		ly.lock = f
	}
	ly.mounted, ly.image, ly.base, ly.size, ly.changed = true, image, base, size, false
	return nil
}

// mount mounts ly's overlay with an idmapped lower layer, or with a shifted
// copy where the idmapped one was refused (once per image) or Copy is set.
func (l *Layers) mount(ly *layer, tenant, image string, base, size uint32, q Quota) error {
	// Taken before anything is made: a reset (RemoveLayer) under way
	// finishes first, and none starts while she is mounted.
	lock, err := lockShared(ly.p.tenant)
	if err != nil {
		return err
	}
	if err := l.mountDisk(ly, q); err != nil {
		lock.Close()
		return err
	}
	src := ImageDir(l.stateDir, image)
	l.mu.Lock()
	why := l.copyWhy[image]
	if why == nil && l.copy {
		why = errors.New("forced by LayerOptions.Copy")
	}
	l.mu.Unlock()
	how := "idmapped"
	if why == nil {
		err = mountLayer(ly.p, src, "", base, size)
		var no *noIDMapError
		if errors.As(err, &no) {
			why, err = no.err, nil
		}
	}
	if why != nil {
		how = "shifted copy"
		var lower string
		if lower, err = shiftedCopy(ly.p.tenant, src, base, size); err == nil {
			err = mountLayer(ly.p, src, lower, base, size)
		}
		if err == nil {
			l.mu.Lock()
			if l.copyWhy[image] == nil {
				l.copyWhy[image] = why
				l.log.Warn("image not mountable idmapped: each of its tenants gets a shifted copy of it (made once, more disk)",
					"image", image, "err", why)
			}
			l.mu.Unlock()
		}
	}
	if err != nil {
		if mounted(ly.p.disk) {
			unix.Unmount(ly.p.disk, unix.MNT_DETACH)
		}
		lock.Close()
		return err
	}
	ly.lock = lock
	l.holdReserve(ly) // her disk image's reserve: see imageReserveInodes
	l.log.Info("tenant layer mounted", "tenant", tenant, "image", image, "lower", how)
	return nil
}

// release drops one user of ly; the last one starts the grace.
func (l *Layers) release(ly *layer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ly.refs--
	if ly.refs > 0 || l.closed {
		return
	}
	ly.retry = l.grace
	l.scheduleLocked(ly, l.grace)
}

// scheduleLocked unmounts ly after d unless she comes back; l.mu is held.
func (l *Layers) scheduleLocked(ly *layer, d time.Duration) {
	ly.gen++
	gen := ly.gen
	ly.timer = time.AfterFunc(d, func() { l.expire(ly, gen) })
}

// expire unmounts ly if nobody acquired it since the timer of gen was set.
// A layer still in use on the host (EBUSY) stays mounted, and the unmount
// is tried again later: detaching it lazily would let her next login mount
// a second overlay on her upper dir while the first lives on.
func (l *Layers) expire(ly *layer, gen uint64) {
	ly.mu.Lock()
	defer ly.mu.Unlock()
	l.mu.Lock()
	if ly.refs > 0 || ly.gen != gen || l.closed {
		l.mu.Unlock()
		return
	}
	ly.timer = nil
	l.mu.Unlock()
	if ly.mounted {
		if err := l.unmount(ly, false); err != nil {
			l.mu.Lock()
			ly.retry = min(2*ly.retry, maxRetry)
			if ly.refs == 0 && ly.gen == gen && !l.closed {
				l.scheduleLocked(ly, ly.retry)
			}
			l.mu.Unlock()
			l.log.Warn("tenant layer still in use on the host; unmount tried again later",
				"tenant", ly.tenant, "retry", ly.retry, "err", err)
			return
		}
		l.log.Info("tenant layer unmounted", "tenant", ly.tenant, "image", ly.image)
	}
	l.mu.Lock()
	if ly.refs == 0 && l.tenants[ly.tenant] == ly {
		delete(l.tenants, ly.tenant)
	}
	l.mu.Unlock()
}

// unmount unmounts ly (lazily, if detach and it is busy); ly.mu is held.
func (l *Layers) unmount(ly *layer, detach bool) error {
	err := unmountLayer(ly.p, detach)
	if !mounted(ly.p.merged) {
		ly.mounted = false
		if ly.lock != nil {
			ly.lock.Close()
			ly.lock = nil
		}
	}
	return err
}

// Mounted reports whether tenant's merged tree is mounted.
func (l *Layers) Mounted(tenant string) bool { return mounted(pathsOf(l.stateDir, tenant).merged) }

// Close unmounts every layer, in use or not, at once (at shutdown); one
// still busy on the host is detached lazily. Later Acquires fail.
func (l *Layers) Close() error {
	l.mu.Lock()
	l.closed = true
	var all []*layer
	for _, ly := range l.tenants {
		if ly.timer != nil {
			ly.timer.Stop()
		}
		all = append(all, ly)
	}
	l.mu.Unlock()
	var errs []error
	for _, ly := range all {
		ly.mu.Lock()
		if ly.mounted {
			if err := l.unmount(ly, true); err != nil {
				errs = append(errs, err)
			}
		}
		ly.mu.Unlock()
	}
	// Layers left mounted by an earlier gateway, of tenants who did not
	// come back.
	root := statedir.New(l.stateDir).LayerMounts()
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if err := unmountLayer(pathsOf(l.stateDir, e.Name()), true); err != nil {
			errs = append(errs, err)
		}
	}
	os.Remove(root)
	return errors.Join(errs...)
}

// lockShared opens the tenant directory dir, made if missing, and takes a
// shared flock(2) on it, waiting for a RemoveLayer under way.
func lockShared(dir string) (*os.File, error) {
	for range 10 {
		// A subvolume on btrfs: her layer's tree, which the btrfs disk
		// quota backend bounds.
		if err := MakeTree(dir, 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := flock(f, unix.LOCK_SH); err != nil {
			f.Close()
			return nil, err
		}
		// A reset may have removed the directory while this waited.
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Lstat(dir, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
			return f, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("lock %s: removed again and again", dir)
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "flock", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

// RemoveLayer discards tenant's layer (jailgate tenant reset): her upper
// and work dirs, with every change she made to her image, and her shifted
// copies. It refuses with ErrLayerInUse while her layer is mounted, by
// this process or another: Layers holds a shared lock on her directory
// for as long as it is mounted, and RemoveLayer takes it exclusively.
func RemoveLayer(stateDir, tenant string) error {
	if err := checkTenant(tenant); err != nil {
		return fmt.Errorf("rootfs: reset: %w", err)
	}
	dir := statedir.New(stateDir).Tenant(tenant)
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("rootfs: reset %s: %w", tenant, err)
	}
	defer f.Close()
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			err = ErrLayerInUse
		}
		return fmt.Errorf("rootfs: reset %s: %w (the gateway is serving her)", tenant, err)
	}
	if p := pathsOf(stateDir, tenant); mounted(p.merged) {
		return fmt.Errorf("rootfs: reset %s: %w: mounted on %s, by a gateway that is gone? unmount it first",
			tenant, ErrLayerInUse, p.merged)
	}
	return os.RemoveAll(dir)
}
