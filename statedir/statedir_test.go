package statedir

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestLayoutPaths pins the on-disk names: existing state directories hold
// files under these names, so a rename here would lose a tenant's ids,
// records or layer.
func TestLayoutPaths(t *testing.T) {
	l := New("/var/lib/jailgate")
	for got, want := range map[string]string{
		l.IDs():                     "/var/lib/jailgate/ids.json",
		l.HostKey():                 "/var/lib/jailgate/ssh_host_ed25519_key",
		l.AdminSocket():             "/var/lib/jailgate/jailgate.sock",
		l.ActiveConfig():            "/var/lib/jailgate/active.yaml",
		l.ActiveTenants():           "/var/lib/jailgate/active-tenants.json",
		l.RootfsRecord("alice"):     "/var/lib/jailgate/rootfs/alice.json",
		l.Image("debian"):           "/var/lib/jailgate/images/debian",
		l.Tenant("bob"):             "/var/lib/jailgate/tenants/bob",
		l.TenantUpper("bob"):        "/var/lib/jailgate/tenants/bob/upper",
		l.TenantWork("bob"):         "/var/lib/jailgate/tenants/bob/work",
		l.TenantRecordings("alice"): "/var/lib/jailgate/recordings/alice",
		l.ProjectRecord("alice"):    "/var/lib/jailgate/projects/alice.json",
		l.ProjectClaim(1 << 30):     "/var/lib/jailgate/projects/ids/1073741824",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

// TestCgroupPerStateDir: two gateways with different state directories
// never share a cgroup (issue 16: both used jailgate/<tenant>).
func TestCgroupPerStateDir(t *testing.T) {
	a, b := New("/srv/staging").Cgroup(), New("/srv/production").Cgroup()
	if a == b || !strings.HasPrefix(a, "jailgate-") || strings.Contains(a, "/") {
		t.Fatalf("cgroups %q and %q: want two different one-element jailgate-<hash> names", a, b)
	}
	if New("/srv/staging").Cgroup() != a {
		t.Error("Cgroup is not stable for one state directory")
	}
}

// TestLayerMountsPerStateDir: two state directories never share mount points.
func TestLayerMountsPerStateDir(t *testing.T) {
	a, b := New("/srv/a").LayerMounts(), New("/srv/b").LayerMounts()
	if a == b {
		t.Fatalf("two state directories share %s", a)
	}
	for _, p := range []string{a, b} {
		if filepath.Dir(p) != filepath.Join(RuntimeDir, "layers") || !strings.HasPrefix(p, "/run/jailgate/layers/") {
			t.Errorf("layer mounts %s are not under %s/layers", p, RuntimeDir)
		}
	}
	if New("/srv/a").LayerMounts() != a {
		t.Error("LayerMounts is not stable for one state directory")
	}
}
