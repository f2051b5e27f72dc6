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

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway"
	"github.com/jailgate/jailgate/gateway/admin"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/keys"
	"github.com/jailgate/jailgate/provision"
	"github.com/jailgate/jailgate/rootfs"
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
	log := newLogger(cfg, stderr)
	// First, so that a second server on this state_dir stops here.
	adminL, err := admin.Listen(cfg.StateDir)
	switch {
	case errors.Is(err, admin.ErrServerRunning):
		return err
	case err != nil:
		log.Warn("no admin socket: jailgate reload cannot reach this server, SIGHUP still reloads", "err", err)
	default:
		defer adminL.Close() // and removes it: a clean shutdown leaves no socket
	}
	var audit *gateway.AuditHandler
	if cfg.AuditLog != "" {
		f, err := openAudit(cfg.AuditLog)
		if err != nil {
			return err
		}
		defer func() { audit.Reopen(io.Discard).(*os.File).Close() }()
		audit = gateway.NewAuditHandler(f)
		log = slog.New(gateway.Tee{A: log.Handler(), B: audit})
	}
	signer, err := keys.LoadOrCreateHostKey(cfg.HostKey)
	if err != nil {
		return err
	}
	initPath := "" // this binary
	if len(initImage) > 0 {
		// A host that forbids executable memfds (vm.memfd_noexec=2) gets
		// the whole binary as init: ~1 MiB more per environment.
		if f, path, err := jail.SealedInit(initImage); err != nil {
			log.Warn("embedded init unusable; environments re-execute this binary", "err", err)
		} else {
			defer f.Close()
			initPath = path
		}
	}
	log.Info("environment init", "binary", cmp.Or(initPath, "/proc/self/exe"), "embedded", initPath != "")
	sup, err := jail.New(jail.Options{Logger: log, InitPath: initPath, BestEffort: cfg.LimitsEnforcement == "best-effort"})
	if err != nil {
		return err
	}
	defer sup.Close()
	if err := provision.CheckLimits(sup, cfg); err != nil {
		return err
	}
	var srv *gateway.Server
	prov := provision.New(provision.Options{StateDir: cfg.StateDir,
		Layers:  rootfs.NewLayers(cfg.StateDir, rootfs.LayerOptions{Logger: log}),
		Current: func() *config.Config { return srv.Config() }})
	defer prov.Close()
	metrics := gateway.NewMetrics(func() []string { return srv.Config().Names() },
		func(t string) (jail.Stats, error) { return jail.TenantStats(t, "") })
	srv, err = gateway.New(gateway.Options{
		Config: cfg, Manager: sup, HostKey: signer, Logger: log, Provision: prov.Provision, Metrics: metrics,
	})
	if err != nil {
		return err
	}
	rl := &reloader{srv: srv, sup: sup, path: path, log: log}
	if adminL != nil {
		go admin.Serve(adminL, rl.answer)
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	if cfg.MetricsListen != "" {
		ml, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics_listen: %w", err)
		}
		hs := &http.Server{Handler: opsHandler(metrics, sup, srv), ReadHeaderTimeout: 5 * time.Second}
		go hs.Serve(ml)
		defer hs.Close()
	}
	if err := saveActive(cfg); err != nil {
		log.Warn("record the configuration in force", "err", err)
	}
	log.Info("listening", "addr", l.Addr().String(), "config", path, "tenants", len(cfg.Users),
		"fingerprint", keys.Fingerprint(signer.PublicKey()))

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGHUP, unix.SIGTERM, unix.SIGINT, unix.SIGUSR1)
	defer signal.Stop(sigs)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
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
				rl.reload()
				continue
			case unix.SIGUSR1: // logrotate moved the audit log
				if audit != nil {
					if f, err := openAudit(cfg.AuditLog); err != nil {
						log.Error("reopen audit log", "err", err)
					} else {
						audit.Reopen(f).(*os.File).Close()
					}
				}
				continue
			}
			log.Info("shutting down", "signal", sig.String(), "grace", srv.Config().Server.ShutdownGrace)
			drain(srv, sigs, log)
			sup.Close()
			if err := prov.Close(); err != nil {
				log.Warn("unmount tenant layers", "err", err)
			}
			log.Info("stopped")
			return nil
		}
	}
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
