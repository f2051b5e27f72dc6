package rootfs

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// This file finds the shared libraries a host binary needs the way the
// dynamic loader does (ld.so(8)), from the ELF headers alone: running ldd
// would run the binary's own loader, which a crafted binary controls.

// elfKind is what must match between an object and a library it loads.
type elfKind struct {
	class   elf.Class
	machine elf.Machine
}

// object is a host file whose dependencies are still to be installed.
type object struct {
	found string   // path the loader would open (may be a link)
	real  string   // path of the file itself, links resolved
	rpath []string // DT_RPATH dirs inherited from the objects that loaded it
}

// libResolver holds the search state shared by all the objects of a build.
type libResolver struct {
	conf  []string           // directories from /etc/ld.so.conf, in order
	kinds map[string]elfKind // host path to kind; zero for non-ELF files
	seen  map[string]bool    // real paths already analysed
	kind  elfKind            // kind of the first ELF binary, for extra libraries
}

func newLibResolver() *libResolver {
	return &libResolver{
		conf:  readLdConf("/etc/ld.so.conf", 0),
		kinds: map[string]elfKind{},
		seen:  map[string]bool{},
	}
}

// resolve installs the interpreters and libraries the objects need,
// recursively.
func (b *builder) resolve(r *libResolver, queue []object) error {
	for len(queue) > 0 {
		o := queue[0]
		queue = queue[1:]
		if r.seen[o.real] {
			continue
		}
		r.seen[o.real] = true
		more, err := b.deps(r, o)
		if err != nil {
			return err
		}
		queue = append(queue, more...)
	}
	return nil
}

// deps installs what the host file o needs to run and returns those of its
// dependencies that need analysing in turn.
func (b *builder) deps(r *libResolver, o object) ([]object, error) {
	f, err := elf.Open(o.real)
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) {
			return b.scriptDeps(o)
		}
		return nil, err
	}
	defer f.Close()
	k := elfKind{f.Class, f.Machine}
	if r.kind == (elfKind{}) {
		r.kind = k
	}
	var out []object
	add := func(found string, rpath []string) error {
		real, err := b.install(found)
		if err != nil {
			return err
		}
		out = append(out, object{found: found, real: real, rpath: rpath})
		return nil
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(p.Open(), 4096))
		if err != nil {
			return nil, fmt.Errorf("read interpreter of %s: %w", o.real, err)
		}
		interp := string(bytes.TrimRight(data, "\x00"))
		if err := add(interp, nil); err != nil {
			return nil, fmt.Errorf("interpreter of %s: %w", o.real, err)
		}
	}
	needed, err := f.DynString(elf.DT_NEEDED)
	if err != nil {
		return nil, fmt.Errorf("read dynamic section of %s: %w", o.real, err)
	}
	runpath, _ := f.DynString(elf.DT_RUNPATH)
	rpath, _ := f.DynString(elf.DT_RPATH)
	origins := []string{path.Dir(o.real)}
	if d := path.Dir(o.found); d != origins[0] {
		origins = append(origins, d)
	}
	// ld.so(8): DT_RPATH (own, then the loaders') only when there is no
	// DT_RUNPATH; then DT_RUNPATH; then the cache (ld.so.conf); then the
	// default directories.
	var dirs, chain []string
	if len(runpath) == 0 {
		chain = append(expandSearch(rpath, origins), o.rpath...)
		dirs = append(dirs, chain...)
	}
	dirs = append(dirs, expandSearch(runpath, origins)...)
	dirs = append(dirs, r.conf...)
	dirs = append(dirs, defaultLibDirs(k)...)
	for _, name := range needed {
		lib := r.find(name, k, dirs)
		if lib == "" {
			return nil, fmt.Errorf("library %s needed by %s: not found", name, o.real)
		}
		if err := add(lib, chain); err != nil {
			return nil, fmt.Errorf("library %s needed by %s: %w", name, o.real, err)
		}
	}
	return out, nil
}

