// Package provision turns a tenant of the configuration into the spec of
// her environment: config.User → her stable host id range (jail.IDPool) →
// her prepared root filesystem (her rootfs shifted into that range once, or
// her layer over a shared image, mounted while an environment uses it) →
// jail.EnvSpec. It is the one place that knows how a setting of the
// config becomes a property of an environment; the gateway only asks.
package provision

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/rootfs"
)

// SpecFor builds the environment spec of tenant u from the configuration
// alone: tenant name, rootfs, hostname, limits, network (with her egress
// policy and resolvers) and linger. IDMap is
// left zero for Provision to fill in. Linger only applies to tenant
// environments: a connection or session environment is never joined again.
func SpecFor(u *config.User) *jail.EnvSpec {
	spec := &jail.EnvSpec{
		Tenant:   u.Name,
		Rootfs:   u.Rootfs,
		Hostname: u.Hostname,
		Limits:   u.Limits,
		Rlimits:  u.Rlimits,
		Network:  u.Network,
		Egress:   u.Egress,
		DNS:      u.DNS,
		Caps:     u.Caps,
	}
	if u.Seccomp == config.SeccompUnconfined {
		spec.Seccomp = jail.SeccompUnconfined
	}
	if u.Environment == "" || u.Environment == config.EnvTenant {
		spec.Linger = u.Linger
	}
	return spec
}

// Options configure a Provisioner.
type Options struct {
	StateDir string // where id ranges, rootfs records and layers persist; required
	// Layers mounts image tenants' layers; nil: made with the defaults at
	// first use. The caller closes it.
	Layers *rootfs.Layers
	// Current returns the configuration in force, whose explicit uid_base
	// ranges the pool must not hand out; nil: only u's own.
	Current func() *config.Config
	// HostIDs is the host-wide id registry the pool checks and records
	// into; "": statedir.HostIDs. Tests use their own.
	HostIDs string
}

// Provisioner prepares tenants for their environments. Its methods are
// safe for concurrent use.
type Provisioner struct {
	stateDir string
	pool     *jail.IDPool
	current  func() *config.Config

	mu     sync.Mutex // serialises rootfs preparation and guards layers and warned
	layers *rootfs.Layers
	warned map[string]string // tenants whose disk limits are enforced in part (best-effort), said once
}

// warnOnce logs err about tenant's disk limits once per message.
func (p *Provisioner) warnOnce(tenant string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.warned == nil {
		p.warned = map[string]string{}
	}
	if p.warned[tenant] != err.Error() {
		p.warned[tenant] = err.Error()
		slog.Warn("disk limits not enforced in full (limits_enforcement: best-effort)", "tenant", tenant, "err", err)
	}
}

// New returns a Provisioner for opts.
func New(opts Options) *Provisioner {
	return &Provisioner{stateDir: opts.StateDir, pool: newPool(opts.StateDir, opts.HostIDs),
		current: opts.Current, layers: opts.Layers}
}

// newPool is the id pool of stateDir with the host registry hostIDs (""
// for statedir.HostIDs).
func newPool(stateDir, hostIDs string) *jail.IDPool {
	if hostIDs == "" {
		return jail.NewIDPool(stateDir)
	}
	return jail.NewIDPool(stateDir, jail.WithRegistry(hostIDs))
}

// Provision returns the spec of an environment for u: SpecFor(u) with her
// id range, and her rootfs prepared, or her layer mounted (the spec's
// OnEnd releases it). It implements gateway.Options.Provision.
func (p *Provisioner) Provision(_ context.Context, u *config.User) (*jail.EnvSpec, error) {
	spec := SpecFor(u)
	ids, err := p.idMap(u)
	if err != nil {
		return nil, err
	}
	spec.IDMap = ids
	quota, err := p.applyDisk(u)
	if err != nil {
		return nil, fmt.Errorf("disk quota: %w", err)
	}
	p.mu.Lock()
	if u.Image == "" {
		defer p.mu.Unlock()
		if err := rootfs.Prepare(p.stateDir, u.Name, u.Rootfs, ids.UID, ids.Size); err != nil {
			return nil, fmt.Errorf("prepare rootfs: %w", err)
		}
		return spec, nil
	}
	if p.layers == nil {
		p.layers = rootfs.NewLayers(p.stateDir, rootfs.LayerOptions{})
	}
	layers := p.layers
	p.mu.Unlock()
	// Her layer is one mount for all her environments (whatever their
	// mode); the jail calls OnEnd when the environment this spec starts
	// has ended, or at once if it joins a live one.
	merged, release, err := layers.AcquireQuota(u.Name, u.Image, ids.UID, ids.Size, quota)
	if err != nil {
		return nil, err
	}
	spec.Rootfs, spec.OnEnd = merged, release
	return spec, nil
}

