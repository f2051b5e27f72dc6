package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jailgate/jailgate/statedir"
)

// validate runs every check and records every problem.
func (p *parser) validate(c *Config) {
	p.checkListen(c)
	if !filepath.IsAbs(c.StateDir) {
		p.add(p.fieldPos("state_dir"), "state_dir", "%q must be an absolute path", c.StateDir)
	}
	if c.LimitsEnforcement != "strict" && c.LimitsEnforcement != "best-effort" {
		p.add(p.fieldPos("limits_enforcement"), "limits_enforcement", "%q is not one of strict, best-effort", c.LimitsEnforcement)
	}
	if c.AuditLog != "" && !filepath.IsAbs(c.AuditLog) {
		p.add(p.fieldPos("audit_log"), "audit_log", "%q must be an absolute path", c.AuditLog)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		p.add(p.fieldPos("log.format"), "log.format", "%q is not one of text, json", c.LogFormat)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		p.add(p.fieldPos("log.level"), "log.level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	if c.NetworkForwarding != ForwardingOff && c.NetworkForwarding != ForwardingAuto {
		p.add(p.fieldPos("network_forwarding"), "network_forwarding", "%q is not one of auto, off", c.NetworkForwarding)
	}
	if !contains(DiskQuotaBackends, c.DiskQuota) {
		p.add(p.fieldPos("disk_quota"), "disk_quota", "%q is not one of %s", c.DiskQuota, strings.Join(DiskQuotaBackends, ", "))
	}
	if c.Revoke != RevokeEndSessions && c.Revoke != RevokeKeepSessions {
		p.add(p.fieldPos("revoke"), "revoke", "%q is not one of end-sessions, keep-sessions", c.Revoke)
	}
	if c.Prestart > MaxPrestart {
		p.add(p.fieldPos("prestart"), "prestart", "%d is more than %d (each waiting environment holds an init's memory)", c.Prestart, MaxPrestart)
	}
	p.haveCAs = len(c.TrustedUserCAKeys) > 0 // certificates can stand in for keys
	p.stateDir, p.diskQuota = c.StateDir, c.DiskQuota
	names := c.Names()
	for _, n := range names {
		u := c.Users[n]
		if !tenantName.MatchString(n) {
			// Everything else derives from the name ({user}); one line is enough.
			p.add(u.Pos, "users."+n, "%q is not a valid tenant name (want %s)", n, tenantName)
			continue
		}
		for _, check := range userChecks {
			check(p, u, "users."+n)
		}
	}
	p.checkSharedRootfs(c, names)
	p.checkNestedRootfs(c, names)
	p.checkRanges(c, names)
}

// checkListen wants host:port with a valid port.
func (p *parser) checkListen(c *Config) {
	check := func(field, v, example string) {
		host, port, err := net.SplitHostPort(v)
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil || n < 0 || n > 65535 || strings.ContainsAny(host, " /") {
			p.add(p.fieldPos(field), field, "%q is not address:port (use e.g. %s)", v, example)
		}
	}
	check("listen", c.Listen, "0.0.0.0:2222")
	if c.MetricsListen != "" {
		check("metrics_listen", c.MetricsListen, "127.0.0.1:9222")
	}
}

// userChecks are the per-tenant checks, in order.
var userChecks = []func(p *parser, u *User, path string){
	(*parser).checkKeys,
	(*parser).checkRootfs,
	(*parser).checkShell,
	(*parser).checkHostname,
	(*parser).checkModes,
	(*parser).checkDisk,
}

// tenantName is a conservative Unix user name.
var tenantName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

func (p *parser) checkKeys(u *User, path string) {
	if _, listed := p.pos[path+".keys"]; !listed && len(u.Keys) == 0 && u.KeysFile == "" && !p.haveCAs {
		p.add(u.Pos, path, "no keys: set keys or keys_file (or trusted_user_ca_keys)")
	}
}

func (p *parser) checkRootfs(u *User, path string) {
	field := path + ".rootfs"
	pos := p.fieldPos(field)
	if u.Image != "" {
		f := path + ".image"
		switch {
		case u.Rootfs != "":
			p.add(p.fieldPos(f), f, "set rootfs or image, not both")
		case !imageName.MatchString(u.Image):
			p.add(p.fieldPos(f), f, "%q is not an image name (want %s)", u.Image, imageName)
		default:
			state := statedir.New(p.stateDir)
			if fi, err := os.Lstat(state.Image(u.Image)); err != nil || !fi.IsDir() {
				p.add(p.fieldPos(f), f, "no image %q in %s (build it with: jailgate rootfs from-host --image %s --config FILE)",
					u.Image, state.Images(), u.Image)
			}
		}
		return
	}
	switch {
	case u.Rootfs == "":
		p.add(u.Pos, field, "missing: every tenant needs a root filesystem (rootfs or image)")
		return
	case !filepath.IsAbs(u.Rootfs):
		p.add(pos, field, "%q must be an absolute path", u.Rootfs)
		return
	case filepath.Clean(u.Rootfs) != u.Rootfs:
		p.add(pos, field, "%q is not a clean path (want %s)", u.Rootfs, filepath.Clean(u.Rootfs))
		return
	}
	fi, err := os.Lstat(u.Rootfs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		p.add(pos, field, "%s: no such directory", u.Rootfs)
	case err != nil:
		p.add(pos, field, "%v", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		p.add(pos, field, "%s is a symlink; name the directory itself", u.Rootfs)
	case !fi.IsDir():
		p.add(pos, field, "%s is not a directory", u.Rootfs)
	}
}

func (p *parser) checkShell(u *User, path string) {
	if !strings.HasPrefix(u.Shell, "/") {
		p.add(p.fieldPos(path+".shell"), path+".shell", "%q must be an absolute path inside the rootfs", u.Shell)
	}
}

// imageName is an image's directory name under state_dir/images.
var imageName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// hostnameLabel is one RFC 1123 label.
var hostnameLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

func (p *parser) checkHostname(u *User, path string) {
	ok := len(u.Hostname) > 0 && len(u.Hostname) <= 64
	for _, l := range strings.Split(u.Hostname, ".") {
		ok = ok && hostnameLabel.MatchString(l)
	}
	if !ok {
		p.add(p.fieldPos(path+".hostname"), path+".hostname", "%q is not a valid hostname", u.Hostname)
	}
}

func (p *parser) checkModes(u *User, path string) {
	switch u.Environment {
	case EnvTenant, EnvConnection, EnvSession:
	default:
		f := path + ".environment"
		p.add(p.fieldPos(f), f, "%q is not one of tenant, connection, session", u.Environment)
	}
	if u.Seccomp != SeccompDefault && u.Seccomp != SeccompUnconfined {
		f := path + ".seccomp"
		p.add(p.fieldPos(f), f, "%q is not one of default, unconfined", u.Seccomp)
	}
	p.checkNetwork(u, path)
}

// MinImageDisk is the smallest limits.disk the image backend makes an
// image of: an ext4 file system with its journal and one tree in it.
const MinImageDisk = 16 << 20

// checkDisk checks what the config alone can say about u's disk limits;
// whether this host can enforce them is provision.CheckDisk's.
func (p *parser) checkDisk(u *User, path string) {
	if !u.Disk.Set() {
		return
	}
	disk, inodes := path+".limits.disk", path+".limits.inodes"
	field := disk
	if u.Disk.Bytes == 0 {
		field = inodes
	}
	image := p.diskQuota == DiskQuotaImage || (p.diskQuota == DiskQuotaAuto && u.Image != "")
	switch {
	case p.diskQuota == DiskQuotaImage && u.Image == "":
		p.add(p.fieldPos(field), field, "disk_quota: image serves image: tenants only (her layer is jailgate's own); "+
			"her rootfs: tree needs disk_quota: project or btrfs (or auto)")
	case p.diskQuota == DiskQuotaImage && u.Disk.Bytes == 0:
		p.add(p.fieldPos(inodes), inodes, "the image backend needs limits.disk too: it is the size of her image")
	case image && u.Disk.Bytes > 0 && u.Disk.Bytes < MinImageDisk:
		p.add(p.fieldPos(disk), disk, "%s is below %s, the smallest disk image (an ext4 file system with its journal)",
			FormatSize(u.Disk.Bytes), FormatSize(MinImageDisk))
	}
}

// checkSharedRootfs refuses a rootfs named by two tenants: each tenant's
// tree is shifted into her own id range.
func (p *parser) checkSharedRootfs(c *Config, names []string) {
	owner := map[string]string{}
	for _, n := range names {
		u := c.Users[n]
		if u.Rootfs == "" || u.Image != "" {
			continue
		}
		if first, ok := owner[u.Rootfs]; ok {
			f := "users." + n + ".rootfs"
			p.add(p.fieldPos(f), f, "%s is already the rootfs of %s; tenants cannot share one", u.Rootfs, first)
			continue
		}
		owner[u.Rootfs] = n
	}
}

// checkNestedRootfs refuses a rootfs inside another tenant's rootfs: the
// outer tenant would reach the inner one's files (her root owns the tree
// they are in, and the ownership shift of one would rewrite the other's).
// Paths are compared as written and, where they resolve, with symlinks
// followed, so a symlinked parent directory does not hide a nesting.
func (p *parser) checkNestedRootfs(c *Config, names []string) {
	type tree struct{ name, path, real string }
	var trees []tree
	for _, n := range names {
		u := c.Users[n]
		if u.Rootfs == "" || u.Image != "" || !filepath.IsAbs(u.Rootfs) {
			continue
		}
		real, err := filepath.EvalSymlinks(u.Rootfs)
		if err != nil {
			real = u.Rootfs
		}
		trees = append(trees, tree{n, u.Rootfs, real})
	}
	for _, in := range trees {
		for _, out := range trees {
			if in.name != out.name && (within(in.path, out.path) || within(in.real, out.real)) {
				f := "users." + in.name + ".rootfs"
				p.add(p.fieldPos(f), f, "%s is inside %s, the rootfs of %s; one tenant's tree cannot hold another's", in.path, out.path, out.name)
				break
			}
		}
	}
}

// within reports whether path is strictly below dir.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
}

// checkRanges refuses explicit uid_base ranges that overlap.
func (p *parser) checkRanges(c *Config, names []string) {
	type rng struct {
		name   string
		lo, hi uint64
	}
	var rs []rng
	for _, n := range names {
		u := c.Users[n]
		if u.UIDBase != 0 {
			rs = append(rs, rng{n, uint64(u.UIDBase), uint64(u.UIDBase) + uint64(u.IDRange)})
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].lo < rs[j].lo })
	for i := 1; i < len(rs); i++ {
		if rs[i].lo < rs[i-1].hi {
			f := "users." + rs[i].name + ".uid_base"
			p.add(p.fieldPos(f), f, "range %d-%d overlaps %s's range", rs[i].lo, rs[i].hi-1, rs[i-1].name)
		}
	}
}

// Summary is one line describing the tenant, for `jailgate check`.
func (u *User) Summary() string {
	n := len(u.Keys)
	plural := "s"
	if n == 1 {
		plural = ""
	}
	tree := "rootfs " + u.Rootfs
	if u.Image != "" {
		tree = "image " + u.Image
	}
	return fmt.Sprintf("%s: %d key%s, %s, shell %s, hostname %s, environment %s, limits %s",
		u.Name, n, plural, tree, u.Shell, u.Hostname, u.Environment, u.AllLimitsText())
}
