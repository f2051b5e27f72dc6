package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jailgate/jailgate/jail"
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
		errs = append(errs, removeTenantGroups(tb.jgCgroup())...)
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
		if err := os.Remove(filepath.Join(cgroupRoot, ctrl, benchCgroup+s.group)); err != nil && !errors.Is(err, os.ErrNotExist) {
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

// removeTenantGroups removes the test tenants' cgroups under prefix in every v1
// hierarchy jailgate uses, with the environment dirs a killed gateway left
// in them, waiting up to 5s each for them to empty.
func removeTenantGroups(prefix string) []error {
	var errs []error
	for _, ctrl := range []string{"memory", "pids", "cpu", "cpuacct", "freezer", "blkio"} {
		for _, t := range []string{tenantCold, tenantWarm, tenantSess, tenantNAT} {
			d := filepath.Join(cgroupRoot, ctrl, prefix, t)
			if ents, err := os.ReadDir(d); err == nil { // env dirs a killed gateway left
				for _, e := range ents {
					if e.IsDir() {
						os.Remove(filepath.Join(d, e.Name()))
					}
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				err := os.Remove(d)
				if err == nil || errors.Is(err, os.ErrNotExist) {
					break
				}
				if time.Now().After(deadline) {
					errs = append(errs, err)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	return errs
}
