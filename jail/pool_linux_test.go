package jail_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// pooledSupervisor starts a Supervisor keeping n blanks ready, created by
// owner uids of a range of the test's own, and waits until they are.
func pooledSupervisor(t *testing.T, n int) *jail.Supervisor {
	t.Helper()
	s := newSupervisor(t)
	owners := nextBase.Add(1<<16) - 1<<16
	if err := s.Prestart(jail.PoolOptions{Size: n, OwnerBase: owners, OwnerSize: 1 << 16}); err != nil {
		t.Fatal(err)
	}
	waitReady(t, s, 1)
	return s
}

// waitReady waits until the pool holds at least n blanks.
func waitReady(t *testing.T, s *jail.Supervisor, n int) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); s.Ready() < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the pool holds %d blanks after 20s; want %d", s.Ready(), n)
		}
	}
}

// poolOnly is a Manager whose every environment starts from a pool blank:
// it waits for one before each start, and fails the test if the start
// took the cold path anyway.
type poolOnly struct {
	t *testing.T
	*jail.Supervisor
}

func (p poolOnly) Environment(ctx context.Context, key string, spec *jail.EnvSpec) (jail.Env, error) {
	waitReady(p.t, p.Supervisor, 1)
	env, err := p.Supervisor.Environment(ctx, key, spec)
	if err == nil && !jail.Pooled(env) {
		p.t.Errorf("environment %s started cold with a blank in the pool", key)
	}
	return env, err
}

// TestConformancePooled runs the jail conformance suite on environments
// that each started from a pool blank.
func TestConformancePooled(t *testing.T) {
	s := pooledSupervisor(t, 2)
	jailtest.RunConformance(t, poolOnly{t, s}, newSpec(t, "conform"))
}

// perThread matches the masks over each init thread's and process's /proc
// entries: how many threads the Go runtime made differs from start to start.
var perThread = regexp.MustCompile(`(?m)^\S+ /proc/(\d+|1/task/\d+)/\S+\n`)

// nsGetOwnerUID is ioctl_ns(2)'s NS_GET_OWNER_UID: _IO(0xb7, 0x4).
const nsGetOwnerUID = 0xb704

// view is what a tenant sees of her environment, and what the host sees of
// its init, in the parts a pool blank could carry over.
type view struct {
	id, uidMap, gidMap, hostname, cgroup, env, mounts, userns, caps string
	hostCgroup                                                      string
	owner                                                           uint32
}

const viewScript = `id; echo; cat /proc/self/uid_map; echo; cat /proc/self/gid_map; echo; hostname; echo;
cat /proc/self/cgroup; echo; env | sort; echo; while read -r _ _ _ root mnt _; do echo "$root $mnt"; done < /proc/self/mountinfo | sort; echo;
readlink /proc/self/ns/user; echo; grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status`

func viewOf(t *testing.T, env jail.Env) view {
	t.Helper()
	parts := strings.Split(sh(t, env, viewScript), "\n\n")
	if len(parts) != 9 {
		t.Fatalf("view: %d parts: %q", len(parts), parts)
	}
	v := view{id: parts[0], uidMap: parts[1], gidMap: parts[2], hostname: parts[3], cgroup: parts[4],
		env: parts[5], mounts: parts[6], userns: strings.TrimSpace(parts[7]), caps: parts[8]}
	pid := jail.InitPid(env)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	v.hostCgroup = string(b)
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/user", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var uid uint32
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), nsGetOwnerUID, uintptr(unsafe.Pointer(&uid))); errno != 0 {
		t.Fatalf("NS_GET_OWNER_UID: %v", errno)
	}
	v.owner = uid
	return v
}

