package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/rootfs"
	"github.com/jailgate/jailgate/statedir"
)

// cmdTenant handles `jailgate tenant reset|du`.
func cmdTenant(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "reset" && args[0] != "du") {
		return &usageError{"tenant: want a subcommand: reset, du"}
	}
	fset := flag.NewFlagSet("tenant "+args[0], flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	path := fset.String("config", "/etc/jailgate/jailgate.yaml", "configuration file")
	yes := fset.Bool("yes", false, "do not ask for confirmation")
	if err := fset.Parse(args[1:]); err != nil {
		return flagError(fset, err)
	}
	stateDir, err := config.StateDirOf(*path)
	if err != nil {
		return err
	}
	layout := statedir.New(stateDir)
	layers := layout.Tenants()
	if args[0] == "du" {
		ents, _ := os.ReadDir(layers)
		for _, e := range ents {
			// Under a disk quota: used / limit, blocks and inodes.
			if u, ok, _ := rootfs.TenantUsage(stateDir, e.Name(), ""); ok {
				fmt.Fprintf(stdout, "%s\t%s / %s\t%d / %d inodes\t(%s)\n", e.Name(), config.FormatSize(u.Bytes),
					quotaText(u.BytesLimit), u.Inodes, u.InodesLimit, u.Backend)
				continue
			}
			fmt.Fprintf(stdout, "%s\t%s\n", e.Name(), config.FormatSize(treeSize(layout.TenantUpper(e.Name()))))
		}
		return nil
	}
	if fset.NArg() != 1 {
		return &usageError{"tenant reset: want TENANT"}
	}
	name := fset.Arg(0)
	dir := layout.Tenant(name)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("tenant reset %s: she has no layer under %s", name, layers)
	}
	if !*yes {
		fmt.Fprintf(stdout, "discard every change %s made to her image (%s)? type yes: ", name, dir)
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		if strings.TrimSpace(line) != "yes" {
			return fmt.Errorf("tenant reset %s: not confirmed", name)
		}
	}
	// The gateway holds her layer's lock while it is mounted (her live
	// environments and the grace after them): RemoveLayer refuses then.
	if err := rootfs.RemoveLayer(stateDir, name); err != nil {
		if errors.Is(err, rootfs.ErrLayerInUse) {
			return fmt.Errorf("%w; her layer stays mounted while she has a session and for %v after her last one: "+
				"try again then (removing her from the config and reloading ends her sessions)", err, rootfs.DefaultGrace)
		}
		return err
	}
	fmt.Fprintf(stdout, "discarded %s's layer\n", name)
	return nil
}

// treeSize sums the sizes of the regular files under dir.
func treeSize(dir string) int64 {
	var size int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				size += fi.Size()
			}
		}
		return nil
	})
	return size
}

// quotaText renders a quota's byte limit; 0 is none.
func quotaText(n int64) string {
	if n == 0 {
		return "max"
	}
	return config.FormatSize(n)
}
