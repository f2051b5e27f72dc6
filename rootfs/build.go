// Package rootfs builds tenant root filesystems and makes them ready for a
// tenant: it copies a minimal working system out of the host's own binaries
// (FromHost), shifts a tree's ownership into the tenant's host id range
// (Shift) and records that shift so it is done once per tenant (Prepare).
//
// Every tenant tree is treated as hostile: it is walked through directory
// descriptors or an os.Root, links in it are never followed on the host side,
// and no host path is ever formed by joining the tree's path with a name
// read from the tree.
package rootfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// FromHostOptions tunes FromHost.
type FromHostOptions struct {
	// With lists more commands to copy: a name looked up on the host PATH
	// or an absolute host path. A name that cannot be found is an error.
	With []string
	// Lab makes the tree a lab user's day-to-day system: it adds the
	// programs of LabPrograms the host has (a line says which it lacks)
	// and, for every program copied, what it needs beyond its libraries:
	// its package's files (dpkg -L, rpm -ql), an interpreter's standard
	// library (python3, perl @INC), git's exec-path; then CA certificates,
	// libstdc++, and the libraries of every ELF file those brought in. It
	// costs about 150 MB and a few seconds; `jailgate rootfs from-host`
	// sets it unless told --minimal.
	Lab bool
	// Log, if set, receives one line per step (what was copied and its
	// size, a file written, a program skipped). Nil means silent.
	Log func(format string, args ...any)
	// Status, if set, receives a short text as each host file is copied
	// (the files and bytes copied so far, the file), for a progress line
	// on a terminal. It is called often.
	Status func(text string)
}

// markerPath is the file (relative to the tree) that marks a tree built by
// FromHost, which FromHost may refresh in place.
const markerPath = "etc/jailgate-rootfs"

// baseCommands are always copied; FromHost fails if the host lacks one.
var baseCommands = []string{
	"bash", "sh", "ls", "cat", "echo", "id", "ps", "mkdir", "rmdir", "rm", "cp", "mv",
	"touch", "sleep", "env", "hostname", "stty", "tty", "uname", "head", "tail", "wc",
	"grep", "sed", "kill", "true", "false", "printf", "test", "readlink", "ln", "chmod",
	"chown", "whoami", "dirname", "basename", "seq", "sort", "uniq", "tr", "cut", "date",
	"pwd", "df", "du", "find", "xargs", "stat", "mount", "umount", "tee", "yes", "nproc", "nohup",
}

// optionalCommands are copied when the host has them.
var optionalCommands = []string{"less", "vi", "vim", "top", "nano", "tmux", "clear", "which", "setsid", "free", "scp", "rsync", "unshare", "mknod", "chroot"}

// terminals are the terminfo entries copied when the host has them, so that
// full-screen programs work over the common TERM values.
var terminals = []string{
	"xterm", "xterm-256color", "vt100", "vt220", "screen", "screen-256color",
	"tmux", "tmux-256color", "linux", "dumb",
}

// hostPath is searched for commands before $PATH, so that what is copied
// does not depend on the environment the gateway was started from.
var hostPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// FromHost builds a minimal working root filesystem into dir from the host's
// own binaries: the commands of a small shell environment, the shared
// libraries they load (found from their ELF headers), terminfo entries, and
// /etc files for a root user. The host layout is kept, including merged-/usr
// links, so paths are the same inside and out. Copies keep their permission
// bits but lose setuid and setgid.
//
// Dir is created 0755 if missing. A non-empty dir is refused with ErrNotEmpty
// unless FromHost built it: such a tree is refreshed in place, binaries and
// libraries replaced, /etc files and home directories the tenant may have
// edited left as they are. New entries get the owner of dir, so a tree
// already shifted into a tenant's range stays in it.
func FromHost(dir string, opts FromHostOptions) error {
	if err := fromHost(dir, opts); err != nil {
		return fmt.Errorf("rootfs: build %s: %w", dir, err)
	}
	return nil
}

