package rootfs

import (
	"fmt"
	"os"
	"path"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"
)

// This file copies what an interpreter loads at run time and no package
// list ties to its binary: python's standard library (lib-dynload's
// extension modules included), perl's @INC, git's exec-path. The host's
// own interpreter is asked where they are.

// interpreter says how to ask a host program for its library directories,
// one absolute path a line; skip names what is left out of them.
type interpreter struct {
	name *regexp.Regexp // the program's base name, or its binary's
	what string
	args []string
	skip func(name string) bool
}

var interpreters = []interpreter{
	{name: regexp.MustCompile(`^python3(\.[0-9]+)?$`), what: "standard library",
		// -I -S: no user site, no environment, no site-packages.
		args: []string{"-I", "-S", "-c", "import sys, sysconfig; print(sysconfig.get_path('stdlib')); print('\\n'.join(sys.path))"},
		// site-packages is the host's own installs; config-* is the static
		// library for building extensions (25 MB).
		skip: func(n string) bool {
			return n == "site-packages" || n == "dist-packages" || strings.HasPrefix(n, "config-3")
		}},
	{name: regexp.MustCompile(`^perl(5[.0-9]*)?$`), what: "@INC",
		args: []string{"-e", `print "$_\n" for @INC`},
		// CORE is the headers and library for building XS modules (8 MB).
		skip: func(n string) bool { return n == "CORE" }},
	{name: regexp.MustCompile(`^git$`), what: "exec-path", args: []string{"--exec-path"}},
}

// interpreters copies the library directories of the programs in progs
// that are interpreters, adding their ELF files (extension modules) to
// queue.
func (b *builder) interpreters(progs []string, queue *[]object) error {
	done := map[string]bool{}
	for _, p := range progs {
		real, err := b.install(p)
		if err != nil {
			return err
		}
		for _, in := range interpreters {
			if done[real] || !in.name.MatchString(path.Base(p)) && !in.name.MatchString(path.Base(real)) {
				continue
			}
			done[real] = true
			dirs, err := askInterpreter(real, in.args)
			if err != nil {
				b.logf("%s: %s not copied: %v", path.Base(p), in.what, err)
				continue
			}
			err = b.section(fmt.Sprintf("%s: %s %s", path.Base(p), in.what, strings.Join(dirs, " ")), func() error {
				for _, d := range dirs {
					if err := b.dataTree(d, in.skip, queue); err != nil {
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

// askInterpreter runs the host interpreter real with args and returns the
// directories it prints that exist, in order, without repeats. Only a
// binary that root owns and no one else may write is run: it runs as the
// builder, root.
func askInterpreter(real string, args []string) ([]string, error) {
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: real, Err: err}
	}
	if st.Uid != 0 || st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("%s is not root's own (owned by root, writable by no one else): not run", real)
	}
	out, err := hostOutput(real, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", real, err)
	}
	var dirs []string
	seen := map[string]bool{}
	for _, d := range absLines(out) {
		d = path.Clean(d)
		if seen[d] || isUnder(d, dirs) {
			continue
		}
		seen[d] = true
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			dirs = append(dirs, d)
		}
	}
	return dirs, nil
}

// isUnder reports whether d is inside one of dirs.
func isUnder(d string, dirs []string) bool {
	for _, top := range dirs {
		if strings.HasPrefix(d, top+"/") {
			return true
		}
	}
	return false
}
