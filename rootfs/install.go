package rootfs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// maxLinks bounds the symbolic links followed while resolving one host path,
// as the kernel's ELOOP limit does (path_resolution(7)).
const maxLinks = 40

// builder mirrors host paths into a tree opened as an os.Root. Host paths are
// trusted (they are the host's own files); every access to the tree goes
// through the Root, so a link planted in a tree being refreshed cannot send a
// write outside it.
type builder struct {
	root     *os.Root
	log      func(format string, args ...any)
	status   func(string)    // the count so far and the file copied, for a progress line; may be nil
	libs     *libResolver    // the library search state of the whole build
	uid, gid int             // owner given to new entries (the tree's owner)
	done     map[string]bool // host paths already mirrored
	files    int             // regular files copied
	bytes    int64           // their size
	links    int             // symbolic links created
}

func (b *builder) logf(format string, args ...any) {
	if b.log != nil {
		b.log(format, args...)
	}
}

// rel turns a clean absolute host path into the same path inside the tree.
func rel(p string) string {
	r := strings.TrimLeft(p, "/")
	if r == "" {
		return "."
	}
	return r
}

// install mirrors the host path p into the tree, keeping the layout: every
// directory on the way is created with the host's permissions, every symbolic
// link met (in any component) is recreated with the same target text, and the
// file it finally names is copied. It returns the host path of that file
// with all links resolved.
func (b *builder) install(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("install %s: not an absolute path", p)
	}
	rest := strings.Split(strings.Trim(path.Clean(p), "/"), "/")
	cur := "/"
	for links := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		if c == "" || c == "." {
			continue
		}
		if c == ".." {
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(next)
			if err != nil {
				return "", err
			}
			if err := b.symlink(next, target); err != nil {
				return "", err
			}
			if links++; links > maxLinks {
				return "", &os.PathError{Op: "install", Path: p, Err: errors.New("too many levels of symbolic links")}
			}
			if path.IsAbs(target) {
				cur = "/"
			}
			rest = append(strings.Split(target, "/"), rest...)
		case fi.IsDir():
			if err := b.mkdir(next, fi.Mode().Perm()); err != nil {
				return "", err
			}
			cur = next
		case fi.Mode().IsRegular() && len(rest) == 0:
			if err := b.copyFile(next, fi); err != nil {
				return "", err
			}
			return next, nil
		case len(rest) > 0:
			return "", &os.PathError{Op: "install", Path: next, Err: ErrNotDir}
		default:
			return "", &os.PathError{Op: "install", Path: next, Err: errors.New("not a regular file, directory or symbolic link")}
		}
	}
	return cur, nil
}

// mkdir creates the host directory p in the tree with mode perm, unless it
// is already there.
func (b *builder) mkdir(p string, perm fs.FileMode) error {
	if b.done[p] {
		return nil
	}
	if err := b.ensureDir(rel(p), perm); err != nil {
		return err
	}
	b.done[p] = true
	return nil
}

// ensureDir makes name a directory of the tree. A new one gets mode perm and
// the tree's owner; an existing directory is left as it is, so a refresh keeps
// what the tenant changed; anything else in the way is an error.
func (b *builder) ensureDir(name string, perm fs.FileMode) error {
	fi, err := b.root.Lstat(name)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return &os.PathError{Op: "mkdir", Path: name, Err: ErrNotDir}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := b.root.Mkdir(name, 0o700); err != nil {
		return err
	}
	// Open the new directory without following a link, then set its mode
	// and owner on the descriptor: mkdir(2) applies the umask and drops
	// the sticky bit /tmp needs.
	f, err := b.root.OpenFile(name, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := b.chown(f); err != nil {
		return err
	}
	return f.Chmod(perm)
}

func (b *builder) chown(f *os.File) error {
	if b.uid == 0 && b.gid == 0 {
		return nil
	}
	return f.Chown(b.uid, b.gid)
}

// tempName returns a fresh name beside name for writing it atomically.
func tempName(name string) string {
	var buf [6]byte
	_, _ = rand.Read(buf[:])
	return path.Join(path.Dir(name), "."+path.Base(name)+".jailgate-"+hex.EncodeToString(buf[:]))
}

// symlink recreates the host link p, pointing at target, in the tree. An
// existing link or file of that name is replaced atomically.
func (b *builder) symlink(p, target string) error {
	if b.done[p] {
		return nil
	}
	name := rel(p)
	if fi, err := b.root.Lstat(name); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if old, err := b.root.Readlink(name); err == nil && old == target {
			b.done[p] = true
			return nil
		}
	}
	tmp := tempName(name)
	if err := b.root.Symlink(target, tmp); err != nil {
		return err
	}
	if b.uid != 0 || b.gid != 0 {
		if err := b.root.Lchown(tmp, b.uid, b.gid); err != nil {
			_ = b.root.Remove(tmp)
			return err
		}
	}
	if err := b.root.Rename(tmp, name); err != nil {
		_ = b.root.Remove(tmp)
		return err
	}
	b.done[p] = true
	b.links++
	return nil
}

// copyFile copies the host regular file p into the tree at the same path.
// The copy keeps the permission bits but never the setuid, setgid or sticky
// bits: nothing in a tenant tree may raise privileges on exec.
func (b *builder) copyFile(p string, fi fs.FileInfo) error {
	if b.done[p] {
		return nil
	}
	src, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := b.writeFile(rel(p), fi.Mode().Perm(), src); err != nil {
		return err
	}
	b.done[p] = true
	b.files++
	b.bytes += fi.Size()
	if b.status != nil {
		b.status(fmt.Sprintf("%d files, %s: %s", b.files, sizeText(b.bytes), p))
	}
	return nil
}

// writeFile writes the tree file name from r with mode perm: into a fresh
// temporary file beside it, then renamed over it, so a reader never sees a
// half-written binary and a link at name is replaced, not followed.
func (b *builder) writeFile(name string, perm fs.FileMode, r io.Reader) error {
	tmp := tempName(name)
	f, err := b.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = b.chown(f)
	}
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = b.root.Rename(tmp, name)
	}
	if err != nil {
		_ = b.root.Remove(tmp)
	}
	return err
}

// writeNew writes the tree file name with data and mode perm unless it
// exists already: a refresh leaves files the tenant may have edited alone.
func (b *builder) writeNew(name, data string, perm fs.FileMode) error {
	if _, err := b.root.Lstat(name); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	b.logf("write /%s", name)
	return b.writeFile(name, perm, strings.NewReader(data))
}
