package provision

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
	"golang.org/x/sys/unix"
)

func TestSpecFor(t *testing.T) {
	u := &config.User{Name: "alice", Rootfs: "/srv/alice", Hostname: "alice-lab", Network: "none",
		Environment: config.EnvTenant, Linger: time.Minute, Limits: jail.Limits{Memory: 1 << 29, Pids: 256, CPU: 1.5}}
	got := SpecFor(u)
	want := &jail.EnvSpec{Tenant: "alice", Rootfs: "/srv/alice", Hostname: "alice-lab", Network: "none",
		Linger: time.Minute, Limits: jail.Limits{Memory: 1 << 29, Pids: 256, CPU: 1.5}}
	if got.Tenant != want.Tenant || got.Rootfs != want.Rootfs || got.Hostname != want.Hostname ||
		got.Network != want.Network || got.Linger != want.Linger || got.Limits != want.Limits || got.IDMap != (jail.IDMap{}) {
		t.Errorf("SpecFor = %+v, want %+v", got, want)
	}
	u.Environment = config.EnvSession
	if got := SpecFor(u); got.Linger != 0 {
		t.Errorf("session-mode spec lingers %v", got.Linger)
	}
}

// TestProvisionerIDsAndRootfs: Provision gives each tenant her own id range
// from the pool (skipping an explicit uid_base of the config in force),
// the same range again from a new Provisioner on the same state directory
// (a restart), and her rootfs shifted into it.
func TestProvisionerIDsAndRootfs(t *testing.T) {
	jailtest.RequireRoot(t)
	state := t.TempDir()
	trees := map[string]string{}
	for _, n := range []string{"alice", "bob"} {
		trees[n] = filepath.Join(t.TempDir(), n)
		if err := os.Mkdir(trees[n], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	reserved := &config.User{Name: "carol", UIDBase: jail.PoolStart, IDRange: jail.DefaultSize}
	cfg := &config.Config{Users: map[string]*config.User{"carol": reserved}}
	current := func() *config.Config { return cfg }
	user := func(n string) *config.User {
		return &config.User{Name: n, Rootfs: trees[n], Environment: config.EnvTenant}
	}
	first := New(Options{StateDir: state, Current: current})
	got := map[string]jail.IDMap{}
	for _, n := range []string{"alice", "bob"} {
		spec, err := first.Provision(context.Background(), user(n))
		if err != nil {
			t.Fatalf("provision %s: %v", n, err)
		}
		got[n] = spec.IDMap
		if spec.Tenant != n || spec.Rootfs != trees[n] || spec.IDMap.Size != jail.DefaultSize || spec.IDMap.UID != spec.IDMap.GID {
			t.Errorf("%s: spec %+v", n, spec)
		}
		var st unix.Stat_t
		if err := unix.Stat(trees[n], &st); err != nil || st.Uid != spec.IDMap.UID {
			t.Errorf("%s: rootfs owned by %d (%v), want her root %d", n, st.Uid, err, spec.IDMap.UID)
		}
	}
	if got["alice"].UID == got["bob"].UID {
		t.Errorf("alice and bob share base %d", got["alice"].UID)
	}
	for n, m := range got {
		if m.UID < reserved.UIDBase+reserved.IDRange && reserved.UIDBase < m.UID+m.Size {
			t.Errorf("%s's range %d+%d overlaps carol's explicit uid_base", n, m.UID, m.Size)
		}
	}
	again, err := New(Options{StateDir: state, Current: current}).Provision(context.Background(), user("bob"))
	if err != nil || again.IDMap != got["bob"] {
		t.Errorf("after a restart bob has %+v (%v), want %+v", again.IDMap, err, got["bob"])
	}
}

// TestSpecForNetwork: a nat tenant's egress policy and resolvers reach
// her spec.
func TestSpecForNetwork(t *testing.T) {
	allow := jail.EgressRule{Prefix: netip.MustParsePrefix("10.1.2.3/32"), PortLo: 5432, PortHi: 5432}
	dns := []netip.Addr{netip.MustParseAddr("9.9.9.9")}
	u := &config.User{Name: "alice", Network: jail.NetworkNAT, Egress: jail.Egress{Allow: []jail.EgressRule{allow}}, DNS: dns}
	got := SpecFor(u)
	if got.Network != jail.NetworkNAT || len(got.Egress.Allow) != 1 || got.Egress.Allow[0] != allow ||
		len(got.DNS) != 1 || got.DNS[0] != dns[0] {
		t.Errorf("SpecFor = network %q, egress %+v, dns %v", got.Network, got.Egress, got.DNS)
	}
}
