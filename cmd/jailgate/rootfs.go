package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/jailgate/jailgate/rootfs"
)

// cmdRootfs handles `jailgate rootfs …`.
func cmdRootfs(args []string, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "from-host" {
		return &usageError{"rootfs: want a subcommand: from-host"}
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
		c, err := loadConfig(*cfgPath)
		if err != nil {
			return err
		}
		dir = rootfs.ImageDir(c.StateDir, *image)
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
	// An image is built beside its place and renamed in: a failed build
	// leaves nothing half-built where tenants would find it.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp := dir + ".building"
	os.RemoveAll(tmp)
	if err := rootfs.FromHost(tmp, opts); err != nil {
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
