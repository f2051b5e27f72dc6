package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/provision"
	"github.com/jailgate/jailgate/rootfs"
	"github.com/jailgate/jailgate/statedir"
)

// cmdEnv lists or ends the live environments of a state_dir, with or
// without a running server: they outlive it (issue 17).
func cmdEnv(args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "stop") {
		return &usageError{"env: want a subcommand: list, stop"}
	}
	fset := flag.NewFlagSet("env "+args[0], flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	path := fset.String("config", "/etc/jailgate/jailgate.yaml", "configuration file")
	all := fset.Bool("all", false, "env stop: every environment")
	grace := fset.Duration("grace", 10*time.Second, "env stop: between SIGTERM and SIGKILL")
	if err := fset.Parse(args[1:]); err != nil {
		return flagError(fset, err)
	}
	stateDir, err := config.StateDirOf(*path)
	if err != nil {
		return err
	}
	layout := statedir.New(stateDir)
	if args[0] == "list" {
		if fset.NArg() != 0 {
			return &usageError{"env list: no arguments but --config"}
		}
		return listEnvs(stdout, layout)
	}
	tenant := ""
	switch {
	case *all && fset.NArg() == 0:
	case !*all && fset.NArg() == 1:
		tenant = fset.Arg(0)
	default:
		return &usageError{"env stop: want TENANT or --all"}
	}
	return stopEnvs(stdout, layout, tenant, *grace)
}

// listEnvs prints one line per live environment.
func listEnvs(stdout io.Writer, layout statedir.Layout) error {
	infos, errs := jail.ListEnvironments(context.Background(), layout.Environments())
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TENANT\tKEY\tENV\tAGE\tSESSIONS\tPROCESSES\tMEMORY\tGATEWAYS")
	for _, in := range infos {
		procs, mem := "-", "-"
		if st, err := jail.TenantStats(in.Tenant, layout.Cgroup()); err == nil {
			procs, mem = fmt.Sprint(st.Pids), config.FormatSize(st.MemoryBytes)
		}
		gws := make([]string, len(in.Gateways))
		for i, p := range in.Gateways {
			gws[i] = fmt.Sprint(p)
		}
		gw := strings.Join(gws, ",")
		if gw == "" {
			gw = "none"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", in.Tenant, in.Key, in.Name,
			time.Since(in.Created).Round(time.Second), in.Sessions, procs, mem, gw)
	}
	w.Flush()
	for _, err := range errs {
		fmt.Fprintln(stdout, "skipped:", err)
	}
	return nil
}

// stopEnvs ends the environments of tenant ("": all), then unmounts the
// layers no live environment uses any more.
func stopEnvs(stdout io.Writer, layout statedir.Layout, tenant string, grace time.Duration) error {
	stopped, err := jail.StopEnvironments(context.Background(), jail.Options{
		CgroupPrefix: layout.Cgroup(), RecordDir: layout.Environments(), Logger: slog.New(slog.DiscardHandler)}, tenant, grace)
	for _, r := range stopped {
		fmt.Fprintf(stdout, "stopped %s (%s, %s)\n", r.Name, r.Tenant, r.Key)
	}
	if len(stopped) == 0 && err == nil {
		fmt.Fprintln(stdout, "no live environment")
	}
	keep := map[string]bool{}
	recs, _ := jail.ReadRecords(layout.Environments())
	for _, r := range recs {
		keep[r.Tenant] = true
	}
	prov := provision.New(provision.Options{StateDir: layout.Root, Layers: rootfs.NewLayers(layout.Root, rootfs.LayerOptions{})})
	if serr := prov.SweepMounts(keep); serr != nil && err == nil {
		err = serr
	}
	return err
}
