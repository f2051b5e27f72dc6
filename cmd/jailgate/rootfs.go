package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"os"
	"path/filepath"
	"strings"

	"github.com/jailgate/jailgate/config"

	"github.com/jailgate/jailgate/rootfs"
)

// cmdRootfs handles `jailgate rootfs …`.
func cmdRootfs(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &usageError{"rootfs: want a subcommand: from-host, import, list, rm"}
	}
	switch args[0] {
	case "import":
		return cmdImport(args[1:], stderr)
	case "list":
		return cmdImages(args[1:], stdout)
	case "rm":
		return cmdImageRm(args[1:])
	case "from-host":
	default:
		return &usageError{"rootfs: want a subcommand: from-host, import, list, rm"}
	}
	fs := flag.NewFlagSet("rootfs from-host", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	with := fs.String("with", "", "extra commands to include, comma-separated")
	quiet := fs.Bool("q", false, "no progress output")
	image := fs.String("image", "", "build the shared image NAME under the config's state_dir/images")
	cfgPath := fs.String("config", "/etc/jailgate/jailgate.yaml", "configuration file (with --image)")
	if err := fs.Parse(args[1:]); err != nil {
		return &usageError{fmt.Sprintf("rootfs from-host: %v", err)}
	}
	dir := fs.Arg(0)
	switch {
	case *image != "" && fs.NArg() == 0:
		stateDir, err := config.StateDirOf(*cfgPath)
		if err != nil {
			return err
		}
		dir = rootfs.ImageDir(stateDir, *image)
	case *image != "" || fs.NArg() != 1:
		return &usageError{"rootfs from-host: want exactly one DIR, or --image NAME --config FILE"}
	}
	opts := rootfs.FromHostOptions{}
	if *with != "" {
		opts.With = strings.Split(*with, ",")
	}
	if !*quiet {
		opts.Log = func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	}
	if *image == "" {
		return rootfs.FromHost(dir, opts)
	}
	return buildImage(dir, func(tmp string) error { return rootfs.FromHost(tmp, opts) })
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

// imageFlags parses --config (and the caller's extra flags) and returns
// the configuration's state directory and the remaining arguments. Only
// state_dir is read: the images are what a valid config needs to exist.
func imageFlags(name string, args []string, extra func(*flag.FlagSet)) (string, []string, error) {
	fset := flag.NewFlagSet(name, flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	path := fset.String("config", "/etc/jailgate/jailgate.yaml", "configuration file")
	if extra != nil {
		extra(fset)
	}
	if err := fset.Parse(args); err != nil {
		return "", nil, &usageError{fmt.Sprintf("%s: %v", name, err)}
	}
	stateDir, err := config.StateDirOf(*path)
	return stateDir, fset.Args(), err
}

// cmdImport imports a root filesystem tarball as image NAME.
func cmdImport(args []string, stderr io.Writer) error {
	var keep bool
	stateDir, rest, err := imageFlags("rootfs import", args, func(f *flag.FlagSet) {
		f.BoolVar(&keep, "keep-setuid", false, "keep setuid and setgid bits")
	})
	if err != nil {
		return err
	}
	if len(rest) != 2 {
		return &usageError{"rootfs import: want NAME FILE (.tar or .tar.gz)"}
	}
	f, err := os.Open(rest[1])
	if err != nil {
		return err
	}
	defer f.Close()
	opts := rootfs.ImportOptions{KeepSetuid: keep, Log: func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }}
	return buildImage(rootfs.ImageDir(stateDir, rest[0]), func(tmp string) error {
		st, err := rootfs.Import(tmp, f, opts)
		fmt.Fprintf(stderr, "imported %d files, %d dirs, %d links; skipped %d\n", st.Files, st.Dirs, st.Links, st.Skipped)
		return err
	})
}

// cmdImages lists the images with their size and creation time.
func cmdImages(args []string, stdout io.Writer) error {
	stateDir, _, err := imageFlags("rootfs list", args, nil)
	if err != nil {
		return err
	}
	dir := filepath.Dir(rootfs.ImageDir(stateDir, "x"))
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
	fset.SetOutput(io.Discard)
	path := fset.String("config", "/etc/jailgate/jailgate.yaml", "configuration file")
	if err := fset.Parse(args); err != nil || fset.NArg() != 1 {
		return &usageError{"rootfs rm: want --config FILE NAME"}
	}
	c, err := loadConfig(*path)
	if err != nil {
		return err
	}
	name := fset.Arg(0)
	for _, n := range c.Names() {
		if c.Users[n].Image == name {
			return fmt.Errorf("rootfs rm %s: tenant %s uses it (change her image first)", name, n)
		}
	}
	dir := rootfs.ImageDir(c.StateDir, name)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("rootfs rm: %w", err)
	}
	return os.RemoveAll(dir)
}
