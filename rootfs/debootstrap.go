package rootfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

// DefaultSuite is the Debian release Debootstrap installs unless told.
const DefaultSuite = "bookworm"

// DefaultMirror is the Debian mirror Debootstrap uses unless told: the
// CDN that redirects to a mirror near the host.
const DefaultMirror = "http://deb.debian.org/debian"

// DebootstrapOptions tune Debootstrap.
type DebootstrapOptions struct {
	Suite      string   // Debian release (codename or suite); default DefaultSuite
	Mirror     string   // http, https or file URL of a Debian archive; default DefaultMirror
	Include    []string // more packages to install
	KeepSetuid bool     // keep setuid/setgid bits (default: stripped, as Import does)
	// Command is the debootstrap program; default: "debootstrap" on
	// $PATH or in /usr/sbin or /sbin (root's PATH may lack the sbin dirs).
	Command string
	// Progress, if set, receives each line debootstrap prints, parsed.
	Progress func(Progress)
	// Log, if set, receives a line per step of the preparation after it.
	Log func(format string, args ...any)
}

// Progress is one line of debootstrap's output: "I: Retrieving libc6
// 2.36-9" is Level 'I', Stage "Retrieving", Detail "libc6 2.36-9".
type Progress struct {
	Level  byte   // 'I' information, 'W' warning, 'E' error; 0 for any other line
	Stage  string // one of stages, or "" when the line names none
	Detail string // the rest of the message
	Line   string // the line as debootstrap printed it
}

// stages are the steps debootstrap announces, in about the order it
// takes them: the first word of its "I:" lines.
var stages = []string{"Retrieving", "Validating", "Checking", "Resolving", "Found", "Chosen",
	"Extracting", "Installing", "Unpacking", "Configuring", "Base"}

// ParseProgress parses one line of debootstrap's output.
func ParseProgress(line string) Progress {
	line = strings.TrimRight(line, " \r\n")
	p := Progress{Line: line}
	if len(line) < 3 || line[1] != ':' || line[2] != ' ' || !strings.ContainsRune("IWE", rune(line[0])) {
		return p
	}
	p.Level = line[0]
	msg := strings.TrimSpace(line[3:])
	word, rest, _ := strings.Cut(msg, " ")
	if p.Level == 'I' {
		for _, s := range stages {
			if word == s {
				p.Stage, p.Detail = s, strings.TrimSuffix(strings.TrimSpace(rest), "...")
				return p
			}
		}
	}
	p.Detail = msg
	return p
}

var (
	suiteName   = regexp.MustCompile(`^[a-z][a-z0-9.-]*$`)
	packageName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`) // Debian policy 5.6.1
)

// Debootstrap installs a minimal Debian system (debootstrap
// --variant=minbase) into dir, which must not exist or be empty, then
// prepares it as images are prepared: device nodes, fifos and sockets
// removed (the jail gives /dev its own), setuid and setgid bits stripped
// unless KeepSetuid, the downloaded .deb files removed. Run it on a
// temporary directory and rename that into place: it leaves the tree
// half-built when it fails.
//
// Debootstrap runs in a mount namespace of its own, so the /proc and
// /sys it mounts in the tree vanish with it, even if it is killed; when
// ctx is done its whole process group is killed.
func Debootstrap(ctx context.Context, dir string, opts DebootstrapOptions) error {
	if err := debootstrap(ctx, dir, opts); err != nil {
		return fmt.Errorf("rootfs: debootstrap %s: %w", dir, err)
	}
	return nil
}

func debootstrap(ctx context.Context, dir string, opts DebootstrapOptions) error {
	if opts.Suite == "" {
		opts.Suite = DefaultSuite
	}
	if opts.Mirror == "" {
		opts.Mirror = DefaultMirror
	}
	if !suiteName.MatchString(opts.Suite) {
		return fmt.Errorf("suite %q: not a Debian release name (e.g. bookworm, trixie, stable)", opts.Suite)
	}
	if u, err := url.Parse(opts.Mirror); err != nil || u.Host == "" && u.Scheme != "file" ||
		u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file" {
		return fmt.Errorf("mirror %q: want an http, https or file URL, e.g. %s", opts.Mirror, DefaultMirror)
	}
	args := []string{"--variant=minbase"}
	if len(opts.Include) > 0 {
		for _, p := range opts.Include {
			if !packageName.MatchString(p) {
				return fmt.Errorf("--include: %q is not a Debian package name", p)
			}
		}
		args = append(args, "--include="+strings.Join(opts.Include, ","))
	}
	args = append(args, opts.Suite, dir, opts.Mirror)
	bin, err := findDebootstrap(opts.Command)
	if err != nil {
		return err
	}
	// debootstrap makes a missing target a plain directory: made here, a
	// subvolume on btrfs (her disk quota's tree, if a tenant's).
	if err := MakeTree(dir, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	// Plain English lines to parse; dpkg must not ask anything.
	cmd.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	isolate(cmd)
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return err
	}
	var errs, tail []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		p := ParseProgress(sc.Text())
		if p.Line == "" {
			continue
		}
		if opts.Progress != nil {
			opts.Progress(p)
		}
		if p.Level == 'E' {
			errs = append(errs, p.Detail)
		}
		if tail = append(tail, p.Line); len(tail) > 3 {
			tail = tail[1:]
		}
	}
	r.Close()
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("stopped before it finished: %w", ctx.Err())
		}
		why := strings.Join(errs, "; ")
		if why == "" {
			why = strings.Join(tail, " / ")
		}
		return fmt.Errorf("%s from %s: %s: %w: %s", opts.Suite, opts.Mirror, bin, err, why)
	}
	return finishImage(dir, opts.KeepSetuid, opts.Log)
}

// debootstrapPaths are where debootstrap is looked for off $PATH.
var debootstrapPaths = []string{"/usr/sbin/debootstrap", "/sbin/debootstrap"}

// findDebootstrap finds the debootstrap program, or says how to get it.
func findDebootstrap(command string) (string, error) {
	if command != "" {
		p, err := exec.LookPath(command)
		if err != nil {
			return "", fmt.Errorf("%s: %w", command, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("debootstrap"); err == nil {
		return p, nil
	}
	for _, p := range debootstrapPaths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("debootstrap not found on $PATH nor in /usr/sbin (install it: apt-get install debootstrap)")
}

// finishImage prepares a tree built by a tool that ran as host root for
// use as an image, by the rules Import applies to each entry of a
// tarball: no device nodes, fifos or sockets (a device node in an image
// would be the host's device; the jail mounts a /dev of its own), no
// setuid or setgid files unless keepSetuid. It also drops the .deb files
// apt keeps (apt-get clean): they only take room in every image.
func finishImage(dir string, keepSetuid bool, logf func(string, ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	var dropped, stripped int
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch t := d.Type(); {
		case t&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0:
			if err := root.Remove(p); err != nil {
				return err
			}
			dropped++
		case t.IsRegular() && !keepSetuid:
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) == 0 {
				return nil
			}
			if err := root.Chmod(p, fi.Mode()&(fs.ModePerm|fs.ModeSticky)); err != nil {
				return err
			}
			stripped++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("prepare the image: %w", err)
	}
	debs, _ := fs.Glob(root.FS(), "var/cache/apt/archives/*.deb")
	for _, p := range debs {
		if err := root.Remove(p); err != nil {
			return fmt.Errorf("prepare the image: %w", err)
		}
	}
	logf("removed %d device nodes, fifos and sockets; stripped setuid/setgid from %d files; removed %d cached .deb files",
		dropped, stripped, len(debs))
	return nil
}
