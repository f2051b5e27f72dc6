package main

import (
	"flag"
	"fmt"
	"io"
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
	if err := fs.Parse(args[1:]); err != nil {
		return &usageError{fmt.Sprintf("rootfs from-host: %v", err)}
	}
	if fs.NArg() != 1 {
		return &usageError{"rootfs from-host: want exactly one DIR"}
	}
	opts := rootfs.FromHostOptions{}
	if *with != "" {
		opts.With = strings.Split(*with, ",")
	}
	if !*quiet {
		opts.Log = func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	}
	return rootfs.FromHost(fs.Arg(0), opts)
}
