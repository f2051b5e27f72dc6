package provision

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/rootfs"
	"github.com/jailgate/jailgate/statedir"
)

// DiskChoice is the disk quota backend that serves a tenant's tree, and
// why it was picked (for explain).
type DiskChoice struct {
	Backend string // rootfs.QuotaProject, QuotaBtrfs, QuotaImage, or "" (no limits, or none serves her)
	Tree    string // the tree the quota bounds: her rootfs, or her layer dir
	Why     string
}

// diskTree is the tree u's disk quota bounds: her rootfs: directory, or
// her layer dir (upper and work) for an image: tenant.
func diskTree(stateDir string, u *config.User) string {
	if u.Image != "" {
		return statedir.New(stateDir).Tenant(u.Name)
	}
	return u.Rootfs
}

// diskFixes are the ways to give a tree a backend, in the refusal.
const diskFixes = "fixes: on ext4, tune2fs -O project -Q prjquota DEV and mount it with the prjquota option; " +
	"on XFS, mount it with prjquota (pquota); " +
	"or make her tree a btrfs subvolume (btrfs subvolume create) with quotas on (btrfs quota enable MOUNT); " +
	"or switch her to image: (disk_quota image puts her layer in a disk image of her quota's size)"

// ChooseDisk picks the backend of u's disk limits under mode (disk_quota):
// project, then btrfs, then image, as mode allows. A non-nil error says
// what cannot be enforced and how to fix it; the choice may still serve
// part of her limits (btrfs bounds her bytes but not her inodes).
func ChooseDisk(stateDir, mode string, u *config.User) (DiskChoice, error) {
	c := DiskChoice{Tree: diskTree(stateDir, u)}
	if !u.Disk.Set() {
		c.Why = "no limits.disk or limits.inodes"
		return c, nil
	}
	allows := func(b string) bool { return mode == config.DiskQuotaAuto || mode == b }
	var tried []string
	if allows(config.DiskQuotaProject) {
		why, ok := projectServes(c.Tree, u.Image != "")
		if ok {
			c.Backend, c.Why = config.DiskQuotaProject, why
			return c, nil
		}
		tried = append(tried, "project: "+why)
	}
	if allows(config.DiskQuotaBtrfs) {
		why, ok := btrfsServes(c.Tree, u.Image != "")
		switch {
		case ok && u.Disk.Inodes > 0 && u.Image != "" && allows(config.DiskQuotaImage) && u.Disk.Bytes > 0:
			tried = append(tried, "btrfs: "+why+", but btrfs has no inode quota")
		case ok && u.Disk.Inodes > 0:
			c.Backend, c.Why = config.DiskQuotaBtrfs, why
			return c, diskError(u, "limits.inodes", c.Tree, "btrfs has no inode quota: limits.disk is enforced, limits.inodes is not "+
				"(drop inodes, or switch her to image: for disk_quota image)")
		case ok:
			c.Backend, c.Why = config.DiskQuotaBtrfs, why
			return c, nil
		default:
			tried = append(tried, "btrfs: "+why)
		}
	}
	if allows(config.DiskQuotaImage) {
		switch {
		case u.Image == "":
			tried = append(tried, "image: her tree is a rootfs: directory, not a layer over an image")
		case u.Disk.Bytes == 0:
			tried = append(tried, "image: needs limits.disk (the image's size)")
		default:
			c.Backend, c.Why = config.DiskQuotaImage, "her layer lives in an ext4 image of limits.disk's size under state_dir"
			if len(tried) > 0 {
				c.Why += " (" + strings.Join(tried, "; ") + ")"
			}
			return c, nil
		}
	}
	c.Why = strings.Join(tried, "; ")
	return c, diskError(u, "limits.disk", c.Tree, "no disk quota backend (disk_quota "+mode+") serves her tree: "+c.Why+"; "+diskFixes)
}

// projectServes says whether the project backend can bound tree: it is
// (or, for a layer dir not made yet (made), its parent is) on ext4 or XFS
// with project quotas enforced. If not, why, naming what this kernel
// lacks for them, if anything.
func projectServes(tree string, made bool) (string, bool) {
	dir := tree
	if _, err := os.Lstat(tree); made && errors.Is(err, os.ErrNotExist) {
		dir = existing(tree)
	}
	t, err := rootfs.ProbeProject(dir)
	why := ""
	switch {
	case err != nil:
		why = err.Error()
	case t.FS == "":
		why = "not on ext4 or XFS"
	case t.Enforced:
		return "a project id of her own on " + t.FS + " with block and inode limits", true
	default:
		why = t.FS + ": " + t.Why
	}
	if gaps := rootfs.ProjectQuotaGaps(); len(gaps) > 0 {
		why += ", and this kernel lacks " + strings.Join(gaps, ", ") +
			" (ext4 prjquota needs CONFIG_QUOTA and CONFIG_QFMT_V2; XFS prjquota, CONFIG_XFS_QUOTA)"
	}
	return why, false
}

