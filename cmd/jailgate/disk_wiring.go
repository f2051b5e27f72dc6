package main

import (
	"log/slog"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/provision"
	"github.com/jailgate/jailgate/rootfs"
)

// Her disk quota in the running gateway (issue 19). newGateway wires it:
//
//	d.watchDisk()                        // after d.metrics is made
//	DiskUsage: d.diskUsage,              // in gateway.Options
//
// and the reloader applies a changed limits.disk live (reload.go, after
// SetConfig, with the provisioner as a reloader field prov):
//
//	changes = append(changes, applyDisk(r.prov, c, r.log)...)

// diskUsage reads what u's tree holds against her disk quota
// (gateway.Options.DiskUsage: her login's line past it, limit.disk).
func (d *daemon) diskUsage(u *config.User) (rootfs.Usage, bool) {
	us, ok, err := provision.DiskUsage(d.cfg.StateDir, u)
	return us, ok && err == nil
}

// watchDisk adds the per-tenant disk gauges to /metrics, for the tenants
// of the configuration in force.
func (d *daemon) watchDisk() {
	d.metrics.WatchDisk(func() map[string]rootfs.Usage { return provision.DiskUsages(d.srv.Config()) })
}

// applyDisk applies c's disk limits live after a reload swapped it in
// (provision.Provisioner.ApplyDiskLimits), logging what was not applied
// and why (a lowered image size is refused); the lines are for the
// reload's reply.
func applyDisk(prov *provision.Provisioner, c *config.Config, log *slog.Logger) []string {
	err := prov.ApplyDiskLimits(c)
	if err == nil {
		return nil
	}
	var lines []string
	for _, l := range errorLines(err) {
		log.Warn("reload: disk quota not applied live: " + l)
		lines = append(lines, "disk quota not applied live: "+l)
	}
	return lines
}
