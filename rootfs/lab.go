package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// LabPrograms is the set FromHostOptions.Lab adds: what a lab user's day
// needs. With Lab each brings its whole package (coreutils brings
// sha256sum, procps brings top and free, libc-bin brings locale and ldd),
// so one program per package is enough. A program the host lacks is
// skipped with a line saying so.
var LabPrograms = []string{
	"bash", "ls", "sha256sum", "find", "grep", "sed", "awk", "tar", "gzip", "xz", "bzip2",
	"less", "vi", "diff", "file", "python3", "perl", "git", "curl", "ssh", "ps", "ip",
	"locale", "ldd", "which", "hostname", "setsid",
}

// certPaths are the host's CA certificates (Debian's and Red Hat's
// layouts) and the OpenSSL configuration that points at them, copied with
// Lab so that curl, git and python's ssl can verify servers. The private
// directories beside them are never copied.
var certPaths = []string{
	"/etc/ssl/certs", "/usr/share/ca-certificates", "/etc/ssl/openssl.cnf",
	"/usr/lib/ssl/cert.pem", "/usr/lib/ssl/certs", "/usr/lib/ssl/openssl.cnf",
	"/etc/pki/tls/certs", "/etc/pki/tls/cert.pem", "/etc/pki/tls/openssl.cnf",
	"/etc/pki/ca-trust/extracted",
}

// lab is FromHost's Lab step: the lab programs, then, for cmds and them,
// their packages' files and interpreters' libraries, the certificates and
// libstdc++, and last the libraries of every ELF file copied.
func (b *builder) lab(cmds []string) error {
	progs := append([]string{}, cmds...)
	for _, name := range LabPrograms {
		p, err := lookHost(name)
		if err != nil {
			b.logf("skip %s: not on the host", name)
			continue
		}
		progs = append(progs, p)
	}
	var queue []object
	err := b.section("lab programs", func() error {
		for _, p := range progs {
			real, err := b.install(p)
			if err != nil {
				return err
			}
			queue = append(queue, object{found: p, real: real})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, step := range []func() error{
		func() error { return b.packages(progs, &queue) },     // the data files a package ships
		func() error { return b.interpreters(progs, &queue) }, // stdlibs, @INC, git's exec-path
		func() error { return b.certificates() },
		func() error { return b.section("libraries", func() error { return b.resolve(b.libs, queue) }) },
		func() error { return b.section("libstdc++", func() error { return b.extraLib("libstdc++.so.6") }) },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// section runs fn and logs what it copied, if anything, under what.
func (b *builder) section(what string, fn func() error) error {
	files, size := b.files, b.bytes
	if err := fn(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n := b.files - files; n > 0 {
		b.logf("%s: %s, %s", what, plural(n, "file"), sizeText(b.bytes-size))
	}
	return nil
}

// certificates copies the host's CA certificates.
func (b *builder) certificates() error {
	return b.section("CA certificates", func() error {
		for _, p := range certPaths {
			if _, err := os.Stat(p); err != nil {
				continue
			}
			if err := b.dataTree(p, nil, nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// dataTree mirrors the host tree top (a link to it is mirrored and
// followed) as data: what skip names (a directory's or a file's base name)
// is left out, as is what dataFile leaves out. The ELF files copied are
// added to queue, if not nil, for their libraries.
func (b *builder) dataTree(top string, skip func(name string) bool, queue *[]object) error {
	real, err := b.install(top)
	if err != nil {
		return err
	}
	return filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != real && skip != nil && skip(d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			_, err := b.install(p)
			return err
		}
		return b.dataFile(p, queue)
	})
}

// dataFile mirrors the host file p as data: a link (recreated, and what it
// names copied if that exists) or a regular file every user may read. A
// file readable only by some is not meant for every user, and devices,
// fifos and sockets are never copied. An ELF file is added to queue.
func (b *builder) dataFile(p string, queue *[]object) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil // gone since it was listed
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		if _, err := os.Stat(p); err != nil {
			return nil // dangling: nothing to copy
		}
	case fi.Mode().IsRegular():
		if fi.Mode().Perm()&0o004 == 0 {
			return nil
		}
	default:
		return nil
	}
	real, err := b.install(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if queue != nil && b.libs.kindOf(real) != (elfKind{}) {
		*queue = append(*queue, object{found: p, real: real})
	}
	return nil
}

// sizeText renders n bytes for a person: 512 B, 4.0 KiB, 31.2 MiB.
func sizeText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for ; v >= unit && i < 3; i++ {
		v /= unit
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGT"[i])
}

// plural is "1 file", "2 files".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
