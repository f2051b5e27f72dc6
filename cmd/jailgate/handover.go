package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/gateway/admin"
	"github.com/jailgate/jailgate/statedir"
)

// serveFlags parses serve's flags: --config, and --pid-file, written with
// the serving process's pid once it is ready and again by each upgrade
// (systemd's PIDFile= follows it: contrib/jailgate.service).
func serveFlags(args []string) (path, pidFile string, err error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&path, "config", "/etc/jailgate/jailgate.yaml", "configuration file")
	fs.StringVar(&pidFile, "pid-file", "", "write the serving process's pid here (it changes at an upgrade)")
	if err := fs.Parse(args); err != nil {
		return "", "", flagError(fs, err)
	}
	if fs.NArg() > 0 {
		return "", "", &usageError{fmt.Sprintf("serve: unexpected argument %q", fs.Arg(0))}
	}
	return path, pidFile, nil
}

// listenAdmin takes the admin socket the old process of an upgrade passed,
// or listens on it as admin.Listen does (refusing while another server
// answers there: a serve started by hand on a running state_dir stops).
func (d *daemon) listenAdmin() (*admin.Listener, error) {
	path := statedir.New(d.cfg.StateDir).AdminSocket()
	if l, err := d.up.up.Listener("unix", path); err != nil {
		return nil, err
	} else if l != nil {
		return admin.Inherit(l, d.cfg.StateDir)
	}
	l, err := admin.Listen(d.cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if err := d.up.up.AddListener("unix", path, l); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// stopUpgrades ends tableflip's part at exit: no upgrade starts from now
// on. A new process that failed leaves it alone: its Stop would remove
// the admin socket the old process still answers on.
func (d *daemon) stopUpgrades() {
	if !d.sharing() {
		d.up.up.Stop()
	}
}

// ready is serve's last step: the pid file and, in a new process, the
// handshake that makes the old one close its listeners.
func (d *daemon) ready() error {
	if err := d.up.ready(); err != nil {
		return err
	}
	d.isReady = true
	if d.up.isNew() {
		d.log.Info("serving after an upgrade", "from", d.up.from, "version", version)
	}
	return nil
}

// answer answers the admin socket: a reload, or an upgrade of the server
// serving the file the operator named.
func (d *daemon) answer(req admin.Request) admin.Reply {
	if refusal := d.rl.notMine(req.Config); refusal != nil {
		return *refusal
	}
	if req.Op == admin.OpUpgrade {
		return d.upgrade()
	}
	return d.rl.reload()
}

// upgrade starts the binary at this process's path and, once it is ready,
// has run hand over to it; it keeps everything if the new one fails.
func (d *daemon) upgrade() admin.Reply {
	d.log.Info("upgrading: starting the installed binary", "pid", os.Getpid(), "version", version)
	rep, err := d.up.start()
	if err != nil {
		for _, line := range rep.Problems {
			d.log.Error("upgrade rejected: " + line)
		}
		d.log.Error("upgrade failed", "old_pid", os.Getpid(), "old_version", version, "err", err.Error())
		return upgradeReply(rep, err)
	}
	d.log.Info("upgrade", "old_pid", os.Getpid(), "new_pid", rep.PID, "old_version", version, "new_version", rep.Version)
	d.upgraded <- rep
	return upgradeReply(rep, nil)
}

// handOver is the old process's side once the new one is ready: stop
// accepting (the new process accepts on the same sockets), serve the
// established connections until they end or upgrade_drain passes, then
// let go of the environments and leave what the new process uses.
func (d *daemon) handOver(rep startReport, served <-chan error) {
	d.handedOver = true
	d.ln.Close()
	<-served // no connection is being taken any more
	if d.admin != nil {
		d.admin.Release()
	}
	if d.hs != nil {
		d.hs.Close()
	}
	limit := d.srv.Config().UpgradeDrain
	d.log.Info("draining after the upgrade", "new_pid", rep.PID, "connections", d.srv.Connections(), "upgrade_drain", limit)
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if limit > 0 {
		ctx, cancel = context.WithTimeout(ctx, limit)
	}
	defer cancel()
	drained := make(chan bool, 1)
	go func() { drained <- d.srv.Drain(ctx) }()
	for {
		select {
		case ok := <-drained:
			if !ok { // upgrade_drain passed, or a stop: as a shutdown from here
				d.log.Info("ending the connections left", "connections", d.srv.Connections())
				drain(d.srv, d.sigs, d.log)
			}
			d.detach()
			if unix.Kill(rep.PID, 0) != nil {
				// The new process is gone too (its stop stopped this one):
				// nothing shares the layers this one mounted any more.
				if err := d.prov.Detach(); err != nil {
					d.log.Warn("unmount tenant layers", "err", err)
				}
			}
			d.log.Info("stopped after the upgrade", "new_pid", rep.PID)
			return
		case sig := <-d.sigs:
			switch sig {
			case unix.SIGHUP:
				d.rl.reload()
			case unix.SIGUSR1:
				d.reopenAudit()
			case unix.SIGTERM, unix.SIGINT:
				d.log.Info("stopping while draining after the upgrade", "signal", sig.String())
				cancel()
			}
		}
	}
}

// detach lets go of every environment: each follows its own linger.
func (d *daemon) detach() {
	d.detached = true
	d.sup.Detach()
}
