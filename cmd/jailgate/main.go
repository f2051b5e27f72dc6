// Command jailgate is an SSH gateway that lands every tenant in a Linux
// namespace jail of her own. See the README for the commands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/jailgate/jailgate/jail"
)

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2 // bad flags or a bad configuration
)

// usage is the top-level help.
const usage = `usage: jailgate <command> [flags]

commands:
  serve --config FILE [--pid-file FILE]
                                   run the SSH gateway
  check --config FILE [--diff]     validate a configuration and summarise each tenant;
                                   --diff: what a reload would change against the one in force
  reload --config FILE             have the running server re-read FILE (as SIGHUP does) and say
                                   what changed, or every problem if it kept the old one
  upgrade --config FILE            hand the running server over to the binary now installed at its
                                   path (as SIGUSR2 does): no connection refused or dropped; say
                                   both pids and versions, or why the new one failed (exit 1)
  explain --config FILE TENANT     a tenant's effective settings, defaults and templates applied
  recordings list --config FILE [--tenant T]
                                   the recorded sessions (asciicast v2)
  play [--speed N] FILE            replay a recording in this terminal
  tenant du --config FILE          per-tenant disk use of their image layers
  tenant reset [--yes] --config FILE TENANT
                                   discard a tenant's layer over her image
  status --config FILE             each tenant's environments, memory, pids, cpu (from her cgroup)
  env list --config FILE           the live environments: tenant, key, age, sessions, processes,
                                   memory, the gateways holding them (with or without a server)
  env stop --config FILE [--grace D] TENANT | --all
                                   end her environments (SIGTERM inside, SIGKILL after D, 10s)
  rootfs from-host [--minimal] [-q] [--with CMD,...] DIR | --image NAME --config FILE
                                   build a minimal root filesystem (or image) from the host's binaries
  rootfs debootstrap NAME [--suite S] [--mirror URL] [--include PKG,...] [--keep-setuid] --config FILE
                                   build image NAME as a minimal Debian (debootstrap --variant=minbase)
  rootfs import [--keep-setuid] --config FILE NAME FILE
                                   import image NAME from a root filesystem tarball (docker export;
                                   .tar, .tar.gz, .tar.zst), an OCI image layout (directory or
                                   archive) or docker save output
  rootfs list --config FILE        the images, their size and creation time
  rootfs rm --config FILE NAME     remove an image no tenant uses
  version                          print the version
`

// hostIDs is the host-wide id registry check and reload read: "" is
// statedir.HostIDs; an in-process test points it at its own.
var hostIDs = ""

func main() {
	// An environment's init is this binary re-executed inside its new
	// namespaces (design.md); it must be dispatched before anything else.
	if jail.IsInit() {
		jail.InitMain()
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError is a command-line mistake: exit 2 with the message.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// helpRequest is a subcommand's -h or --help: its own usage, exit 0.
type helpRequest struct{ fset *flag.FlagSet }

func (h *helpRequest) Error() string { return h.fset.Name() + ": help requested" }

// flagError turns fset's Parse error into what report prints: the
// subcommand's own usage for -h/--help, a usage error otherwise.
func flagError(fset *flag.FlagSet, err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return &helpRequest{fset}
	}
	return &usageError{fmt.Sprintf("%s: %v", fset.Name(), err)}
}

// commandUsage is the subcommand's lines of the usage text (its synopsis
// and what it does) and its flags.
func commandUsage(fset *flag.FlagSet) string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(usage, "\n") {
		switch {
		case strings.HasPrefix(line, "  "+fset.Name()+" "):
			in = true
			b.WriteString("usage: jailgate " + strings.TrimSpace(line) + "\n")
		case in && strings.HasPrefix(line, "    "):
			b.WriteString("  " + strings.TrimSpace(line) + "\n")
		default:
			in = false
		}
	}
	b.WriteString("flags:\n")
	fset.SetOutput(&b)
	fset.PrintDefaults()
	return b.String()
}

// run dispatches a subcommand and turns its error into an exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(args[1:], stderr)
	case "check":
		err = cmdCheck(args[1:], stdout)
	case "reload":
		err = cmdReload(args[1:], stdout)
	case "upgrade":
		err = cmdUpgrade(args[1:], stdout)
	case "status":
		err = cmdStatus(args[1:], stdout)
	case "explain":
		err = cmdExplain(args[1:], stdout)
	case "recordings":
		err = cmdRecordings(args[1:], stdout)
	case "play":
		err = cmdPlay(args[1:], stdout)
	case "tenant":
		err = cmdTenant(args[1:], os.Stdin, stdout)
	case "rootfs":
		err = cmdRootfs(args[1:], stdout, stderr)
	case "env":
		err = cmdEnv(args[1:], stdout)
	case "version":
		printVersion(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		err = &usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	return report(err, stderr)
}

// report prints err, one line per problem, and returns the exit code.
func report(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var ue *usageError
	var ce *configError
	var help *helpRequest
	switch {
	case errors.As(err, &help):
		fmt.Fprint(stderr, commandUsage(help.fset))
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "jailgate: %s\n", ue.msg)
		fmt.Fprint(stderr, usage)
		return exitUsage
	case errors.As(err, &ce):
		for _, line := range ce.lines {
			fmt.Fprintln(stderr, line)
		}
		return exitUsage
	}
	fmt.Fprintf(stderr, "jailgate: %v\n", err)
	return exitRuntime
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// commit is set at build time like version; else read from the build info.
var commit = ""

// printVersion prints the version, the commit and Go version it was built
// from, and the kernel features this host offers the jail.
func printVersion(w io.Writer) {
	commit := commit
	if bi, ok := debug.ReadBuildInfo(); ok && commit == "" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	if commit == "" {
		commit = "unknown"
	}
	fmt.Fprintf(w, "jailgate %s (commit %s, %s)\n", version, commit, runtime.Version())
	for _, f := range jail.Features() {
		state := "yes"
		if !f.OK {
			state = "NO"
		}
		line := fmt.Sprintf("  %-16s %s", f.Name+":", state)
		if f.Detail != "" {
			line += " (" + f.Detail + ")"
		}
		fmt.Fprintln(w, line)
	}
}
