package rootfs

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// ImportOptions tune Import.
type ImportOptions struct {
	KeepSetuid bool                             // keep setuid/setgid bits (default: stripped)
	Log        func(format string, args ...any) // progress and skipped entries; nil: silent
}

// ImportStats counts what Import did.
type ImportStats struct {
	Files, Dirs, Links, Skipped int
}

// Import unpacks a root filesystem tarball (.tar or .tar.gz, e.g. `docker
// export` output) into dir, treating every entry as hostile: all writes go
// through an os.Root on dir, so no entry escapes it by "..", an absolute
// path or a symlinked parent; device nodes and fifos are dropped; setuid
// and setgid bits are stripped unless KeepSetuid. Ownership is kept as in
// the archive (the tenant's shift happens later, as for any rootfs).
func Import(dir string, r io.Reader, opts ImportOptions) (ImportStats, error) {
	var st ImportStats
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return st, fmt.Errorf("import: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return st, fmt.Errorf("import: %w", err)
	}
	defer root.Close()
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return st, fmt.Errorf("import: %w", err)
		}
		defer zr.Close()
		r = zr
	} else {
		r = br
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return st, nil
		}
		if err != nil {
			return st, fmt.Errorf("import: %w", err)
		}
		name := cleanEntry(h.Name)
		if name == "" {
			continue // the root itself
		}
		mode := fs.FileMode(h.Mode).Perm() | fs.FileMode(h.Mode)&(fs.ModeSticky)
		if h.Mode&0o4000 != 0 && opts.KeepSetuid {
			mode |= fs.ModeSetuid
		}
		if h.Mode&0o2000 != 0 && opts.KeepSetuid {
			mode |= fs.ModeSetgid
		}
		if err := importEntry(root, tr, h, name, mode, &st); err != nil {
			// One refused entry (it would escape, or its parent is a link
			// out) is skipped and said; the rest goes on.
			st.Skipped++
			logf("skipped %s: %v", h.Name, err)
		}
	}
}

// cleanEntry maps an archive name into the tree: leading "/" and "./"
// dropped, cleaned; a name that still climbs out ("../x") becomes "".
func cleanEntry(name string) string {
	p := path.Clean("/" + strings.TrimPrefix(name, "./"))
	p = strings.TrimPrefix(p, "/")
	if p == "." || strings.HasPrefix(p, "..") {
		return ""
	}
	return p
}

// importEntry writes one entry through root.
func importEntry(root *os.Root, tr *tar.Reader, h *tar.Header, name string, mode fs.FileMode, st *ImportStats) error {
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := root.MkdirAll(name, 0o755); err != nil {
			return err
		}
		st.Dirs++
	case tar.TypeReg:
		root.Remove(name) // replace, never write through an existing link
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		st.Files++
	case tar.TypeSymlink:
		root.Remove(name)
		if err := root.Symlink(h.Linkname, name); err != nil {
			return err
		}
		st.Links++
		return root.Lchown(name, h.Uid, h.Gid)
	case tar.TypeLink:
		target := cleanEntry(h.Linkname)
		if target == "" {
			return errors.New("hard link out of the tree")
		}
		root.Remove(name)
		if err := root.Link(target, name); err != nil {
			return err
		}
		st.Links++
		return nil
	default:
		return fmt.Errorf("entry type %q not imported (devices and fifos are dropped)", h.Typeflag)
	}
	if err := root.Lchown(name, h.Uid, h.Gid); err != nil {
		return err
	}
	return root.Chmod(name, mode)
}
