package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway"
	"github.com/jailgate/jailgate/gateway/admin"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/keys"
	"github.com/jailgate/jailgate/provision"
	"github.com/jailgate/jailgate/rootfs"
	"github.com/jailgate/jailgate/statedir"
)

// cmdServe runs the gateway until SIGTERM or SIGINT; SIGHUP, or `jailgate
// reload` through the admin socket, reloads the configuration, keeping the
// old one if the new one is invalid; SIGUSR2, or `jailgate upgrade`, hands
// over to the binary at its path (upgrade.go).
func cmdServe(args []string, stderr io.Writer) (err error) {
	path, pidFile, err := serveFlags(args)
	if err != nil {
		return err
	}
	up, err := newUpgrades(pidFile)
	if err != nil {
		return err
	}
	defer func() { up.failed(err) }() // a new process tells the old one why it did not start
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	d := &daemon{path: path, cfg: cfg, log: newLogger(cfg, stderr), up: up, upgraded: make(chan startReport, 1)}
	defer d.close()
	d.onClose(d.stopUpgrades)
	for _, step := range []func() error{
		d.catchSignals,   // a SIGHUP during start-up waits for the loop: its default action would end us
		d.openAdmin,      // first, so that a second server on this state_dir stops here
		d.openAudit,      // every later step logs to it too
		d.protectFromOOM, // an OOM takes a tenant's hog, never the door
		d.loadHostKey,    // the gateway's identity
		d.sealInit,       // the environments' PID 1
		d.openNetwork,    // network: nat's pool and nftables table (removed at a clean stop)
		d.startJail,      // the supervisor of every environment
		d.checkLimits,    // cgroups can enforce what the tenants are given
		d.newProvisioner, // tenant -> ids -> rootfs or layer -> EnvSpec
		d.newGateway,     // the SSH server
		d.adopt,          // the environments that outlived the last gateway (adopt.go)
		d.prestart,       // blank environments ready for logins, once the adopted ones' owner uids are known
		d.serveAdmin,     // jailgate reload reaches the reloader from here
		d.listen,         // the SSH port
		d.serveMetrics,   // metrics_listen, if set
		d.recordActive,   // what check --diff compares with
		d.ready,          // last: an old process hands over only to a new one that serves
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return d.run()
}

// daemon is what cmdServe has built so far. Each step adds one piece and
// pushes what undoes it; close undoes them all, newest first.
type daemon struct {
	path     string // the configuration file served
	cfg      *config.Config
	log      *slog.Logger
	admin    *admin.Listener // nil without an admin socket
	audit    *gateway.AuditHandler
	signer   gossh.Signer
	initPath string        // the sealed init; "" re-executes this binary
	net      *jail.Network // nil: nat environments cannot start (the log says why)
	sup      *jail.Supervisor
	prov     *provision.Provisioner
	metrics  *gateway.Metrics
	srv      *gateway.Server
	rl       *reloader
	ln       net.Listener   // the SSH port
	sigs     chan os.Signal // SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2, from catchSignals on
	undo     []func()

	up         *upgrades
	hs         *http.Server     // metrics_listen's server, if any
	upgraded   chan startReport // the new process an upgrade made ready
	isReady    bool             // this process serves (ready ran)
	handedOver bool             // this process handed over to a new one
	detached   bool             // the supervisor let go of the environments
}

// sharing reports whether another gateway process uses what this one set
// up on the host (the admin socket, the nftables table, the tenant layers),
// so that closing must leave it: an old process that handed over, or a new
// one that failed before it was ready (its old one keeps serving).
func (d *daemon) sharing() bool { return d.handedOver || (d.up.isNew() && !d.isReady) }

// onClose adds f to what close runs.
func (d *daemon) onClose(f func()) { d.undo = append(d.undo, f) }

// close undoes every step taken, newest first.
func (d *daemon) close() {
	for i := len(d.undo) - 1; i >= 0; i-- {
		d.undo[i]()
	}
}

// openAdmin listens on the admin socket. Without one the server still
// runs, reloading on SIGHUP only; another server on the state_dir stops it.
func (d *daemon) openAdmin() error {
	l, err := d.listenAdmin()
	switch {
	case errors.Is(err, admin.ErrServerRunning):
		return err
	case err != nil:
		d.log.Warn("no admin socket: jailgate reload cannot reach this server, SIGHUP still reloads", "err", err)
	default:
		d.admin = l
		d.onClose(func() {
			if d.sharing() {
				l.Release() // the other process answers on it
			} else {
				l.Close() // and removes it: a clean shutdown leaves no socket
			}
		})
	}
	return nil
}

// openAudit opens audit_log, if set, and tees the log into it.
func (d *daemon) openAudit() error {
	if d.cfg.AuditLog == "" {
		return nil
	}
	f, err := openAudit(d.cfg.AuditLog)
	if err != nil {
		return err
	}
	d.audit = gateway.NewAuditHandler(f)
	d.onClose(func() { d.audit.Reopen(io.Discard).(*os.File).Close() })
	d.log = slog.New(gateway.Tee{A: d.log.Handler(), B: d.audit})
	return nil
}

// gatewayOOMScoreAdj is the gateway's own oom_score_adj: like sshd's
// listener, it is never the OOM killer's choice, so a tenant's memory hog
// cannot take the door away from every tenant. Its children inherit it at
// fork; the jail sets every init and tenant process back (jail/).
const gatewayOOMScoreAdj = -1000

// protectFromOOM sets the gateway's oom_score_adj. A host that does not
// let it (no CAP_SYS_RESOURCE) gets a warning; the gateway still runs.
func (d *daemon) protectFromOOM() error {
	err := os.WriteFile("/proc/self/oom_score_adj", []byte(fmt.Sprintf("%d\n", gatewayOOMScoreAdj)), 0)
	if err != nil {
		d.log.Warn("oom_score_adj not set; an out-of-memory kill may take the gateway", "err", err)
	}
	return nil
}

// loadHostKey loads the host key, created on the first start.
func (d *daemon) loadHostKey() (err error) {
	d.signer, err = keys.LoadOrCreateHostKey(d.cfg.HostKey)
	return err
}

// sealInit seals the embedded init into a memfd. A host that forbids
// executable memfds (vm.memfd_noexec=2) gets the whole binary as init:
// ~1 MiB more per environment.
func (d *daemon) sealInit() error {
	if len(initImage) > 0 {
		if f, path, err := jail.SealedInit(initImage); err != nil {
			d.log.Warn("embedded init unusable; environments re-execute this binary", "err", err)
		} else {
			d.onClose(func() { f.Close() })
			d.initPath = path
		}
	}
	d.log.Info("environment init", "binary", cmp.Or(d.initPath, "/proc/self/exe"), "embedded", d.initPath != "")
	return nil
}

// openNetwork checks the network pool against the host's routes and
// creates jailgate's nftables table, carrying over the elements of the
// live environments the last gateway left (their veths are kept for
// Supervisor.Adopt). A host that cannot (no nf_tables, the pool overlaps a
// route) still serves network: none tenants; with a nat tenant in the
// configuration, serve refuses to start instead. At the stop the table
// goes only if no environment lives on: one that lingers keeps her policy
// (and the next gateway adopts her), never forwarding without it.
func (d *daemon) openNetwork() error {
	records := statedir.New(d.cfg.StateDir).Environments()
	live := func() []string {
		recs, errs := jail.ReadRecords(records) // and removes what it skips
		for _, err := range errs {
			d.log.Warn("environment record skipped and removed", "err", err)
		}
		var veths []string
		for _, r := range recs {
			if r.Veth != "" {
				veths = append(veths, r.Veth)
			}
		}
		return veths
	}
	n, err := jail.OpenNetwork(jail.NetworkOptions{Logger: d.log, Name: statedir.New(d.cfg.StateDir).Hash(),
		Pool: d.cfg.NetworkPool, Forwarding: d.cfg.NetworkForwarding == config.ForwardingAuto,
		OnDrop: gateway.NetworkDropLogger(d.log), Keep: live()}) // OnDrop: the audit event network.drop
	if err != nil {
		for _, name := range d.cfg.Names() {
			if d.cfg.Users[name].Network == jail.NetworkNAT {
				return fmt.Errorf("network: nat (tenant %s): %w", name, err)
			}
		}
		d.log.Warn("network: nat unavailable; network: none tenants are not affected", "err", err)
		return nil
	}
	d.net = n
	d.onClose(func() {
		if d.sharing() {
			n.Detach()
			return // the other process's environments filter through it
		}
		// Those with linger 0 end as the Supervisor lets go: give them a moment.
		veths := live()
		for deadline := time.Now().Add(time.Second); len(veths) > 0 && time.Now().Before(deadline); veths = live() {
			time.Sleep(50 * time.Millisecond)
		}
		if len(veths) > 0 {
			n.Detach()
			d.log.Info("nftables table left for the environments that live on", "veths", len(veths))
			return
		}
		if err := n.Close(); err != nil {
			d.log.Warn("remove the nftables table", "err", err)
		}
	})
	return nil
}

// startJail starts the supervisor of the environments, which records each
// one for a later gateway to adopt.
func (d *daemon) startJail() (err error) {
	records := statedir.New(d.cfg.StateDir).Environments()
	if err := os.MkdirAll(records, 0o700); err != nil {
		return fmt.Errorf("environment records: %w", err)
	}
	if err := os.Chmod(records, 0o700); err != nil { // root's alone, whoever made it
		return fmt.Errorf("environment records: %w", err)
	}
	d.sup, err = jail.New(jail.Options{Logger: d.log, InitPath: d.initPath, CgroupPrefix: d.cgroup(),
		BestEffort: d.cfg.LimitsEnforcement == "best-effort", Network: d.net,
		// jail reads 0 as its default; orphan_grace: 0 (none) is the
		// shortest wait it takes.
		RecordDir: records, OrphanGrace: d.cfg.OrphanGrace})
	if err != nil {
		return err
	}
	// The environments outlive the gateway: each follows its linger (and
	// the next gateway adopts it). `jailgate env stop` ends them.
	d.onClose(func() {
		if !d.detached {
			d.sup.Detach()
		}
	})
	return nil
}

// cgroup is the parent cgroup of this gateway's tenants: its state_dir's
// own, so two gateways on one host never share a tenant's cgroup.
func (d *daemon) cgroup() string { return statedir.New(d.cfg.StateDir).Cgroup() }

// checkLimits fails when the host cannot enforce the tenants' limits.
func (d *daemon) checkLimits() error { return provision.CheckLimits(d.sup, d.cfg) }

// newProvisioner reads the tenants from the configuration in force, which
// the gateway holds from the next step on.
func (d *daemon) newProvisioner() error {
	d.prov = provision.New(provision.Options{StateDir: d.cfg.StateDir,
		Layers:  rootfs.NewLayers(d.cfg.StateDir, rootfs.LayerOptions{Logger: d.log}),
		Current: func() *config.Config { return d.srv.Config() }})
	d.onClose(func() {
		if !d.sharing() { // the other process's tenants may be in these layers
			d.prov.Detach()
		}
	})
	return nil
}

// newGateway builds the SSH server and its metrics.
func (d *daemon) newGateway() (err error) {
	d.metrics = gateway.NewMetrics(func() []string { return d.srv.Config().Names() },
		func(t string) (jail.Stats, error) { return jail.TenantStats(t, d.cgroup()) })
	d.metrics.WatchNetwork(func() (map[string]jail.NetStats, error) {
		return jail.TenantNetStats(statedir.New(d.cfg.StateDir).Hash())
	})
	d.watchDisk()
	d.metrics.Registry.MustRegister(d.up.total, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.metrics.Registry.MustRegister(poolMetrics(d.sup)...)
	d.srv, err = gateway.New(gateway.Options{
		Config: d.cfg, Manager: d.sup, HostKey: d.signer, Logger: d.log, Provision: d.prov.Provision, Metrics: d.metrics,
		DiskUsage: d.diskUsage,
	})
	return err
}

// serveAdmin answers the admin socket with the reloader SIGHUP uses too.
func (d *daemon) serveAdmin() error {
	d.rl = &reloader{srv: d.srv, sup: d.sup, prov: d.prov, path: d.path, log: d.log}
	if d.admin != nil {
		go admin.Serve(d.admin, d.answer)
	}
	return nil
}

// listen opens the SSH port, or takes it from the old process of an
// upgrade.
func (d *daemon) listen() (err error) {
	d.ln, err = d.up.up.Listen("tcp", d.cfg.Listen)
	return err
}

// serveMetrics serves /metrics, /healthz and /readyz on metrics_listen,
// if set.
func (d *daemon) serveMetrics() error {
	if d.cfg.MetricsListen == "" {
		return nil
	}
	ml, err := d.up.up.Listen("tcp", d.cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("metrics_listen: %w", err)
	}
	d.hs = &http.Server{Handler: opsHandler(d.metrics, d.sup, d.srv, d.up.from), ReadHeaderTimeout: 5 * time.Second}
	go d.hs.Serve(ml)
	d.onClose(func() { d.hs.Close() })
	return nil
}

// recordActive logs the warnings of the configuration put in force (a
// weak algorithm offer) and keeps a copy of it; failing to only costs
// check --diff its baseline.
func (d *daemon) recordActive() error {
	logWarnings(d.log, d.cfg)
	if err := saveActive(d.cfg); err != nil {
		d.log.Warn("record the configuration in force", "err", err)
	}
	return nil
}

// newLogger builds the operational log the config asks for (log.format,
// log.level); journald captures stderr.
func newLogger(cfg *config.Config, stderr io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(stderr, opts))
	}
	return slog.New(slog.NewTextHandler(stderr, opts))
}

// opsHandler serves /metrics (Prometheus), /healthz (the process is up)
// and /readyz (listening with a configuration, and cgroups usable where a
// tenant has limits).
func opsHandler(m *gateway.Metrics, sup *jail.Supervisor, srv *gateway.Server, upgradedFrom string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := provision.CheckLimits(sup, srv.Config()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
		if upgradedFrom != "" { // "PID VERSION" of the process this one took over from
			pid, v, _ := strings.Cut(upgradedFrom, " ")
			fmt.Fprintf(w, "upgraded from pid %s (version %s)\n", pid, v)
		}
	})
	return mux
}

// openAudit opens the audit log for appending, owner-only.
func openAudit(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return f, nil
}

// logWarnings logs each warning of c (a valid setting that weakens
// something, e.g. a weak algorithm offered), at start and at a reload.
func logWarnings(log *slog.Logger, c *config.Config) {
	for _, w := range c.Warnings {
		log.Warn("config: " + w)
	}
}
