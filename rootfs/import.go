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

	"github.com/klauspost/compress/zstd"
)

// ImportOptions tune Import and ImportFile.
type ImportOptions struct {
	KeepSetuid bool                             // keep setuid/setgid bits (default: stripped)
	Log        func(format string, args ...any) // progress and skipped entries; nil: silent
}

func (o *ImportOptions) logf(format string, args ...any) {
	if o.Log != nil {
		o.Log(format, args...)
	}
}

// ImportStats counts what Import did.
type ImportStats struct {
	Files, Dirs, Links, Skipped int
	Whiteouts                   int // paths of lower layers deleted (image layers only)
}

// Import unpacks a root filesystem tarball (.tar, .tar.gz or .tar.zst, e.g.
// `docker export` output) into dir, treating every entry as hostile: all
// writes go through an os.Root on dir, so no entry escapes it by "..", an
// absolute path or a symlinked parent; device nodes and fifos are dropped;
// setuid and setgid bits are stripped unless KeepSetuid. Ownership is kept
// as in the archive (the tenant's shift happens later, as for any rootfs).
// An entry that is refused is skipped and logged; the rest goes on.
func Import(dir string, r io.Reader, opts ImportOptions) (ImportStats, error) {
	x, err := newExtractor(dir, opts)
	if err != nil {
		return ImportStats{}, err
	}
	defer x.root.Close()
	zr, _, err := decompress(r)
	if err != nil {
		return x.st, fmt.Errorf("import: %w", err)
	}
	defer zr.Close()
	err = x.apply(tar.NewReader(zr))
	return x.st, err
}

// decompress returns r's content, gunzipped or unzstd'ed if its first
// bytes say it is compressed (and whether it was). Closing it releases the
// decoder, not r.
func decompress(r io.Reader) (io.ReadCloser, bool, error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(4)
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, false, fmt.Errorf("gzip: %w", err)
		}
		return zr, true, nil
	case string(magic) == "\x28\xb5\x2f\xfd":
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, false, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), true, nil
	}
	return io.NopCloser(br), false, nil
}

// extractor applies tar streams to one tree through an os.Root. With
// layer set it applies an image layer: OCI whiteouts delete what lower
// layers left (image-spec layer.md "Whiteouts").
type extractor struct {
	root  *os.Root
	opts  ImportOptions
	st    ImportStats
	layer string // "layer 2/5 sha256:…" while applying an image layer; "" for a plain tarball

	// Paths this layer wrote, and their parents: an opaque directory
	// hides only the content of lower layers.
	written, parents map[string]bool
}

func newExtractor(dir string, opts ImportOptions) (*extractor, error) {
	if err := MakeTree(dir, 0o755); err != nil { // a subvolume on btrfs: her disk quota's tree
		return nil, fmt.Errorf("import: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return &extractor{root: root, opts: opts}, nil
}

// startLayer makes the next apply an image layer named name.
func (x *extractor) startLayer(name string) {
	x.layer = name
	x.written, x.parents = map[string]bool{}, map[string]bool{}
}

// apply extracts every entry of tr. Only a broken archive is an error; a
// refused entry (it would escape, or its parent is a link out, or it is a
// device) is skipped, counted and logged with its name.
func (x *extractor) apply(tr *tar.Reader) error {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%sread archive: %w", x.where(), err)
		}
		name := cleanEntry(h.Name)
		if name == "" {
			continue // the top itself
		}
		if x.layer != "" && strings.HasPrefix(path.Base(name), whiteoutPrefix) {
			err = x.whiteout(name)
		} else {
			err = x.entry(tr, h, name)
		}
		if err != nil {
			x.st.Skipped++
			x.opts.logf("%sskipped %s: %v", x.where(), h.Name, err)
		}
	}
}

// where prefixes messages about a layer's entries with the layer.
func (x *extractor) where() string {
	if x.layer == "" {
		return ""
	}
	return x.layer + ": "
}

// cleanEntry maps an archive name into the tree: cleaned as a rooted
// path, so a leading "/" or "./" goes and ".." cannot climb above the top
// ("../../etc/x" lands at "etc/x"). The top itself gives "".
func cleanEntry(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// entry writes one entry through the root.
func (x *extractor) entry(tr *tar.Reader, h *tar.Header, name string) error {
	root := x.root
	switch h.Typeflag {
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
	default:
		return fmt.Errorf("entry type %q not imported (devices and fifos are dropped)", h.Typeflag)
	}
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	mode := fs.FileMode(h.Mode).Perm() | fs.FileMode(h.Mode)&fs.ModeSticky
	if h.Mode&0o4000 != 0 && x.opts.KeepSetuid {
		mode |= fs.ModeSetuid
	}
	if h.Mode&0o2000 != 0 && x.opts.KeepSetuid {
		mode |= fs.ModeSetgid
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := x.replace(name, true); err != nil {
			return err
		}
		if err := root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		x.st.Dirs++
	case tar.TypeReg:
		// Replace, never write through an existing file or link.
		if err := x.replace(name, false); err != nil {
			return err
		}
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if err := copyTo(f, tr); err != nil {
			return err
		}
		x.st.Files++
	case tar.TypeSymlink:
		if err := x.replace(name, false); err != nil {
			return err
		}
		if err := root.Symlink(h.Linkname, name); err != nil {
			return err
		}
		x.st.Links++
		x.wrote(name)
		return root.Lchown(name, h.Uid, h.Gid)
	case tar.TypeLink:
		target := cleanEntry(h.Linkname)
		if target == "" {
			return errors.New("hard link out of the tree")
		}
		if err := x.replace(name, false); err != nil {
			return err
		}
		if err := root.Link(target, name); err != nil {
			return err
		}
		x.st.Links++
		x.wrote(name)
		return nil
	}
	x.wrote(name)
	if err := root.Lchown(name, h.Uid, h.Gid); err != nil {
		return err
	}
	return root.Chmod(name, mode)
}

// copyTo copies r into the new file f and closes it; the first error wins.
func copyTo(f *os.File, r io.Reader) error {
	_, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// replace clears the way for an entry at name: whatever is there goes,
// but for a directory where a directory comes (the two merge, as a later
// layer's directory merges with a lower one's).
func (x *extractor) replace(name string, dir bool) error {
	fi, err := x.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if dir && fi.IsDir() {
		return nil
	}
	return x.root.RemoveAll(name)
}

// wrote records that this layer wrote name (for opaque directories).
func (x *extractor) wrote(name string) {
	if x.written == nil {
		return
	}
	x.written[name] = true
	for d := path.Dir(name); d != "." && !x.parents[d]; d = path.Dir(d) {
		x.parents[d] = true
	}
}