// diskError is a *config.Error at her limits, naming her tree's mount.
func diskError(u *config.User, field, tree, msg string) error {
	if u.Disk.Bytes == 0 {
		field = "limits.inodes"
	}
	mp, fstype, src := rootfs.MountOf(existing(tree))
	return &config.Error{Pos: u.DiskPos, Field: "users." + u.Name + "." + field,
		Msg: fmt.Sprintf("%s is on %s (%s) mounted on %s: %s", tree, fstype, src, mp, msg)}
}

// existing is dir, or its nearest ancestor that exists.
func existing(dir string) string {
	for dir != "/" && dir != "." {
		if _, err := os.Lstat(dir); err == nil {
			return dir
		}
		dir = filepath.Dir(dir)
	}
	return dir
}

// btrfsServes says whether the btrfs backend can bound tree: a subvolume
// with quotas on, or, for a layer dir not made yet (made), one it can make
// a subvolume.
func btrfsServes(tree string, made bool) (string, bool) {
	dir := tree
	_, err := os.Lstat(tree)
	if made && errors.Is(err, os.ErrNotExist) {
		dir = existing(tree)
	}
	t, err := rootfs.ProbeBtrfs(dir)
	switch {
	case err != nil:
		return err.Error(), false
	case !t.Btrfs:
		return "not on btrfs", false
	case dir == tree && !t.Subvolume:
		return tree + " is not a btrfs subvolume", false
	case !t.QuotaOn:
		mp, _, _ := rootfs.MountOf(dir)
		return "quotas are off on its btrfs (btrfs quota enable " + mp + ")", false
	}
	return "a btrfs subvolume with a qgroup limit", true
}

// CheckDisk checks that every tenant's disk limits in c can be enforced
// on this host. With limits_enforcement strict the problems are returned
// (each a *config.Error: check and serve exit 2); with best-effort they
// are warnings.
func CheckDisk(c *config.Config) (warnings []string, err error) {
	var errs []error
	for _, n := range c.Names() {
		if _, e := ChooseDisk(c.StateDir, c.DiskQuota, c.Users[n]); e != nil {
			if c.LimitsEnforcement == "best-effort" {
				warnings = append(warnings, e.Error())
			} else {
				errs = append(errs, e)
			}
		}
	}
	return warnings, errors.Join(errs...)
}

// applyDisk puts u's disk quota on her tree before her first process
// runs, and returns the quota her layer must carry (image backend).
func (p *Provisioner) applyDisk(u *config.User) (rootfs.Quota, error) {
	mode, strict := config.DiskQuotaAuto, true
	if p.current != nil {
		if c := p.current(); c != nil {
			mode, strict = c.DiskQuota, c.LimitsEnforcement != "best-effort"
		}
	}
	ch, err := ChooseDisk(p.stateDir, mode, u)
	if err != nil && (strict || ch.Backend == "") {
		if strict {
			return rootfs.Quota{}, err
		}
		p.warnOnce(u.Name, err)
		return rootfs.Quota{}, nil
	} else if err != nil {
		p.warnOnce(u.Name, err)
	}
	q := rootfs.Quota{Backend: ch.Backend, Bytes: u.Disk.Bytes, Inodes: u.Disk.Inodes}
	if ch.Backend != config.DiskQuotaBtrfs && ch.Backend != config.DiskQuotaProject {
		return q, nil
	}
	if u.Image != "" {
		// Her layer dir: a subvolume (btrfsServes), or the directory her
		// project id is set on, which her upper and work dirs inherit.
		if err := rootfs.MakeTree(ch.Tree, 0o700); err != nil {
			return q, err
		}
	}
	if ch.Backend == config.DiskQuotaProject {
		ids, err := p.idMap(u) // her project id comes from her id range
		if err != nil {
			return q, err
		}
		return q, rootfs.ApplyProject(p.stateDir, u.Name, ch.Tree, ids.UID, ids.Size, q)
	}
	return q, rootfs.SetBtrfsLimit(ch.Tree, u.Disk.Bytes)
}

