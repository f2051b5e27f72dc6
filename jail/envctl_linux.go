package jail

import (
	"context"
	"errors"
	"time"
)

// EnvInfo is one live environment, as `jailgate env list` shows it.
type EnvInfo struct {
	*EnvRecord
	Sessions int   // held by every gateway connected
	Gateways []int // the host pids of the gateways connected to it
}

// ListEnvironments asks every live environment recorded under dir how many
// sessions it has and which gateways hold it. It only looks: an
// environment's lifetime does not change for being listed.
func ListEnvironments(ctx context.Context, dir string) ([]EnvInfo, []error) {
	recs, errs := ReadRecords(dir)
	var out []EnvInfo
	for _, r := range recs {
		info, err := inspect(ctx, dir, r)
		if err != nil {
			errs = append(errs, &RecordError{Path: recordPath(dir, r.Name), Err: err})
			continue
		}
		out = append(out, info)
	}
	return out, errs
}

// inspect asks one environment's init for its status.
func inspect(ctx context.Context, dir string, r *EnvRecord) (EnvInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ctl, _, proc, err := dialAs(ctx, dir, r, helloObserver)
	if err != nil {
		return EnvInfo{}, err
	}
	defer proc.release()
	defer ctl.close()
	if err := ctl.send(&message{Op: opStatus, ID: 1}); err != nil {
		return EnvInfo{}, err
	}
	if dl, ok := ctx.Deadline(); ok {
		ctl.c.SetReadDeadline(dl)
	}
	m, files, err := ctl.recv()
	closeAll(files)
	if err != nil {
		return EnvInfo{}, err
	}
	if m.Op != opStatus {
		return EnvInfo{}, errors.New("init answered " + m.Op)
	}
	return EnvInfo{EnvRecord: r, Sessions: m.Code, Gateways: m.Peers}, nil
}

// StopEnvironments ends the live environments recorded under
// opts.RecordDir of tenant ("": all of them), whether a gateway runs or
// not: SIGTERM to everything inside, SIGKILL after grace. It returns those
// it ended; their records, sockets and (with no gateway left to do it)
// cgroups are gone when it returns.
func StopEnvironments(ctx context.Context, opts Options, tenant string, grace time.Duration) ([]*EnvRecord, error) {
	recs, _ := ReadRecords(opts.RecordDir)
	var stopped []*EnvRecord
	var errs []error
	for _, r := range recs {
		if tenant != "" && r.Tenant != tenant {
			continue
		}
		if err := stopOne(ctx, opts.RecordDir, r, grace); err != nil {
			errs = append(errs, &RecordError{Path: recordPath(opts.RecordDir, r.Name), Err: err})
			continue
		}
		stopped = append(stopped, r)
	}
	// The cgroups of what ended (a running gateway removes its own too);
	// New keeps those of the environments still live.
	s, err := New(opts)
	if err != nil {
		errs = append(errs, err)
	} else {
		s.release()
	}
	return stopped, errors.Join(errs...)
}

// stopOne asks an init to end its environment and waits until it has.
func stopOne(ctx context.Context, dir string, r *EnvRecord, grace time.Duration) error {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	ctl, _, proc, err := dialAs(dctx, dir, r, helloObserver)
	cancel()
	if err != nil {
		// Not answering: end it by its pid, if that is still its init.
		p, perr := openInit(r)
		if perr != nil {
			removeRecord(dir, r.Name)
			forgetKey(dir, r.Key, r.Name)
			return nil // gone already
		}
		proc = p
	} else {
		ctl.send(&message{Op: opStop, Code: int(grace.Milliseconds())})
		defer ctl.close()
	}
	if !proc.exitedWithin(grace + 2*time.Second) {
		proc.Process.Kill()
	}
	proc.Wait()
	removeRecord(dir, r.Name)
	forgetKey(dir, r.Key, r.Name)
	return nil
}
