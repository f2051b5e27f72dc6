package rootfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// This file imports container images: an OCI image layout (a directory,
// or a tar of one as `skopeo copy … oci-archive:` writes) or a `docker
// save` archive. Here the file's format is told and an archive unpacked;
// oci_image.go has go-containerregistry read the formats (index,
// manifests, config, blobs) and applies the layers one after the other by
// the same extractor as a plain tarball, so each entry of each layer gets
// the same checks. Its mutate.Extract is not used: it flattens an image
// without them.

// ImportFile imports file into dir, whatever it is: an OCI image layout
// directory; a tar of one (oci-layout and index.json at its top); a
// `docker save` archive (manifest.json at its top); else a root filesystem
// tarball for Import. Archives may be gzip- or zstd-compressed. Images
// have their layers applied in order with whiteouts honoured, each entry
// checked as Import checks it. An index of several platforms gives the
// image for linux/GOARCH, and the log says so.
//
// An OCI archive is unpacked, and a compressed docker save archive
// decompressed, into a temporary directory beside dir first, removed at
// the end.
func ImportFile(dir, file string, opts ImportOptions) (ImportStats, error) {
	st, err := importFile(dir, file, opts)
	if err != nil {
		return st, fmt.Errorf("import %s: %w", file, err)
	}
	return st, nil
}

func importFile(dir, file string, opts ImportOptions) (ImportStats, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return ImportStats{}, err
	}
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(file, "oci-layout")); err != nil {
			return ImportStats{}, errors.New("a directory, but not an OCI image layout (it has no oci-layout file)")
		}
		opts.logf("reading the OCI image layout %s", file)
		return importLayout(dir, file, opts)
	}
	kind, compressed, err := sniffFile(file)
	if err != nil {
		return ImportStats{}, err
	}
	if kind == plainTar {
		f, err := os.Open(file)
		if err != nil {
			return ImportStats{}, err
		}
		defer f.Close()
		return Import(dir, f, opts)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".unpack-")
	if err != nil {
		return ImportStats{}, err
	}
	defer os.RemoveAll(tmp)
	if kind == ociArchive {
		opts.logf("unpacking the OCI image archive")
		layoutDir := filepath.Join(tmp, "layout")
		if err := unpackLayout(layoutDir, file); err != nil {
			return ImportStats{}, err
		}
		return importLayout(dir, layoutDir, opts)
	}
	if compressed {
		// The docker save reader re-reads the archive for each file it
		// needs: give it an uncompressed copy.
		opts.logf("decompressing %s", file)
		plain := filepath.Join(tmp, "archive.tar")
		if err := decompressTo(plain, file); err != nil {
			return ImportStats{}, err
		}
		file = plain
	}
	opts.logf("reading the docker save archive")
	return importDockerArchive(dir, file, opts)
}

// archiveKind is what an archive holds.
type archiveKind int

const (
	plainTar      archiveKind = iota // a root filesystem
	ociArchive                       // an OCI image layout
	dockerArchive                    // `docker save` output (manifest.json; Docker >= 25 also writes an OCI layout)
)

// imageMember matches the top-level names of an image archive: OCI
// blobs/ and its files, Docker's repositories file and (before Docker 25,
// or from go-containerregistry) layers and configs named by their hashes:
// HASH/layer.tar, HASH.json, HASH.tar.gz, sha256:HASH.
var imageMember = regexp.MustCompile(`^(oci-layout|index\.json|manifest\.json|repositories|blobs(/.*)?|(sha256:)?[0-9a-f]{64}([./].*)?)$`)

// sniffFile reads file's tar headers (decompressed) far enough to tell
// what it holds: the first name an image archive would not have makes it
// a root filesystem, which is usually the first entry.
func sniffFile(file string) (archiveKind, bool, error) {
	r, compressed, err := openDecompressed(file)
	if err != nil {
		return 0, false, err
	}
	defer r.Close()
	var layoutFile, index, manifest bool
	tr := tar.NewReader(r)
	for i := 0; ; i++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if i == 0 {
				return 0, false, fmt.Errorf("not a tar archive, OCI image layout or docker save archive: %w", err)
			}
			return 0, false, fmt.Errorf("read archive: %w", err)
		}
		name := cleanEntry(h.Name)
		switch {
		case name == "":
		case !imageMember.MatchString(name):
			return plainTar, compressed, nil
		case name == "oci-layout":
			layoutFile = true
		case name == "index.json":
			index = true
		case name == "manifest.json":
			manifest = true
		}
	}
	switch {
	case manifest:
		return dockerArchive, compressed, nil
	case layoutFile && index:
		return ociArchive, compressed, nil
	}
	return plainTar, compressed, nil
}

// openDecompressed opens file for reading its content decompressed, and
// says whether it was compressed. Closing it closes the file.
func openDecompressed(file string) (io.ReadCloser, bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, false, err
	}
	r, compressed, err := decompress(f)
	if err != nil {
		f.Close()
		return nil, false, err
	}
	return &readCloser{r, func() error { r.Close(); return f.Close() }}, compressed, nil
}

// readCloser is a reader with a Close of its own.
type readCloser struct {
	io.Reader
	close func() error
}

func (rc *readCloser) Close() error { return rc.close() }

// decompressTo writes the decompressed content of file to dst.
func decompressTo(dst, file string) error {
	r, _, err := openDecompressed(file)
	if err != nil {
		return err
	}
	defer r.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := copyTo(out, r); err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	return nil
}

// unpackLayout unpacks the OCI layout in the tar file (compressed or
// not) into dst: only its
// directories and regular files (oci-layout, index.json, blobs/…), through
// the extractor. A link would let a blob name a file of the host.
func unpackLayout(dst, file string) error {
	r, _, err := openDecompressed(file)
	if err != nil {
		return err
	}
	defer r.Close()
	x, err := newExtractor(dst, ImportOptions{})
	if err != nil {
		return err
	}
	defer x.root.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name := cleanEntry(h.Name)
		if name == "" || h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeDir ||
			name != "oci-layout" && name != "index.json" && name != "blobs" && !strings.HasPrefix(name, "blobs/") {
			continue
		}
		if err := x.entry(tr, h, name); err != nil {
			return fmt.Errorf("unpack %s: %w", h.Name, err)
		}
	}
}
