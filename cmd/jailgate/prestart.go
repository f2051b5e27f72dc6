package main

import (
	"fmt"
	"strings"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/provision"
	"github.com/prometheus/client_golang/prometheus"
)

// poolMetrics show the pool of blank environments: how many wait, and how
// many starts took one (pooled) or made their own (cold).
func poolMetrics(sup *jail.Supervisor) []prometheus.Collector {
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jailgate_prestart_ready",
		Help: "Blank environments waiting in the pool (prestart:)."}, func() float64 { return float64(sup.Ready()) })
	starts := func(path string, pooled bool) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jailgate_environment_starts_total",
			Help:        "Environment starts: pooled (from a blank in the pool) or cold (namespaces made for the login).",
			ConstLabels: prometheus.Labels{"path": path}}, func() float64 {
			p, c := sup.Starts()
			if pooled {
				return float64(p)
			}
			return float64(c)
		})
	}
	return []prometheus.Collector{ready, starts("pooled", true), starts("cold", false)}
}

// prestart starts the pool of blank environments (config prestart:),
// created by owner uids from the id pool (provision.Provisioner.Owners).
func (d *daemon) prestart() error { return applyPrestart(d.prov, d.sup, d.cfg) }

// applyPrestart gives the Supervisor its owner uids, the pool's size and
// the capabilities of c's tenants.
func applyPrestart(prov *provision.Provisioner, sup *jail.Supervisor, c *config.Config) error {
	base, size, err := prov.Owners()
	if err != nil {
		return fmt.Errorf("prestart: %w", err)
	}
	seen := map[string]bool{}
	var caps []string
	for _, u := range c.Users {
		uc := u.Caps
		if uc == nil {
			uc = jail.DefaultCaps
		}
		for _, name := range uc {
			if !seen[strings.ToUpper(name)] {
				seen[strings.ToUpper(name)] = true
				caps = append(caps, name)
			}
		}
	}
	return sup.Prestart(jail.PoolOptions{Size: c.Prestart, OwnerBase: base, OwnerSize: size, Caps: caps})
}