// TestPooledCarriesNothing: an environment from a pool blank shows its
// tenant exactly what a cold one does (ids, maps, hostname, cgroup view,
// environment variables, mounts) and nothing of the tenant before it or
// beside it; on the host its init sits in her cgroup, not the pool's, and
// each environment's user namespace has an owner of its own.
func TestPooledCarriesNothing(t *testing.T) {
	pooled := pooledSupervisor(t, 2)
	cold := newSupervisor(t)
	alice, bob := newSpec(t, "alice"), newSpec(t, "bob")

	coldAlice := viewOf(t, environment(t, cold, "tenant/alice", alice))
	first := environment(t, pooled, "tenant/alice", alice)
	if !jail.Pooled(first) {
		t.Fatal("alice's environment did not start from the pool")
	}
	sh(t, first, "echo secret > /tmp/alice; export LEAK=1")
	pooledAlice := viewOf(t, first)
	waitReady(t, pooled, 1)
	bobEnv := environment(t, pooled, "tenant/bob", bob)
	if !jail.Pooled(bobEnv) {
		t.Fatal("bob's environment did not start from the pool")
	}
	pooledBob := viewOf(t, bobEnv)

	same := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s differs:\n got %q\nwant %q", what, got, want)
		}
	}
	same("alice's id", pooledAlice.id, coldAlice.id)
	same("alice's uid_map", pooledAlice.uidMap, coldAlice.uidMap)
	same("alice's gid_map", pooledAlice.gidMap, coldAlice.gidMap)
	same("alice's hostname", pooledAlice.hostname, coldAlice.hostname)
	same("alice's cgroup view", pooledAlice.cgroup, coldAlice.cgroup)
	same("alice's environment variables", pooledAlice.env, coldAlice.env)
	same("alice's capabilities, no_new_privs and seccomp", pooledAlice.caps, coldAlice.caps)
	if !strings.Contains(pooledAlice.caps, "CapAmb:\t0000000000000000") {
		t.Errorf("the ambient set a blank init starts with reached her process:\n%s", pooledAlice.caps)
	}
	same("alice's mounts", perThread.ReplaceAllString(pooledAlice.mounts, ""), perThread.ReplaceAllString(coldAlice.mounts, ""))
	for _, line := range strings.Split(strings.TrimSpace(pooledAlice.cgroup), "\n") {
		if !strings.HasSuffix(line, ":/") {
			t.Errorf("alice's cgroup view %q is not rooted at her cgroup", line)
		}
	}
	same("bob's uid_map", pooledBob.uidMap, fmt.Sprintf("%10d %10d %10d", 0, bob.IDMap.UID, bob.IDMap.Size))
	same("bob's hostname", pooledBob.hostname, "bob-lab")
	if out := sh(t, bobEnv, "cat /tmp/alice 2>&1; echo LEAK=$LEAK"); !strings.Contains(out, "No such file") || !strings.Contains(out, "LEAK=\n") {
		t.Errorf("bob sees alice's files or variables: %q", out)
	}
	if pooledAlice.userns == pooledBob.userns {
		t.Errorf("alice and bob share a user namespace %s", pooledAlice.userns)
	}
	for _, v := range []struct {
		who    string
		v      view
		tenant string
		base   uint32
	}{{"alice", pooledAlice, "alice", alice.IDMap.UID}, {"bob", pooledBob, "bob", bob.IDMap.UID}} {
		if strings.Contains(v.v.hostCgroup, "pool.") || !strings.Contains(v.v.hostCgroup, "/"+v.tenant+"/") {
			t.Errorf("%s's init is not in her cgroup on the host:\n%s", v.who, v.v.hostCgroup)
		}
		if v.v.owner == v.base || v.v.owner == 0 {
			t.Errorf("%s's user namespace is owned by uid %d, not an owner uid of its own", v.who, v.v.owner)
		}
	}
	if pooledAlice.owner == pooledBob.owner {
		t.Errorf("alice's and bob's namespaces share the owner uid %d", pooledAlice.owner)
	}
}

// TestPoolEmptyStartsCold: a login that finds the pool empty, while its
// refill is stuck making a blank, starts cold at once and works.
func TestPoolEmptyStartsCold(t *testing.T) {
	s := newSupervisor(t)
	stuck, release := make(chan struct{}), make(chan struct{})
	jail.SetPoolFill(s, func() {
		select {
		case stuck <- struct{}{}:
		default:
		}
		<-release
	})
	defer close(release)
	if err := s.Prestart(jail.PoolOptions{Size: 2, OwnerBase: nextBase.Add(1<<16) - 1<<16, OwnerSize: 1 << 16}); err != nil {
		t.Fatal(err)
	}
	<-stuck // the refill is making its first blank, and will not finish
	t0 := time.Now()
	env := environment(t, s, "tenant/carol", newSpec(t, "carol"))
	if jail.Pooled(env) {
		t.Fatal("a blank came from a pool whose refill never finished")
	}
	if out := sh(t, env, "echo hello from $(hostname)"); out != "hello from carol-lab\n" {
		t.Errorf("cold environment says %q", out)
	}
	t.Logf("cold start with the refill stuck: %v", time.Since(t0))
}
