package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/gateway"
	"github.com/jailgate/jailgate/keys"
)

// The daemon's life after its steps: the signal loop, and the ways it ends
// (a shutdown here, an upgrade's handover in handover.go).

// catchSignals takes the signals the loop in run answers from now on: one
// that arrives while serve is still starting (an operator's reload right
// after a restart, say) is queued for it, not acted on by default (SIGHUP's
// default is to end the process).
func (d *daemon) catchSignals() error {
	d.sigs = make(chan os.Signal, 4)
	signal.Notify(d.sigs, unix.SIGHUP, unix.SIGTERM, unix.SIGINT, unix.SIGUSR1, unix.SIGUSR2)
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
		case rep := <-d.upgraded:
			d.handOver(rep, served)
			return nil
		case sig := <-sigs:
			switch sig {
			case unix.SIGHUP:
				d.rl.reload()
				continue
			case unix.SIGUSR1: // logrotate moved the audit log
				d.reopenAudit()
				continue
			case unix.SIGUSR2: // the operator's upgrade (systemctl kill -s USR2)
				go d.upgrade()
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
// no environment uses before close runs, to log the outcome. An old process
// of an upgrade still draining its connections stops too.
func (d *daemon) shutdown(sig os.Signal, sigs <-chan os.Signal) {
	d.log.Info("shutting down", "signal", sig.String(), "grace", d.srv.Config().Server.ShutdownGrace)
	if d.up.close(d.upgraded) {
		d.handedOver = true // an upgrade finished as the stop came: the new process serves
	}
	if pid := d.up.oldPID(); pid > 0 {
		d.log.Info("stopping the gateway this one took over from", "pid", pid)
		unix.Kill(pid, unix.SIGTERM)
	}
	drain(d.srv, sigs, d.log)
	d.detach()
	if d.sharing() {
		d.log.Info("stopped; the new process serves")
		return
	}
	if err := d.prov.Detach(); err != nil {
		d.log.Warn("unmount tenant layers", "err", err)
	}
	d.log.Info("stopped")
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