// idMap is u's host id range: her explicit uid_base, or the one the pool
// keeps for her (allocated at her first login, stable from then on).
func (p *Provisioner) idMap(u *config.User) (jail.IDMap, error) {
	size := u.IDRange
	if size == 0 {
		size = jail.DefaultSize
	}
	base := u.UIDBase
	if base == 0 {
		var err error
		if base, err = p.pool.Allocate(u.Name, size, p.reserved()); err != nil {
			return jail.IDMap{}, err
		}
	}
	return jail.IDMap{UID: base, GID: base, Size: size}, nil
}

// reserved are the tenants' explicit uid_base ranges, which the pool
// never hands out.
func (p *Provisioner) reserved() []jail.Reserved {
	var reserved []jail.Reserved
	if p.current != nil {
		for _, o := range p.current().Users {
			if o.UIDBase != 0 {
				reserved = append(reserved, jail.Reserved{Tenant: o.Name, Base: o.UIDBase, Size: o.IDRange})
			}
		}
	}
	return reserved
}

// OwnersName is the id pool's entry for the uids that create
// environments' user namespaces: no tenant can have it (config's names
// start with a letter or _).
const OwnersName = "@owners"

// Owners is the range of host uids that create environments' user
// namespaces (jail.Supervisor.Prestart): one per live environment, kept
// in the id pool and the host registry like a tenant's, so no tenant of
// any state_dir on the host ever has one of them.
func (p *Provisioner) Owners() (base, size uint32, err error) {
	base, err = p.pool.Allocate(OwnersName, jail.DefaultSize, p.reserved())
	return base, jail.DefaultSize, err
}

// Detach unmounts the tenants' layers no environment uses, and leaves the
// others to the environments that outlive the gateway.
func (p *Provisioner) Detach() error {
	p.mu.Lock()
	layers := p.layers
	p.mu.Unlock()
	if layers == nil {
		return nil
	}
	return layers.Detach()
}

// SweepMounts unmounts the layers an earlier gateway left mounted for
// tenants without a live environment (keep names those with one).
func (p *Provisioner) SweepMounts(keep map[string]bool) error {
	p.mu.Lock()
	if p.layers == nil {
		p.layers = rootfs.NewLayers(p.stateDir, rootfs.LayerOptions{})
	}
	layers := p.layers
	p.mu.Unlock()
	return layers.SweepMounts(keep)
}

// Close unmounts the tenants' layers this Provisioner mounted.
func (p *Provisioner) Close() error {
	p.mu.Lock()
	layers := p.layers
	p.mu.Unlock()
	if layers == nil {
		return nil
	}
	return layers.Close()
}

// CheckIDs refuses an explicit uid_base whose range overlaps one the id
// pool already handed out: to another tenant of c's state_dir
// (state_dir/ids.json), or to any tenant of another state_dir on the host
// (the host registry hostIDs; "": statedir.HostIDs). Her files and
// processes would belong to the other tenant's ids too. Each problem is a
// *config.Error at her definition. A pool that cannot be read for lack of
// permission (check run by a non-root user) is not checked: serve checks it.
func CheckIDs(c *config.Config, hostIDs string) error {
	pool := newPool(c.StateDir, hostIDs)
	var errs []error
	for _, n := range c.Names() {
		u := c.Users[n]
		if u.UIDBase == 0 {
			continue
		}
		who, err := pool.Holder(n, u.UIDBase, u.IDRange)
		switch {
		case errors.Is(err, fs.ErrPermission):
			return nil
		case err != nil:
			return err
		case who != "":
			size := cmp.Or(u.IDRange, jail.DefaultSize)
			errs = append(errs, &config.Error{Pos: u.Pos, Field: "users." + n + ".uid_base",
				Msg: fmt.Sprintf("range %d-%d overlaps the range the id pool gave %s; choose another uid_base, or 0 to allocate one",
					u.UIDBase, uint64(u.UIDBase)+uint64(size)-1, who)})
		}
	}
	return errors.Join(errs...)
}

// LimitChecker says whether this host can enforce limits (a
// *jail.Supervisor does).
type LimitChecker interface {
	CheckLimits(jail.Limits) error
}

// CheckLimits checks that every tenant's limits in c can be enforced, and
// names the tenant and what is missing (a controller, with the fix)
// otherwise. limits_enforcement: best-effort skips the check: the jail
// enforces what it can and logs the rest.
func CheckLimits(lc LimitChecker, c *config.Config) error {
	if c.LimitsEnforcement == "best-effort" {
		return nil
	}
	for _, n := range c.Names() {
		if err := lc.CheckLimits(SpecFor(c.Users[n]).Limits); err != nil {
			return fmt.Errorf("%s: users.%s.limits cannot be enforced on this host: %w", c.File, n, err)
		}
	}
	return nil
}