// DiskUsage reads what u's tree holds against her disk quota: her rootfs:
// directory's, or her layer's (her disk image or subvolume). ok is false
// where no quota bounds her tree. It serves gateway.Options.DiskUsage,
// /metrics and status alike.
func DiskUsage(stateDir string, u *config.User) (us rootfs.Usage, ok bool, err error) {
	tree := u.Rootfs
	if u.Image != "" {
		tree = "" // her layer: TenantUsage finds her image or subvolume
	}
	return rootfs.TenantUsage(stateDir, u.Name, tree)
}

// DiskUsages reads DiskUsage for every tenant of c under a quota, by
// tenant (the /metrics gauges).
func DiskUsages(c *config.Config) map[string]rootfs.Usage {
	out := map[string]rootfs.Usage{}
	for _, n := range c.Names() {
		if us, ok, err := DiskUsage(c.StateDir, c.Users[n]); ok && err == nil {
			out[n] = us
		}
	}
	return out
}

// ApplyDiskLimits applies c's disk limits live (a reload that changed
// limits.disk): a btrfs tree's qgroup takes its new limit at once (none,
// if her limits are gone); her mounted disk image grows, online where the
// host allows, and a lowered size is refused with the reason. A tree not
// made yet, or an image not mounted, takes them at her next login. The
// errors say, per tenant, what was not applied.
func (p *Provisioner) ApplyDiskLimits(c *config.Config) error {
	var errs []error
	for _, n := range c.Names() {
		if err := p.applyLive(c, c.Users[n]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// applyLive applies u's disk limits to her tree as it is now: one whose
// tree carries no project id or subvolume yet takes them at her next
// login.
func (p *Provisioner) applyLive(c *config.Config, u *config.User) error {
	if !u.Disk.Set() {
		// Limits gone: a btrfs or project tree she has keeps no stale limit.
		us, ok, _ := DiskUsage(c.StateDir, u)
		switch {
		case ok && us.Backend == rootfs.QuotaBtrfs && us.BytesLimit > 0:
			return p.setBtrfs(u, c.StateDir, 0)
		case ok && us.Backend == rootfs.QuotaProject:
			return setProject(u, c.StateDir, rootfs.Quota{Backend: rootfs.QuotaProject})
		}
		return nil
	}
	ch, err := ChooseDisk(c.StateDir, c.DiskQuota, u)
	switch {
	case ch.Backend == config.DiskQuotaProject:
		return setProject(u, c.StateDir, rootfs.Quota{Backend: ch.Backend, Bytes: u.Disk.Bytes, Inodes: u.Disk.Inodes})
	case ch.Backend == config.DiskQuotaBtrfs:
		if _, err := os.Lstat(ch.Tree); err != nil {
			return nil // made, with her limit, at her next login
		}
		return p.setBtrfs(u, c.StateDir, u.Disk.Bytes)
	case ch.Backend == config.DiskQuotaImage:
		p.mu.Lock()
		layers := p.layers
		p.mu.Unlock()
		if layers == nil {
			return nil
		}
		return layers.Requota(u.Name, rootfs.Quota{Backend: ch.Backend, Bytes: u.Disk.Bytes, Inodes: u.Disk.Inodes})
	}
	return err
}

// setBtrfs sets u's btrfs tree's qgroup limit to bytes, logging a change.
func (p *Provisioner) setBtrfs(u *config.User, stateDir string, bytes int64) error {
	tree := diskTree(stateDir, u)
	if us, ok, _ := DiskUsage(stateDir, u); ok && us.BytesLimit == bytes {
		return nil // in force already: nothing to say
	}
	if err := rootfs.SetBtrfsLimit(tree, bytes); err != nil {
		return err
	}
	slog.Info("disk quota applied", "tenant", u.Name, "backend", rootfs.QuotaBtrfs, "limit", bytes)
	return nil
}

// setProject sets u's project limits to q where her tree carries her
// project id already (else her next login sets both), logging a change.
func setProject(u *config.User, stateDir string, q rootfs.Quota) error {
	us, ok, _ := DiskUsage(stateDir, u)
	if !ok || (us.BytesLimit == (q.Bytes+1023)&^1023 && us.InodesLimit == q.Inodes) {
		return nil // no id on her tree yet, or in force already: nothing to say
	}
	if err := rootfs.SetTenantProjectLimit(stateDir, u.Name, diskTree(stateDir, u), q); err != nil {
		return err
	}
	slog.Info("disk quota applied", "tenant", u.Name, "backend", rootfs.QuotaProject, "limit", q.Bytes, "inodes", q.Inodes)
	return nil
}