// fromHost finds the commands, opens the tree, then runs the build steps
// in order; each step says why it is there.
func fromHost(dir string, opts FromHostOptions) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// Find every command first: a bad name fails before anything is written.
	cmds, err := findCommands(opts.With)
	if err != nil {
		return err
	}
	root, st, err := openTarget(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	b := &builder{root: root, log: opts.Log, status: opts.Status, libs: newLibResolver(),
		uid: int(st.Uid), gid: int(st.Gid), done: map[string]bool{}}
	lab := func() error { return nil }
	if opts.Lab {
		lab = func() error { return b.lab(cmds) }
	}
	for _, step := range []func() error{
		b.marker,   // first: a build that fails halfway may be run again
		b.usrLinks, // binaries and the loader are found through them
		b.skeleton, // the directories every system has
		func() error {
			return b.section("commands and their libraries", func() error { return b.commands(cmds) })
		},
		lab,             // with Lab: more programs, and the data every program needs
		b.terminfo,      // full-screen programs over the common TERMs
		b.installLocale, // tmux wants a UTF-8 locale
		b.etcFiles,      // a root user, files-only NSS, a profile
	} {
		if err := step(); err != nil {
			return err
		}
	}
	b.logf("built %s: %d files (%s) copied, %d links made", dir, b.files, sizeText(b.bytes), b.links)
	return nil
}

// findCommands looks up the base commands (all required), the optional
// ones the host has, and those of with (all required), on the host.
func findCommands(with []string) ([]string, error) {
	var cmds, missing []string
	for _, name := range baseCommands {
		if p, err := lookHost(name); err == nil {
			cmds = append(cmds, p)
		} else {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("commands not found on the host: %s", strings.Join(missing, ", "))
	}
	for _, name := range optionalCommands {
		if p, err := lookHost(name); err == nil {
			cmds = append(cmds, p)
		}
	}
	for _, name := range with {
		p, err := lookHost(name)
		if err != nil {
			return nil, fmt.Errorf("command %q: %w", name, err)
		}
		cmds = append(cmds, p)
	}
	return cmds, nil
}

// marker writes the file that marks the tree as FromHost's, which a later
// FromHost may refresh in place.
func (b *builder) marker() error {
	if err := b.ensureDir("etc", 0o755); err != nil {
		return err
	}
	const marker = "This tree was built by jailgate from the host's binaries (rootfs.FromHost).\n" +
		"Building it again refreshes it in place.\n"
	return b.writeFile(markerPath, 0o644, strings.NewReader(marker))
}

// usrLinks mirrors a merged /usr: /bin, /lib ... are links into /usr on
// the host, and binaries and the loader are found through them (PT_INTERP
// is /lib64/ld-linux-x86-64.so.2), so the tree has the same links.
func (b *builder) usrLinks() error {
	for _, n := range []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
		if fi, err := os.Lstat(n); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		if _, err := os.Stat(n); err != nil {
			continue // a dangling link on the host: nothing to mirror
		}
		if _, err := b.install(n); err != nil {
			return err
		}
	}
	return nil
}

// skeleton makes the top directories a system expects, with their modes.
func (b *builder) skeleton() error {
	for _, d := range []struct {
		name string
		perm fs.FileMode
	}{
		{"dev", 0o755}, {"proc", 0o755}, {"sys", 0o755}, {"home", 0o755}, {"root", 0o700},
		{"tmp", fs.ModeSticky | 0o777}, {"var", 0o755}, {"var/tmp", fs.ModeSticky | 0o777},
	} {
		if err := b.ensureDir(d.name, d.perm); err != nil {
			return err
		}
	}
	return nil
}

// commands installs the host commands cmds and every library they load.
func (b *builder) commands(cmds []string) error {
	var queue []object
	for _, p := range cmds {
		real, err := b.install(p)
		if err != nil {
			return err
		}
		queue = append(queue, object{found: p, real: real})
	}
	if err := b.resolve(b.libs, queue); err != nil {
		return err
	}
	// glibc before 2.34 loads the "files" NSS module with dlopen, which no
	// DT_NEEDED entry shows; later versions build it in and ship a stub.
	return b.extraLib("libnss_files.so.2")
}

// extraLib installs the host library name, if the host has one of the
// binaries' kind in the loader's directories, and the libraries it loads.
func (b *builder) extraLib(name string) error {
	r := b.libs
	if r.kind == (elfKind{}) {
		return nil
	}
	dirs := append(append([]string{}, r.conf...), defaultLibDirs(r.kind)...)
	lib := r.find(name, r.kind, dirs)
	if lib == "" {
		return nil
	}
	real, err := b.install(lib)
	if err != nil {
		return err
	}
	return b.resolve(r, []object{{found: lib, real: real}})
}