// scriptDeps installs the interpreter named on the #! line of a script.
func (b *builder) scriptDeps(o object) ([]object, error) {
	f, err := os.Open(o.real)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	line, _ := bufio.NewReader(io.LimitReader(f, 256)).ReadString('\n')
	if !strings.HasPrefix(line, "#!") {
		return nil, nil
	}
	fields := strings.Fields(line[2:])
	if len(fields) == 0 || !path.IsAbs(fields[0]) {
		return nil, nil
	}
	real, err := b.install(fields[0])
	if err != nil {
		return nil, fmt.Errorf("interpreter of %s: %w", o.real, err)
	}
	return []object{{found: fields[0], real: real}}, nil
}

// find returns the first dirs/name that is an ELF object of kind k.
func (r *libResolver) find(name string, k elfKind, dirs []string) string {
	if strings.Contains(name, "/") {
		if path.IsAbs(name) && r.kindOf(name) == k {
			return name
		}
		return ""
	}
	for _, d := range dirs {
		if p := path.Join(d, name); r.kindOf(p) == k {
			return p
		}
	}
	return ""
}

func (r *libResolver) kindOf(p string) elfKind {
	if k, ok := r.kinds[p]; ok {
		return k
	}
	var k elfKind
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
		if f, err := elf.Open(p); err == nil {
			k = elfKind{f.Class, f.Machine}
			f.Close()
		}
	}
	r.kinds[p] = k
	return k
}

// expandSearch splits DT_RPATH/DT_RUNPATH strings into directories,
// replacing $ORIGIN by each of origins. Relative entries (relative to the
// loader's working directory) and other dynamic string tokens are dropped.
func expandSearch(lists []string, origins []string) []string {
	var out []string
	for _, list := range lists {
		for _, d := range strings.Split(list, ":") {
			if strings.Contains(d, "$ORIGIN") || strings.Contains(d, "${ORIGIN}") {
				for _, o := range origins {
					e := strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", o), "$ORIGIN", o)
					out = append(out, path.Clean(e))
				}
				continue
			}
			if path.IsAbs(d) && !strings.Contains(d, "$") {
				out = append(out, path.Clean(d))
			}
		}
	}
	return out
}

// multiarch maps an ELF kind to its Debian multiarch tuple.
func multiarch(k elfKind) string {
	switch k.machine {
	case elf.EM_X86_64:
		if k.class == elf.ELFCLASS32 {
			return "x86_64-linux-gnux32"
		}
		return "x86_64-linux-gnu"
	case elf.EM_386:
		return "i386-linux-gnu"
	case elf.EM_AARCH64:
		return "aarch64-linux-gnu"
	case elf.EM_ARM:
		return "arm-linux-gnueabihf"
	case elf.EM_RISCV:
		return "riscv64-linux-gnu"
	case elf.EM_PPC64:
		return "powerpc64le-linux-gnu"
	case elf.EM_S390:
		return "s390x-linux-gnu"
	case elf.EM_LOONGARCH:
		return "loongarch64-linux-gnu"
	}
	return ""
}

// defaultLibDirs are the loader's built-in directories for objects of kind k.
func defaultLibDirs(k elfKind) []string {
	var dirs []string
	if t := multiarch(k); t != "" {
		dirs = append(dirs, "/lib/"+t, "/usr/lib/"+t)
	}
	return append(dirs, "/lib64", "/usr/lib64", "/lib", "/usr/lib")
}

// readLdConf returns the directories listed in an ld.so.conf(5) file,
// following its include lines (relative patterns are relative to the file's
// directory, as ldconfig reads them).
func readLdConf(name string, depth int) []string {
	data, err := os.ReadFile(name)
	if err != nil || depth > 8 {
		return nil
	}
	var dirs []string
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.FieldsFunc(line, func(r rune) bool {
			return r == ' ' || r == '\t' || r == ':' || r == ','
		})
		if len(fields) == 0 || fields[0] == "hwcap" {
			continue
		}
		if fields[0] == "include" {
			for _, pat := range fields[1:] {
				if !filepath.IsAbs(pat) {
					pat = filepath.Join(filepath.Dir(name), pat)
				}
				matches, _ := filepath.Glob(pat)
				sort.Strings(matches)
				for _, m := range matches {
					dirs = append(dirs, readLdConf(m, depth+1)...)
				}
			}
			continue
		}
		for _, d := range fields {
			if d, _, _ = strings.Cut(d, "="); path.IsAbs(d) {
				dirs = append(dirs, path.Clean(d))
			}
		}
	}
	return dirs
}
