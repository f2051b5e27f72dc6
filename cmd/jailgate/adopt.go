package main

import (
	"context"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/jail"
)

// adopt takes over the environments that outlived the last gateway on this
// state_dir (a crash, kill -9, a stop while they lingered, an upgrade): each
// gets her tenant's current limits and is joined by her next login; one
// whose tenant was removed is ended (revoke: end-sessions) or left to its
// linger (keep-sessions). Then the layers of tenants without one are
// unmounted.
func (d *daemon) adopt() error {
	keep := map[string]bool{}
	for _, r := range d.sup.Found() {
		keep[r.Tenant] = true
	}
	n := d.sup.Adopt(context.Background(), func(ctx context.Context, r *jail.EnvRecord) (*jail.EnvSpec, error) {
		cfg := d.srv.Config()
		u := cfg.Users[r.Tenant]
		if u == nil {
			if cfg.Revoke == config.RevokeKeepSessions {
				return nil, jail.ErrLeave
			}
			return nil, nil
		}
		return d.prov.Provision(ctx, u) // her layer, mounted, is taken as it is
	})
	if n > 0 {
		d.log.Info("environments adopted", "count", n)
	}
	if d.up != nil && d.up.isNew() {
		// The old process still serves, and may be mounting a layer for
		// an environment it is starting, not yet recorded: the sweep waits
		// for a start with no other gateway on this state_dir.
		return nil
	}
	if err := d.prov.SweepMounts(keep); err != nil {
		d.log.Warn("unmount layers left by an earlier gateway", "err", err)
	}
	return nil
}
