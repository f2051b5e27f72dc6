package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway"
	"github.com/jailgate/jailgate/gateway/admin"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/provision"
)

// reloader re-reads the configuration, on SIGHUP and for `jailgate
// reload` alike: one reload at a time, and a bad file changes nothing.
type reloader struct {
	mu   sync.Mutex
	srv  *gateway.Server
	sup  *jail.Supervisor
	prov *provision.Provisioner // applies a changed limits.disk live
	path string                 // the file this server serves
	log  *slog.Logger
}

// reload swaps in a new configuration, or logs every problem of a bad one
// and keeps the old one: nothing is half-applied. The reply says which.
func (r *reloader) reload() admin.Reply {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := config.Load(r.path)
	if err == nil {
		err = provision.CheckLimits(r.sup, c)
	}
	if err == nil {
		err = provision.CheckIDs(c, hostIDs)
	}
	if err == nil {
		_, err = provision.CheckDisk(c) // its warnings are logWarnings' (best-effort)
	}
	if err != nil {
		lines := errorLines(err)
		for _, line := range lines {
			r.log.Error("reload rejected: " + line)
		}
		r.srv.Metrics().Reload("error")
		// One summary line under the audit log's message (config.reload,
		// result error); the previous configuration stays in force.
		r.log.Error("reload rejected", "config", r.path, "errors", len(lines),
			"changes", "none: the previous configuration stays in force")
		return admin.Reply{Problems: lines}
	}
	old := r.srv.Config()
	r.srv.SetConfig(c) // logs the reload
	changes := diffConfigs(old, c)
	if r.prov != nil {
		changes = append(changes, applyDisk(r.prov, c, r.log)...)
		if err := applyPrestart(r.prov, r.sup, c); err != nil {
			changes = append(changes, fmt.Sprintf("prestart: not applied: %v", err))
		} else if c.Prestart != old.Prestart {
			changes = append(changes, fmt.Sprintf("prestart: %d -> %d (now)", old.Prestart, c.Prestart))
		}
	}
	for _, l := range changes {
		r.log.Info("reload change: " + l)
	}
	logWarnings(r.log, c)
	if err := saveActive(c); err != nil {
		r.log.Warn("record the configuration in force", "err", err)
	}
	return admin.Reply{OK: true, Summary: fmt.Sprintf("%s, %d tenants", c.File, len(c.Users)),
		Changes: changes}
}

// notMine refuses a request on the admin socket (nil: accepted) that
// names another file than the one this server serves: the operator meant
// another server.
func (r *reloader) notMine(file string) *admin.Reply {
	mine, err := os.Stat(r.path)
	if err != nil {
		return &admin.Reply{Error: fmt.Sprintf("the configuration this server serves: %v", err)}
	}
	if theirs, err := os.Stat(file); err != nil || !os.SameFile(mine, theirs) {
		served, _ := filepath.Abs(r.path)
		return &admin.Reply{Error: fmt.Sprintf("this server serves %s, not %s: edit that file, or name it with --config", served, file)}
	}
	return nil
}

// askServer sends op for the configuration file path to the server running
// on its state_dir, for the command cmd (reload, upgrade). The server
// judges the file; cmd only has to say where the server is.
func askServer(cmd, op, path string) (*admin.Reply, error) {
	stateDir, err := config.StateDirHint(path)
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			return nil, &configError{lines: errorLines(err)}
		}
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	reply, err := admin.Call(stateDir, admin.Request{Op: op, Config: abs})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return reply, nil
}

// cmdReload asks the server running on the configuration's state_dir to
// re-read it, through its admin socket, and reports the outcome: exit 0
// when the new configuration is in force, exit 2 with every problem when
// it was rejected (the old one stays), exit 1 when no server answers.
func cmdReload(args []string, stdout io.Writer) error {
	path, _, err := configFlag("reload", args)
	if err != nil {
		return err
	}
	reply, err := askServer("reload", admin.OpReload, path)
	if err != nil {
		return err
	}
	switch {
	case reply.OK:
		fmt.Fprintf(stdout, "reloaded: %s\n", reply.Summary)
		if len(reply.Changes) == 0 {
			fmt.Fprintln(stdout, "  no change")
		}
		for _, l := range reply.Changes {
			fmt.Fprintln(stdout, "  "+l)
		}
		return nil
	case len(reply.Problems) > 0:
		return &configError{lines: append(reply.Problems, "reload rejected: the previous configuration stays in force")}
	}
	return fmt.Errorf("reload: %s", reply.Error)
}

// cmdUpgrade asks the server running on the configuration's state_dir to
// hand over to the binary now installed at its path (as SIGUSR2 does) and
// reports the outcome: exit 0 once the new process serves, with both pids
// and versions; exit 1 with the reason when the new process failed (the
// old one keeps serving) or no server answers.
func cmdUpgrade(args []string, stdout io.Writer) error {
	path, _, err := configFlag("upgrade", args)
	if err != nil {
		return err
	}
	reply, err := askServer("upgrade", admin.OpUpgrade, path)
	if err != nil {
		return err
	}
	if !reply.OK {
		msg := reply.Error
		for _, l := range reply.Problems {
			msg += "\n  " + l
		}
		return fmt.Errorf("upgrade: %s", msg)
	}
	fmt.Fprintf(stdout, "upgraded: pid %d (%s) -> pid %d (%s)\n", reply.OldPID, reply.OldVersion, reply.NewPID, reply.NewVersion)
	fmt.Fprintf(stdout, "  pid %d serves new connections; pid %d serves its own until they end, then exits\n", reply.NewPID, reply.OldPID)
	return nil
}
