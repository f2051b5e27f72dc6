package rootfs

import (
	"os"
	"strings"

	"github.com/jailgate/jailgate/statedir"
)

// TenantUsage reads what tenant's tree holds against her disk quota: her
// disk image (image backend), her tree's project (project backend) or her
// tree's qgroup (btrfs backend). tree
// is her rootfs: directory, or "" for an image: tenant (her layer dir).
// A tree under no quota gives ok false.
func TenantUsage(stateDir, tenant, tree string) (u Usage, ok bool, err error) {
	state := statedir.New(stateDir)
	if tree == "" {
		img := state.TenantDiskImage(tenant)
		if _, err := os.Lstat(img); err == nil {
			_, mnt, _, _ := diskPaths(stateDir, tenant, pathsOf(stateDir, tenant))
			u, err := imageUsage(img, mnt)
			return u, err == nil, err
		}
		tree = state.Tenant(tenant)
	}
	if r, ok, err := ReadProject(stateDir, tenant); err != nil || (ok && r.Set && r.Tree == tree) {
		if err != nil {
			return Usage{}, false, err
		}
		u, err := projectUsage(tree, r.ID)
		return u, err == nil, err
	}
	t, err := ProbeBtrfs(tree)
	if err != nil || !t.Subvolume || !t.QuotaOn {
		return Usage{}, false, nil
	}
	u, err = btrfsUsage(tree)
	return u, err == nil, err
}

// MountOf names the mount that holds path: its mount point, file system
// type and source (the device), from /proc/self/mountinfo.
func MountOf(path string) (point, fstype, source string) {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	for line := range strings.Lines(string(data)) {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			continue
		}
		mp := f[4]
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(point) {
			point, fstype, source = mp, g[0], g[1]
		}
	}
	return point, fstype, source
}
