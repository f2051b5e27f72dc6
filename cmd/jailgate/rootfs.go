package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/rootfs"
	"github.com/jailgate/jailgate/statedir"
)

const rootfsUsage = "rootfs: want a subcommand: from-host, debootstrap, import, list, rm"

// cmdRootfs handles `jailgate rootfs …`.
func cmdRootfs(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &usageError{rootfsUsage}
	}
	switch args[0] {
	case "from-host":
		return cmdFromHost(args[1:], stderr)
	case "debootstrap":
		return cmdDebootstrap(args[1:], stderr)
	case "import":
		return cmdImport(args[1:], stderr)
	case "list":
		return cmdImages(args[1:], stdout)
	case "rm":
		return cmdImageRm(args[1:])
	}
	return &usageError{rootfsUsage}
}

// parseFlags parses args with fset, flags before, between or after the
// positional arguments (`rootfs import NAME FILE --config F`), and
// returns the positional ones.
func parseFlags(fset *flag.FlagSet, args []string) ([]string, error) {
	fset.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fset.Parse(args); err != nil {
			return nil, flagError(fset, err)
		}
		if fset.NArg() == 0 {
			return pos, nil
		}
		pos, args = append(pos, fset.Arg(0)), fset.Args()[1:]
	}
}

// cmdFromHost builds a tree, or an image, from the host's binaries.
func cmdFromHost(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("rootfs from-host", flag.ContinueOnError)
	var opts rootfs.FromHostOptions
	fs.Func("with", "more programs to include, with their data (comma-separated; may be repeated)", func(v string) error {
		for _, name := range strings.Split(v, ",") {
			if name != "" {
				opts.With = append(opts.With, name)
			}
		}
		return nil
	})
	minimal := fs.Bool("minimal", false, "only a shell's basic commands and their libraries (no python, perl, git, curl, package data)")
	quiet := fs.Bool("q", false, "no progress output")
	image := fs.String("image", "", "build the shared image NAME under the config's state_dir/images")
	cfgPath := fs.String("config", "/etc/jailgate/jailgate.yaml", "configuration file (with --image)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	opts.Lab = !*minimal
	if !*quiet {
		p := newProgress(stderr)
		defer p.end()
		opts.Log, opts.Status = p.printf, p.setStatus
	}
	switch {
	case *image != "" && len(rest) == 0:
		stateDir, err := config.StateDirOf(*cfgPath)
		if err != nil {
			return err
		}
		dir, err := imageDir(stateDir, *image)
		if err != nil {
			return err
		}
		return buildImage(dir, func(tmp string) error { return rootfs.FromHost(tmp, opts) })
	case *image != "" || len(rest) != 1:
		return &usageError{"rootfs from-host: want [--with PROG,...] [--minimal] [-q] DIR, or the same with --image NAME --config FILE instead of DIR"}
	}
	return rootfs.FromHost(rest[0], opts)
}

// buildImage builds an image beside its place and renames it in, so a
// failed build leaves nothing half-built where tenants would find it.
func buildImage(dir string, build func(tmp string) error) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp := dir + ".building"
	os.RemoveAll(tmp)
	if err := build(tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	os.RemoveAll(dir + ".old")
	if _, err := os.Stat(dir); err == nil {
		if err := os.Rename(dir, dir+".old"); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return os.RemoveAll(dir + ".old")
}

// imageName is the rule config applies to `image:` values; a name from
// the command line is held to it too, or "../x" would build, or remove,
// outside state_dir/images.
var imageName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// imageDir is image name's directory under stateDir, for a valid name.
func imageDir(stateDir, name string) (string, error) {
	if !imageName.MatchString(name) || strings.Contains(name, ".building") || strings.HasSuffix(name, ".old") {
		return "", &usageError{fmt.Sprintf("%q is not an image name (want %s, without .building and not ending in .old)", name, imageName)}
	}
	return statedir.New(stateDir).Image(name), nil
}

// imageFlags parses --config (and the caller's extra flags) and returns
// the configuration's state directory and the positional arguments. Only
// state_dir is read: the images are what a valid config needs to exist.
func imageFlags(name string, args []string, extra func(*flag.FlagSet)) (string, []string, error) {
	fset := flag.NewFlagSet(name, flag.ContinueOnError)
	path := fset.String("config", "/etc/jailgate/jailgate.yaml", "configuration file")
	if extra != nil {
		extra(fset)
	}
	rest, err := parseFlags(fset, args)
	if err != nil {
		return "", nil, err
	}
	stateDir, err := config.StateDirOf(*path)
	return stateDir, rest, err
}

// cmdDebootstrap builds image NAME with debootstrap.
func cmdDebootstrap(args []string, stderr io.Writer) error {
	var opts rootfs.DebootstrapOptions
	var include string
	stateDir, rest, err := imageFlags("rootfs debootstrap", args, func(f *flag.FlagSet) {
		f.StringVar(&opts.Suite, "suite", rootfs.DefaultSuite, "Debian release")
		f.StringVar(&opts.Mirror, "mirror", rootfs.DefaultMirror, "Debian mirror")
		f.StringVar(&include, "include", "", "more packages, comma-separated")
		f.BoolVar(&opts.KeepSetuid, "keep-setuid", false, "keep setuid and setgid bits")
	})
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return &usageError{"rootfs debootstrap: want NAME [--suite S] [--mirror URL] [--include PKG,...] [--keep-setuid] --config FILE"}
	}
	dir, err := imageDir(stateDir, rest[0])
	if err != nil {
		return err
	}
	if include != "" {
		opts.Include = strings.Split(include, ",")
	}
	// Ctrl-C or SIGTERM kill debootstrap, and buildImage removes the tree.
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	defer stop()
	p := newProgress(stderr)
	opts.Progress, opts.Log = p.show, p.printf
	p.printf("debootstrap %s from %s into %s", opts.Suite, opts.Mirror, dir)
	err = buildImage(dir, func(tmp string) error { return rootfs.Debootstrap(ctx, tmp, opts) })
	p.end()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "built image %s (Debian %s) in %s\n", rest[0], opts.Suite, time.Since(p.start).Round(time.Second))
	return nil
}

