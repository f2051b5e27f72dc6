package jailtest_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
)

var spec = &jail.EnvSpec{Tenant: "alice", Rootfs: "/", Hostname: "alice-lab", Network: "none"}

func TestHostManagerConformance(t *testing.T) {
	jailtest.RunConformance(t, &jailtest.HostManager{}, spec)
}

func TestHostManagerReferenceCount(t *testing.T) {
	m := &jailtest.HostManager{}
	ctx := context.Background()
	a, err := m.Environment(ctx, "tenant/alice", spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Environment(ctx, "tenant/alice", spec)
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Environment(ctx, "tenant/bob", &jail.EnvSpec{Tenant: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Started(); strings.Join(got, ",") != "tenant/alice,tenant/bob" {
		t.Errorf("Started = %v", got)
	}
	if m.Live() != 2 {
		t.Errorf("Live = %d, want 2", m.Live())
	}
	a.Release()
	a.Release() // once-only per handle
	if m.Live() != 2 {
		t.Errorf("after one of alice's two releases Live = %d, want 2", m.Live())
	}
	b.Release()
	c.Release()
	if m.Live() != 0 {
		t.Errorf("Live = %d after every release", m.Live())
	}
	if s := m.Specs()["tenant/bob"]; s == nil || s.Tenant != "bob" {
		t.Errorf("Specs[tenant/bob] = %+v", s)
	}
}

func TestHostManagerFailEnvironment(t *testing.T) {
	boom := errors.New("boom")
	m := &jailtest.HostManager{FailEnvironment: boom}
	if _, err := m.Environment(context.Background(), "tenant/alice", spec); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if m.Live() != 0 || len(m.Started()) != 0 {
		t.Errorf("a failed start was recorded: live %d, started %v", m.Live(), m.Started())
	}
}

func TestHostManagerRecordsKillAndIgnoresMissingDir(t *testing.T) {
	m := &jailtest.HostManager{}
	env, err := m.Environment(context.Background(), "k", spec)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Release()
	p, err := env.Spawn(context.Background(), &jail.ProcSpec{
		Argv: []string{"/bin/sh", "-c", "echo ready; exec sleep 100"}, Dir: "/nonexistent/dir"})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(p.Stdout(), buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("read %q, %v", buf, err)
	}
	p.Kill()
	st, _ := p.Wait()
	if st.Signal != unix.SIGHUP {
		t.Errorf("status %+v, want SIGHUP", st)
	}
	if !m.WaitFor(5*time.Second, func() bool { ps := m.Procs(); return len(ps) == 1 && ps[0].Exited }) {
		t.Fatal("the exit was not recorded")
	}
	if ps := m.Procs(); !ps[0].Killed || ps[0].Key != "k" || ps[0].Dir != "/nonexistent/dir" {
		t.Errorf("record %+v", ps[0])
	}
}

func TestHostManagerReleaseEndsProcesses(t *testing.T) {
	m := &jailtest.HostManager{}
	env, err := m.Environment(context.Background(), "k", spec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := env.Spawn(context.Background(), &jail.ProcSpec{Argv: []string{"/bin/sh", "-c", "sleep 100"}})
	if err != nil {
		t.Fatal(err)
	}
	env.Release()
	done := make(chan jail.ExitStatus, 1)
	go func() { st, _ := p.Wait(); done <- st }()
	select {
	case st := <-done:
		if st.Signal == 0 {
			t.Errorf("status %+v, want a signal", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the environment's last release left its process running")
	}
	if ps := m.Procs(); ps[0].Killed {
		t.Error("an environment's end was recorded as Process.Kill")
	}
	if _, err := env.Spawn(context.Background(), &jail.ProcSpec{Argv: []string{"/bin/true"}}); err == nil {
		t.Error("spawn in an ended environment succeeded")
	}
}
