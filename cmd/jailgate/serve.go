package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

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
// old one if the new one is invalid.
func cmdServe(args []string, stderr io.Writer) error {
	path, _, err := configFlag("serve", args)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	d := &daemon{path: path, cfg: cfg, log: newLogger(cfg, stderr)}
	defer d.close()
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
		d.serveAdmin,     // jailgate reload reaches the reloader from here
		d.listen,         // the SSH port
		d.serveMetrics,   // metrics_listen, if set
		d.recordActive,   // what check --diff compares with
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
	admin    net.Listener // nil without an admin socket
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
	sigs     chan os.Signal // SIGHUP, SIGTERM, SIGINT, SIGUSR1, from catchSignals on
	undo     []func()
}

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
	l, err := admin.Listen(d.cfg.StateDir)
	switch {
	case errors.Is(err, admin.ErrServerRunning):
		return err
	case err != nil:
		d.log.Warn("no admin socket: jailgate reload cannot reach this server, SIGHUP still reloads", "err", err)
	default:
		d.admin = l
		d.onClose(func() { l.Close() }) // and removes it: a clean shutdown leaves no socket
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

// startJail starts the supervisor of the environments.
func (d *daemon) startJail() (err error) {
	d.sup, err = jail.New(jail.Options{Logger: d.log, InitPath: d.initPath, CgroupPrefix: d.cgroup(),
		BestEffort: d.cfg.LimitsEnforcement == "best-effort", Network: d.net,
		RecordDir: statedir.New(d.cfg.StateDir).Environments()})
	if err != nil {
		return err
	}
	// The environments outlive the gateway: each follows its linger (and
	// the next gateway adopts it). `jailgate env stop` ends them.
	d.onClose(func() { d.sup.Detach() })
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
	d.onClose(func() { d.prov.Detach() })
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
		go admin.Serve(d.admin, d.rl.answer)
	}
	return nil
}

// listen opens the SSH port.
func (d *daemon) listen() (err error) {
	d.ln, err = net.Listen("tcp", d.cfg.Listen)
	return err
}

// serveMetrics serves /metrics, /healthz and /readyz on metrics_listen,
// if set.
func (d *daemon) serveMetrics() error {
	if d.cfg.MetricsListen == "" {
		return nil
	}
	ml, err := net.Listen("tcp", d.cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("metrics_listen: %w", err)
	}
	hs := &http.Server{Handler: opsHandler(d.metrics, d.sup, d.srv), ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ml)
	d.onClose(func() { hs.Close() })
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

// catchSignals takes the signals the loop in run answers from now on: one
// that arrives while serve is still starting (an operator's reload right
// after a restart, say) is queued for it, not acted on by default (SIGHUP's
// default is to end the process).
func (d *daemon) catchSignals() error {
	d.sigs = make(chan os.Signal, 4)
	signal.Notify(d.sigs, unix.SIGHUP, unix.SIGTERM, unix.SIGINT, unix.SIGUSR1)
	d.onClose(func() { signal.Stop(d.sigs) })
	return nil
}

// run serves until SIGTERM or SIGINT, which drain the sessions, or until
// the SSH listener fails.
func (d *daemon) run() error {
	d.log.Info("listening", "addr", d.ln.Addr().String(), "config", d.path, "tenants", len(d.cfg.Users),
		"fingerprint", keys.Fingerprint(d.signer.PublicKey()))
	sigs := d.sigs
	served := make(chan error, 1)
	go func() { served <- d.srv.Serve(d.ln) }()
	for {
		select {
		case err := <-served:
			if err != nil && !errors.Is(err, net.ErrClosed) {
				return err
			}
			return nil
		case sig := <-sigs:
			switch sig {
			case unix.SIGHUP:
				d.rl.reload()
				continue
			case unix.SIGUSR1: // logrotate moved the audit log
				d.reopenAudit()
				continue
			}
			d.shutdown(sig, sigs)
			return nil
		}
	}
}

// reopenAudit opens the audit log's path again, after logrotate moved it.
func (d *daemon) reopenAudit() {
	if d.audit == nil {
		return
	}
	if f, err := openAudit(d.cfg.AuditLog); err != nil {
		d.log.Error("reopen audit log", "err", err)
	} else {
		d.audit.Reopen(f).(*os.File).Close()
	}
}

// shutdown drains the sessions, then lets go of the environments (each
// follows its linger: linger 0 ends at once) and unmounts the tenant layers
// no environment uses before close runs, to log the outcome.
func (d *daemon) shutdown(sig os.Signal, sigs <-chan os.Signal) {
	d.log.Info("shutting down", "signal", sig.String(), "grace", d.srv.Config().Server.ShutdownGrace)
	drain(d.srv, sigs, d.log)
	d.sup.Detach()
	if err := d.prov.Detach(); err != nil {
		d.log.Warn("unmount tenant layers", "err", err)
	}
	d.log.Info("stopped")
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
func opsHandler(m *gateway.Metrics, sup *jail.Supervisor, srv *gateway.Server) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := provision.CheckLimits(sup, srv.Config()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
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

// drain tells every live session the server is going down and gives them
// shutdown_grace to end; a second SIGTERM or SIGINT ends them at once.
func drain(srv *gateway.Server, sigs <-chan os.Signal, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), srv.Config().Server.ShutdownGrace)
	defer cancel()
	done := make(chan struct{})
	go func() {
		srv.Shutdown(ctx, "the server is shutting down; please save your work and log out")
		close(done)
	}()
	for {
		select {
		case <-done:
			return
		case sig := <-sigs:
			if sig == unix.SIGTERM || sig == unix.SIGINT {
				log.Info("second signal: ending every session now", "signal", sig.String())
				cancel()
			}
		}
	}
}

// logWarnings logs each warning of c (a valid setting that weakens
// something, e.g. a weak algorithm offered), at start and at a reload.
func logWarnings(log *slog.Logger, c *config.Config) {
	for _, w := range c.Warnings {
		log.Warn("config: " + w)
	}
}