// progress shows debootstrap's progress: on a terminal, one status line
// (its stage and package, the time taken and a spinner that turns while
// it works) with warnings and errors printed above it; else its lines as
// they come, for a log.
type progress struct {
	w     io.Writer
	start time.Time
	width int // the terminal's columns; 0: not a terminal

	mu     sync.Mutex
	status string
	turn   int
	stop   chan struct{}
	wg     sync.WaitGroup
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, start: time.Now()}
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return p
	}
	if p.width, _, _ = term.GetSize(int(f.Fd())); p.width < 20 {
		p.width = 80
	}
	p.stop = make(chan struct{})
	p.wg.Go(func() {
		t := time.NewTicker(150 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.mu.Lock()
				p.turn++
				p.draw()
				p.mu.Unlock()
			}
		}
	})
	return p
}

// show takes one line of debootstrap's.
func (p *progress) show(pr rootfs.Progress) {
	if p.width == 0 {
		fmt.Fprintln(p.w, pr.Line)
		return
	}
	if pr.Level != 'I' {
		p.printf("%s", pr.Line)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = strings.TrimSpace(pr.Stage + " " + pr.Detail)
	p.draw()
}

// setStatus sets the status line, drawn at the spinner's next turn (it
// may be called for every file copied); nothing when not on a terminal.
func (p *progress) setStatus(s string) {
	if p.width == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = s
}

// printf prints a line; on a terminal above the status line.
func (p *progress) printf(format string, a ...any) {
	if p.width == 0 {
		fmt.Fprintf(p.w, format+"\n", a...)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\r\x1b[K"+format+"\n", a...)
	p.draw()
}

// draw redraws the status line, cut to the terminal's width so that it
// never wraps (a wrapped line could not be redrawn in place).
func (p *progress) draw() {
	line := []rune(fmt.Sprintf("%c %4s  %s", `|/-\`[p.turn%4], time.Since(p.start).Round(time.Second), p.status))
	if len(line) >= p.width {
		line = line[:p.width-1]
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", string(line))
}

// end stops the spinner and clears the status line.
func (p *progress) end() {
	if p.width == 0 {
		return
	}
	close(p.stop)
	p.wg.Wait()
	fmt.Fprint(p.w, "\r\x1b[K")
}

// cmdImport imports a root filesystem tarball or a container image as
// image NAME.
func cmdImport(args []string, stderr io.Writer) error {
	var keep bool
	stateDir, rest, err := imageFlags("rootfs import", args, func(f *flag.FlagSet) {
		f.BoolVar(&keep, "keep-setuid", false, "keep setuid and setgid bits")
	})
	if err != nil {
		return err
	}
	if len(rest) != 2 {
		return &usageError{"rootfs import: want NAME FILE (a .tar, .tar.gz or .tar.zst root filesystem, an OCI image layout or archive, or docker save output)"}
	}
	dir, err := imageDir(stateDir, rest[0])
	if err != nil {
		return err
	}
	opts := rootfs.ImportOptions{KeepSetuid: keep, Log: func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }}
	return buildImage(dir, func(tmp string) error {
		st, err := rootfs.ImportFile(tmp, rest[1], opts)
		fmt.Fprintf(stderr, "imported %d files, %d dirs, %d links; applied %d whiteouts; skipped %d\n",
			st.Files, st.Dirs, st.Links, st.Whiteouts, st.Skipped)
		return err
	})
}

// cmdImages lists the images with their size and creation time.
func cmdImages(args []string, stdout io.Writer) error {
	stateDir, _, err := imageFlags("rootfs list", args, nil)
	if err != nil {
		return err
	}
	dir := statedir.New(stateDir).Images()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !e.IsDir() || strings.Contains(e.Name(), ".building") {
			continue
		}
		size := treeSize(filepath.Join(dir, e.Name()))
		fi, _ := e.Info()
		fmt.Fprintf(stdout, "%s\t%s\t%s\n", e.Name(), config.FormatSize(size), fi.ModTime().Format(time.RFC3339))
	}
	return nil
}

// cmdImageRm removes an image no tenant of the (valid) configuration uses.
func cmdImageRm(args []string) error {
	fset := flag.NewFlagSet("rootfs rm", flag.ContinueOnError)
	path := fset.String("config", "/etc/jailgate/jailgate.yaml", "configuration file")
	rest, err := parseFlags(fset, args)
	if err != nil || len(rest) != 1 {
		return &usageError{"rootfs rm: want --config FILE NAME"}
	}
	c, err := loadConfig(*path)
	if err != nil {
		return err
	}
	name := rest[0]
	dir, err := imageDir(c.StateDir, name)
	if err != nil {
		return err
	}
	for _, n := range c.Names() {
		if c.Users[n].Image == name {
			return fmt.Errorf("rootfs rm %s: tenant %s uses it (change her image first)", name, n)
		}
	}
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("rootfs rm: %w", err)
	}
	return os.RemoveAll(dir)
}
