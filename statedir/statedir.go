// Package statedir is the one map of what jailgate keeps on disk: every
// path under the state directory (state_dir in the config, persistent,
// 0700 root) and under the runtime directory (/run/jailgate, gone at
// reboot). Every package builds these paths through a Layout and nowhere
// else, so two gateways on one host (two state directories) never share a
// file, and a new kind of state has one obvious place to be named.
//
//	state_dir/
//	  ids.json                  tenant id ranges (jail.IDPool)
//	  ssh_host_ed25519_key[.pub] the default host key (keys)
//	  jailgate.sock             the admin socket (jailgate reload)
//	  active.yaml               the configuration in force (check --diff)
//	  active-tenants.json       each tenant's effective settings in force
//	  rootfs/<tenant>.json      the ownership shift of her rootfs: dir (rootfs.Prepare)
//	  images/<name>/            shared read-only images (rootfs import, from-host --image)
//	  tenants/<tenant>/{upper,work}  her persistent layer over an image
//	  tenants/<tenant>/disk.img  or her layer in an ext4 image of limits.disk's size (disk_quota image)
//	  recordings/<tenant>/*.cast her recorded terminal sessions
//	  projects/<tenant>.json    her tree's project id (disk_quota project)
//	  projects/ids/<id>         each project id ever handed out: never reused
//	/run/jailgate/layers/<hash of state_dir>/<tenant>/   her layer's mount points
//	/run/jailgate/envs/<hash of state_dir>/<env>.{json,sock}  each live environment's record and control socket
//	/var/lib/jailgate-host/ids.json  every state_dir's id ranges on this host (jail.IDPool)
//	cgroup jailgate-<hash of state_dir>/<tenant>/<env>    her limits and environments
//
// It imports no project package, so every layer may use it.
package statedir

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strconv"
)

// RuntimeDir is the host's runtime directory of every jailgate: mount
// points and other state that must not outlive a reboot. It is outside any
// state directory because a jail reaches what is mounted there as the
// tenant's unprivileged ids, which need search permission on every
// directory above it, and a state directory is rightly 0700.
const RuntimeDir = "/run/jailgate"

// HostIDs is the host-wide registry of the id ranges every state
// directory's pool handed out (jail.IDPool), with its lock file beside it
// (HostIDs + ".lock"). It lives outside every state directory, which may
// be deleted, and outside RuntimeDir, because ranges outlive a reboot.
const HostIDs = "/var/lib/jailgate-host/ids.json"

// HostKeyName is the default host key's file name in the state directory.
const HostKeyName = "ssh_host_ed25519_key"

// Layout names the files of one state directory. Tenant and image names
// are the config's, which validation keeps to one path element.
type Layout struct {
	Root string // the state directory, absolute
}

// New returns the layout of state directory root.
func New(root string) Layout { return Layout{Root: root} }

// IDs is the tenant id range pool.
func (l Layout) IDs() string { return filepath.Join(l.Root, "ids.json") }

// HostKey is the default host key.
func (l Layout) HostKey() string { return filepath.Join(l.Root, HostKeyName) }

// AdminSocket is the running server's admin socket.
func (l Layout) AdminSocket() string { return filepath.Join(l.Root, "jailgate.sock") }

// ActiveConfig is a copy of the configuration file in force.
func (l Layout) ActiveConfig() string { return filepath.Join(l.Root, "active.yaml") }

// ActiveTenants holds each tenant's effective settings as they were put in
// force.
func (l Layout) ActiveTenants() string { return filepath.Join(l.Root, "active-tenants.json") }

// RootfsRecords holds one record per tenant rootfs whose ownership was shifted.
func (l Layout) RootfsRecords() string { return filepath.Join(l.Root, "rootfs") }

// RootfsRecord is tenant's rootfs record.
func (l Layout) RootfsRecord(tenant string) string {
	return filepath.Join(l.RootfsRecords(), tenant+".json")
}

// Images holds the shared images.
func (l Layout) Images() string { return filepath.Join(l.Root, "images") }

// Image is image name's tree.
func (l Layout) Image(name string) string { return filepath.Join(l.Images(), name) }

// Tenants holds the tenants' persistent layers.
func (l Layout) Tenants() string { return filepath.Join(l.Root, "tenants") }

// Tenant is tenant's persistent layer directory.
func (l Layout) Tenant(tenant string) string { return filepath.Join(l.Tenants(), tenant) }

// TenantUpper holds tenant's changes to her image: her layer's overlay
// upper directory.
func (l Layout) TenantUpper(tenant string) string { return filepath.Join(l.Tenant(tenant), "upper") }

// TenantWork is her layer's overlay work directory.
func (l Layout) TenantWork(tenant string) string { return filepath.Join(l.Tenant(tenant), "work") }

// TenantDiskImage is the ext4 image file that holds tenant's layer (upper
// and work dirs) when the image disk quota backend bounds it.
func (l Layout) TenantDiskImage(tenant string) string {
	return filepath.Join(l.Tenant(tenant), "disk.img")
}

// Projects holds the project ids of the tenants' trees (the project disk
// quota backend).
func (l Layout) Projects() string { return filepath.Join(l.Root, "projects") }

// ProjectRecord is tenant's project id record: the id her tree carries.
func (l Layout) ProjectRecord(tenant string) string {
	return filepath.Join(l.Projects(), tenant+".json")
}

// ProjectClaim marks project id as handed out, to one tenant for good: it
// outlives her record, so a removed tenant's id is never someone else's.
func (l Layout) ProjectClaim(id uint32) string {
	return filepath.Join(l.Projects(), "ids", strconv.FormatUint(uint64(id), 10))
}

// Recordings holds every tenant's recorded sessions.
func (l Layout) Recordings() string { return filepath.Join(l.Root, "recordings") }

// TenantRecordings holds tenant's recorded sessions.
func (l Layout) TenantRecordings(tenant string) string {
	return filepath.Join(l.Recordings(), tenant)
}

// LayerMounts holds the mount points of this state directory's tenant
// layers, under RuntimeDir. The state directory's hash keeps two gateways
// (or test runs) apart.
func (l Layout) LayerMounts() string { return filepath.Join(RuntimeDir, "layers", l.Hash()) }

// Environments holds a record (<env>.json) and the init's control socket
// (<env>.sock) per live environment, under RuntimeDir (0700 root): what a
// restarted or upgraded gateway adopts (jail.Options.RecordDir).
func (l Layout) Environments() string { return filepath.Join(RuntimeDir, "envs", l.Hash()) }

// Cgroup is the parent cgroup, relative to each hierarchy's root, of this
// state directory's tenant cgroups (jail.Options.CgroupPrefix): two
// gateways with different state directories never share a tenant's
// cgroup, her limits, her stats or the stale sweep.
func (l Layout) Cgroup() string { return "jailgate-" + l.Hash() }

// Hash is a short stable name of the state directory (12 hex digits of
// the SHA-256 of its path), for what lives outside it but must be its own.
func (l Layout) Hash() string {
	sum := sha256.Sum256([]byte(l.Root))
	return hex.EncodeToString(sum[:6])
}
