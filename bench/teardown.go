package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/statedir"
)

// teardown stops both servers and every process left in their cgroups,
// removes the harness's cgroups, the work dir, the test user (if it made
// it) and /run/sshd (if it made it). It returns what it could not undo.
func (tb *testbed) teardown() []error {
	var errs []error
	for _, s := range []*server{tb.jg, tb.ossh} {
		if s == nil || s.cmd == nil || s.cmd.Process == nil {
			continue
		}
		errs = append(errs, s.stop()...)
	}
	// jailgate leaves its tenants' cgroups (<prefix>/<tenant>) in place,
	// and environments with a linger live on past its stop; these are the
	// harness's own: end them, then remove the groups once empty.
	if tb.jg != nil {
		if err := runCmd(tb.o.jailgate, "env", "stop", "--all", "--grace", "2s", "--config", tb.jgConfig); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, removePrefixGroups(tb.jgCgroup())...)
		// The gateway's runtime dirs of this state_dir, if it left them
		// empty (never their content: a layer still mounted stays, and is
		// reported by the next run's checks).
		st := statedir.New(tb.jgStateDir())
		for _, d := range []string{st.LayerMounts(), st.Environments()} {
			os.Remove(d)
		}
	}
	if tb.dir != "" && !tb.o.keep {
		if err := os.RemoveAll(tb.dir); err != nil {
			errs = append(errs, err)
		}
	}
	if tb.userCreated {
		if err := runCmd("userdel", tb.o.user); err != nil {
			errs = append(errs, err)
		}
	}
	if tb.runSSHD {
		os.Remove("/run/sshd")
	}
	if tb.ipForward != nil {
		os.WriteFile(ipForwardPath, tb.ipForward, 0o644)
	}
	return errs
}

// stop ends s (SIGTERM, then SIGKILL after 10s), then what it left in its
// cgroup, and removes the harness's cgroups of it.
func (s *server) stop() []error {
	var errs []error
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	// What the server started and left (sshd's session processes
	// survive the listener) is in its cgroups: end it by pid.
	for _, d := range s.memDirs[:1] {
		if err := killGroup(d); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ctrl := range []string{"cpuacct", "memory"} {
		if err := os.Remove(filepath.Join(cgroupRoot, ctrl, groupName(s.group))); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errs
}

// killGroup SIGKILLs the processes of cgroup d until it is empty, for up to
// 5s.
func killGroup(d string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, _ := jail.CgroupProcs(d)
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: processes %v still alive", d, pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removePrefixGroups removes the benchmarked gateway's cgroup prefix
// (its state_dir's own: no other gateway's) in every v1 hierarchy, with
// what a gateway left below it: tenant groups, environment groups a
// killed gateway left, the pool's groups. Deepest first, waiting up to 5s
// for each to empty.
func removePrefixGroups(prefix string) []error {
	var errs []error
	roots, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", prefix))
	for _, root := range roots {
		var dirs []string
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- { // children after their parent in walk order
			if err := removeGroup(dirs[i]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// removeGroup removes an empty cgroup dir, retrying for up to 5s while
// its last processes exit.
func removeGroup(d string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := os.Remove(d)
		if err == nil || errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