// installLocale copies the C.UTF-8 locale where the host has it: tmux
// refuses to start without a UTF-8 locale, every tool warns under
// LANG=C.UTF-8 without it, and glibc finds it in /usr/lib/locale (400 KiB;
// named C.utf8 on Debian and Fedora, C.UTF-8 on some older hosts).
func (b *builder) installLocale() error {
	return b.section("locale C.UTF-8", func() error {
		for _, d := range cLocales {
			if fi, err := os.Stat(d); err == nil && fi.IsDir() {
				if err := b.installTree(d); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// openTarget creates dir if needed, refuses a link, a non-directory or a
// foreign non-empty directory, and opens it as a Root.
func openTarget(dir string) (*os.Root, *unix.Stat_t, error) {
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := MakeTree(dir, 0o755); err != nil { // a subvolume on btrfs: her disk quota's tree
			return nil, nil, err
		}
		if err := os.Chmod(dir, 0o755); err != nil { // undo the umask
			return nil, nil, err
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return nil, nil, &os.PathError{Op: "lstat", Path: dir, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
	case unix.S_IFLNK:
		return nil, nil, &os.PathError{Op: "open", Path: dir, Err: ErrSymlink}
	default:
		return nil, nil, &os.PathError{Op: "open", Path: dir, Err: ErrNotDir}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, err
	}
	empty, err := isEmpty(root)
	if err == nil && !empty {
		if fi, lerr := root.Lstat(markerPath); lerr != nil || !fi.Mode().IsRegular() {
			err = fmt.Errorf("%w (it has no /%s)", ErrNotEmpty, markerPath)
		}
	}
	if err != nil {
		root.Close()
		return nil, nil, err
	}
	return root, &st, nil
}

// isEmpty reports whether the tree's top directory is empty, not counting
// the lost+found directory of a freshly made file system.
func isEmpty(root *os.Root) (bool, error) {
	f, err := root.Open(".")
	if err != nil {
		return false, err
	}
	defer f.Close()
	for {
		names, err := f.Readdirnames(16)
		for _, n := range names {
			if n != "lost+found" {
				return false, nil
			}
		}
		if errors.Is(err, io.EOF) {
			return true, nil
		} else if err != nil {
			return false, err
		}
	}
}

// lookHost finds a command on the host: an absolute path as given, or a
// name in hostPath then $PATH. It must be an executable regular file.
func lookHost(name string) (string, error) {
	isExec := func(p string) bool {
		fi, err := os.Stat(p)
		return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
	}
	if strings.Contains(name, "/") {
		if !path.IsAbs(name) {
			return "", errors.New("neither a command name nor an absolute path")
		}
		if !isExec(name) {
			return "", &os.PathError{Op: "stat", Path: name, Err: exec.ErrNotFound}
		}
		return path.Clean(name), nil
	}
	if name == "" || name == "." || name == ".." {
		return "", exec.ErrNotFound
	}
	dirs := append([]string{}, hostPath...)
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if path.IsAbs(d) {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if p := path.Join(d, name); isExec(p) {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// cLocales are the host directories the C.UTF-8 locale may be in.
var cLocales = []string{"/usr/lib/locale/C.utf8", "/usr/lib/locale/C.UTF-8"}

// installTree mirrors the host directory top and everything under it.
func (b *builder) installTree(top string) error {
	return filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&^(fs.ModeDir|fs.ModeSymlink) != 0 {
			return nil // no devices, fifos or sockets
		}
		_, err = b.install(p)
		return err
	})
}

// terminfo copies the host's entries for the common terminals from every
// terminfo directory that has them (terminfo(5)).
func (b *builder) terminfo() error {
	for _, d := range []string{"/etc/terminfo", "/lib/terminfo", "/usr/share/terminfo"} {
		for _, t := range terminals {
			p := path.Join(d, t[:1], t)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			if _, err := b.install(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// etcFiles writes the few files a shell and the id tools need. NSS reads
// files only: the environment has no network to ask anything else.
func (b *builder) etcFiles() error {
	for _, f := range []struct {
		name, data string
		perm       fs.FileMode
	}{
		{"etc/passwd", "root:x:0:0:root:/root:/bin/bash\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", 0o644},
		{"etc/group", "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n", 0o644},
		{"etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0o644},
		{"etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n" +
			"networks: files\nprotocols: files\nservices: files\n", 0o644},
		{"etc/profile", profile, 0o644},
		{"root/.bashrc", "# Written by jailgate.\n[ -r /etc/profile ] && . /etc/profile\n", 0o644},
	} {
		if err := b.writeNew(f.name, f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

const profile = `# /etc/profile: written by jailgate.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 022
if [ -d /usr/lib/locale/C.utf8 ] || [ -d /usr/lib/locale/C.UTF-8 ]; then
	export LANG="${LANG:-C.UTF-8}"
fi
if [ -n "${BASH_VERSION-}" ]; then
	PS1='\u@\h:\w\$ '
else
	PS1='$ '
fi
`
