package rootfs

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path"
	"strings"
	"time"
)

// This file asks the host's package database which package owns a program
// and which files that package installed, so that a program's data (git's
// templates, vim's runtime, iproute2's tables) comes with it.

// pkgDB is the host's package database.
type pkgDB struct {
	name   string
	owners func(paths []string) map[string][]string // host path to its packages
	files  func(pkgs []string) map[string][]string  // package to its files
}

// hostPkgDB returns dpkg's database, else rpm's, else nil.
func hostPkgDB() *pkgDB {
	if q, err := lookHost("dpkg-query"); err == nil {
		return &pkgDB{name: "dpkg",
			owners: func(paths []string) map[string][]string { return dpkgOwners(q, paths) },
			files:  func(pkgs []string) map[string][]string { return dpkgFiles(q, pkgs) }}
	}
	if q, err := lookHost("rpm"); err == nil {
		return &pkgDB{name: "rpm",
			owners: func(paths []string) map[string][]string { return rpmOwners(q, paths) },
			files: func(pkgs []string) map[string][]string {
				m := map[string][]string{}
				for _, p := range pkgs {
					out, _ := hostOutput(q, "-ql", p)
					m[p] = absLines(out)
				}
				return m
			}}
	}
	return nil
}

// hostOutput runs the host program prog (found by lookHost, with a fixed
// environment) and returns its standard output, even when it fails: the
// package tools exit 1 when one of several names is unknown.
func hostOutput(prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	cmd.Dir = "/"
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	return out.String(), err
}

// absLines returns the lines of out that are absolute paths.
func absLines(out string) []string {
	var paths []string
	for _, l := range strings.Split(out, "\n") {
		if path.IsAbs(l) {
			paths = append(paths, l)
		}
	}
	return paths
}

// dpkgOwners asks `dpkg-query -S` (one run for all paths) which packages
// own paths. Its arguments are glob patterns, so a path with a pattern
// character is not asked about.
func dpkgOwners(q string, paths []string) map[string][]string {
	var args []string
	for _, p := range paths {
		if !strings.ContainsAny(p, "*?[]\\") {
			args = append(args, p)
		}
	}
	owners := map[string][]string{}
	if len(args) == 0 {
		return owners
	}
	out, _ := hostOutput(q, append([]string{"-S"}, args...)...)
	return parseDpkgS(out)
}

// parseDpkgS parses `dpkg-query -S` output: "pkg1, pkg2: /path" lines,
// and "diversion by …" lines, which are skipped.
func parseDpkgS(out string) map[string][]string {
	owners := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		pkgs, p, ok := strings.Cut(l, ": ")
		if !ok || strings.Contains(pkgs, "diversion") || !path.IsAbs(p) {
			continue
		}
		for _, pkg := range strings.Split(pkgs, ", ") {
			owners[p] = append(owners[p], strings.TrimSpace(pkg))
		}
	}
	return owners
}

// dpkgFiles asks `dpkg-query -L` for the files of pkgs: in one run, whose
// output is one list per package separated by blank lines, or one run per
// package if that output does not line up with pkgs.
func dpkgFiles(q string, pkgs []string) map[string][]string {
	m := map[string][]string{}
	out, err := hostOutput(q, append([]string{"-L"}, pkgs...)...)
	if lists := strings.Split(strings.TrimRight(out, "\n"), "\n\n"); err == nil && len(lists) == len(pkgs) {
		for i, l := range lists {
			m[pkgs[i]] = absLines(l)
		}
		return m
	}
	for _, p := range pkgs {
		out, _ := hostOutput(q, "-L", p)
		m[p] = absLines(out)
	}
	return m
}

// rpmOwners asks `rpm -qf` which package owns each path.
func rpmOwners(q string, paths []string) map[string][]string {
	owners := map[string][]string{}
	for _, p := range paths {
		out, err := hostOutput(q, "-qf", "--queryformat", "%{NAME}\n", p)
		if err == nil && strings.TrimSpace(out) != "" {
			owners[p] = strings.Fields(out)
		}
	}
	return owners
}

// skippedData are the host directories a package's files are not copied
// from: documentation, translations (the tree has only C.UTF-8), desktop
// and service-manager files, and /etc, which is the tree's own (FromHost
// writes its files; the tenant edits them).
var skippedData = []string{
	"/etc/", "/usr/share/doc/", "/usr/share/man/", "/usr/share/info/", "/usr/share/lintian/",
	"/usr/share/bug/", "/usr/share/doc-base/", "/usr/share/locale/", "/usr/share/menu/",
	"/usr/share/applications/", "/usr/share/icons/", "/usr/share/pixmaps/", "/usr/lib/systemd/",
	"/lib/systemd/", "/usr/lib/sysusers.d/", "/usr/lib/tmpfiles.d/", "/var/", "/boot/",
}

// packageData reports whether the package file p is copied.
func packageData(p string) bool {
	for _, d := range skippedData {
		if strings.HasPrefix(p, d) {
			return false
		}
	}
	return true
}

// ownerPaths are the paths a package database may list the host program p
// under: p, the file its links lead to, and both without /usr (merged-/usr
// hosts keep /bin/bash in dpkg's lists).
func ownerPaths(p, real string) []string {
	var out []string
	for _, c := range []string{p, real} {
		out = append(out, c)
		if strings.HasPrefix(c, "/usr/") {
			out = append(out, strings.TrimPrefix(c, "/usr"))
		}
	}
	return out
}

// packages copies, for each program in progs, the files of the packages
// that own it, skipping what packageData leaves out. ELF files copied are
// added to queue.
func (b *builder) packages(progs []string, queue *[]object) error {
	db := hostPkgDB()
	if db == nil {
		b.logf("no package database (dpkg, rpm) on the host: only the programs, their libraries and their interpreters' libraries are copied")
		return nil
	}
	cands := map[string][]string{}
	var all []string
	for _, p := range progs {
		real, err := b.install(p)
		if err != nil {
			return err
		}
		cands[p] = ownerPaths(p, real)
		all = append(all, cands[p]...)
	}
	owners := db.owners(all)
	var pkgs []string
	byProg := map[string][]string{}
	seen := map[string]bool{}
	for _, p := range progs {
		for _, c := range cands[p] {
			for _, pkg := range owners[c] {
				if !seen[pkg] {
					seen[pkg] = true
					pkgs = append(pkgs, pkg)
					byProg[p] = append(byProg[p], pkg)
				}
			}
		}
	}
	if len(pkgs) == 0 {
		return nil
	}
	files := db.files(pkgs)
	for _, p := range progs {
		for _, pkg := range byProg[p] {
			err := b.section(fmt.Sprintf("%s: %s package %s", path.Base(p), db.name, pkg), func() error {
				for _, f := range files[pkg] {
					if !packageData(f) {
						continue
					}
					if err := b.dataFile(f, queue); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}
