package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/provision"
	"github.com/jailgate/jailgate/statedir"
)

// configError carries every problem of a configuration, one per line.
type configError struct{ lines []string }

func (e *configError) Error() string { return fmt.Sprintf("%d configuration problems", len(e.lines)) }

// loadConfig loads and validates path, and checks its explicit id ranges
// against the state_dir's id pool (provision.CheckIDs: config reads no
// state); a bad configuration becomes a *configError (exit 2).
func loadConfig(path string) (*config.Config, error) {
	c, err := config.Load(path)
	if err != nil {
		return nil, &configError{lines: errorLines(err)}
	}
	if err := provision.CheckIDs(c, hostIDs); errors.Is(err, config.ErrInvalid) {
		return nil, &configError{lines: errorLines(err)}
	} else if err != nil {
		return nil, err
	}
	// Disk limits no backend serves here: refused (strict) or said.
	warnings, err := provision.CheckDisk(c)
	if err != nil {
		return nil, &configError{lines: errorLines(err)}
	}
	c.Warnings = append(c.Warnings, warnings...)
	return c, nil
}

// errorLines flattens joined errors into one line each.
func errorLines(err error) []string {
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		var lines []string
		for _, e := range j.Unwrap() {
			lines = append(lines, errorLines(e)...)
		}
		return lines
	}
	return []string{err.Error()}
}

// configFlag parses the --config flag shared by serve and check.
func configFlag(name string, args []string) (string, *flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("config", "/etc/jailgate/jailgate.yaml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return "", fs, flagError(fs, err)
	}
	if fs.NArg() > 0 {
		return "", fs, &usageError{fmt.Sprintf("%s: unexpected argument %q", name, fs.Arg(0))}
	}
	return *path, fs, nil
}

// cmdCheck validates a configuration and prints its warnings and one
// summary line per tenant; with --diff, what a reload would change instead
// of the summary.
func cmdCheck(args []string, stdout io.Writer) error {
	diff := false
	var rest []string
	for _, a := range args {
		if a == "--diff" || a == "-diff" {
			diff = true
			continue
		}
		rest = append(rest, a)
	}
	path, _, err := configFlag("check", rest)
	if err != nil {
		return err
	}
	c, err := loadConfig(path)
	if err != nil {
		return err
	}
	if err := checkPool(c); err != nil {
		return err
	}
	c.Warnings = append(c.Warnings, forwardWarnings(c)...)
	// Valid but weaker than the defaults (a weak SSH algorithm offered):
	// said, not refused; the exit status stays 0.
	for _, w := range c.Warnings {
		fmt.Fprintln(stdout, "warning: "+w)
	}
	if diff {
		old, err := loadActive(c.StateDir)
		if err != nil {
			return fmt.Errorf("check --diff: the configuration in force (%s): %w", statedir.New(c.StateDir).ActiveConfig(), err)
		}
		lines := diffActive(old, activeLines(c))
		if len(lines) == 0 {
			fmt.Fprintln(stdout, "no change")
		}
		for _, l := range lines {
			fmt.Fprintln(stdout, l)
		}
		return nil
	}
	fmt.Fprintf(stdout, "%s: ok, listen %s, %d tenants\n", path, c.Listen, len(c.Users))
	for _, n := range c.Names() {
		fmt.Fprintln(stdout, "  "+c.Users[n].Summary())
	}
	return nil
}

// checkPool refuses, as serve would at start, a network pool that
// overlaps a route or address of this host when a tenant uses nat: the
// same choice (jail.ChoosePool) under serve's name for the state_dir, so a
// live gateway's own veths do not count. The line is network_pool's, or
// the first nat tenant's when the pool is the default choice.
func checkPool(c *config.Config) error {
	tenant := natTenant(c)
	if tenant == "" {
		return nil
	}
	_, err := jail.ChoosePool(c.NetworkPool, statedir.New(c.StateDir).Hash())
	if err == nil {
		return nil
	}
	e := &config.Error{Pos: c.NetworkPoolPos, Field: "network_pool", Msg: err.Error()}
	if !c.NetworkPool.IsValid() {
		e.Pos, e.Field = c.Users[tenant].Pos, "users."+tenant+".network"
	}
	return &configError{lines: []string{e.Error()}}
}

// natTenant is the first tenant using nat, "" if none does.
func natTenant(c *config.Config) string {
	for _, n := range c.Names() {
		if c.Users[n].Network == jail.NetworkNAT {
			return n
		}
	}
	return ""
}

// forwardWarnings are, when a tenant uses nat, what serve would warn of
// at start: another table's forward chain (Docker's FORWARD policy drop)
// that drops her traffic, with the rules to add for the veths of serve's
// name for the state_dir. None if the rules cannot be read (check run
// without CAP_NET_ADMIN).
func forwardWarnings(c *config.Config) []string {
	if natTenant(c) == "" {
		return nil
	}
	blocks, _ := jail.ForwardBlocks(statedir.New(c.StateDir).Hash(), "")
	var out []string
	for _, b := range blocks {
		out = append(out, b.Warning())
	}
	return out
}
