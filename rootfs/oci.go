package rootfs

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// This file imports container images: an OCI image layout (a directory,
// or a tar of one as `skopeo copy … oci-archive:` writes) or a `docker
// save` archive. go-containerregistry reads the formats (index, manifests,
// config, blobs); the layers are applied here, one after the other, by the
// same extractor as a plain tarball, so each entry of each layer gets the
// same checks. Its mutate.Extract is not used: it flattens an image
// without them.

// Whiteout names (OCI image-spec layer.md "Whiteouts", from AUFS): a file
// .wh.NAME deletes NAME of the lower layers; .wh..wh..opq makes its
// directory opaque: nothing of the lower layers shows through it.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

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

// importLayout imports the image of the OCI layout at src.
func importLayout(dir, src string, opts ImportOptions) (ImportStats, error) {
	p, err := layout.FromPath(src)
	if err != nil {
		return ImportStats{}, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return ImportStats{}, fmt.Errorf("index.json: %w", err)
	}
	img, err := pickImage(idx, opts)
	if err != nil {
		return ImportStats{}, err
	}
	return applyImage(dir, img, opts)
}

// importDockerArchive imports the one image of a `docker save` archive.
func importDockerArchive(dir, file string, opts ImportOptions) (ImportStats, error) {
	open := func() (io.ReadCloser, error) { return os.Open(file) }
	m, err := tarball.LoadManifest(open)
	if err != nil {
		return ImportStats{}, fmt.Errorf("manifest.json: %w", err)
	}
	if len(m) != 1 {
		var tags []string
		for _, d := range m {
			tags = append(tags, strings.Join(d.RepoTags, ","))
		}
		return ImportStats{}, fmt.Errorf("manifest.json lists %d images (%s); save one image per archive",
			len(m), strings.Join(tags, "; "))
	}
	img, err := tarball.Image(open, nil)
	if err != nil {
		return ImportStats{}, err
	}
	if len(m[0].RepoTags) > 0 {
		opts.logf("image %s", strings.Join(m[0].RepoTags, ", "))
	}
	return applyImage(dir, img, opts)
}

// candidate is an image manifest found in an index.
type candidate struct {
	desc v1.Descriptor
	idx  v1.ImageIndex // the index that lists it
}

// pickImage chooses the image to import from an index: its only image, or
// the one for linux/GOARCH among several platforms.
func pickImage(idx v1.ImageIndex, opts ImportOptions) (v1.Image, error) {
	var cands []candidate
	if err := collectImages(idx, &cands, 0); err != nil {
		return nil, err
	}
	want := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	switch {
	case len(cands) == 0:
		return nil, errors.New("index.json lists no image manifest")
	case len(cands) == 1:
		c := cands[0]
		if p := c.desc.Platform; p != nil && (p.OS != want.OS || p.Architecture != want.Architecture) {
			opts.logf("warning: the image is for %s, this host is %s: its programs will not run here", p, want.String())
		}
		return c.idx.Image(c.desc.Digest)
	}
	var names []string
	for _, c := range cands {
		if c.desc.Platform == nil {
			names = append(names, imageName(c.desc))
			continue
		}
		names = append(names, c.desc.Platform.String())
	}
	for _, c := range cands {
		if p := c.desc.Platform; p != nil && p.OS == want.OS && p.Architecture == want.Architecture {
			opts.logf("the index lists %d platforms (%s); importing %s, this host's", len(cands), strings.Join(names, ", "), p)
			return c.idx.Image(c.desc.Digest)
		}
	}
	return nil, fmt.Errorf("index.json lists %d images (%s) and none for %s; copy only the one to import", len(cands), strings.Join(names, ", "), want.String())
}

// collectImages appends the image manifests idx lists, through nested
// indexes, leaving out attestations (BuildKit lists them beside images).
func collectImages(idx v1.ImageIndex, out *[]candidate, depth int) error {
	if depth > 4 {
		return errors.New("index.json: indexes nested too deep")
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("index.json: %w", err)
	}
	for _, d := range im.Manifests {
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return fmt.Errorf("index %s: %w", d.Digest, err)
			}
			if err := collectImages(child, out, depth+1); err != nil {
				return err
			}
		case d.MediaType.IsImage():
			if d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" ||
				d.Platform != nil && d.Platform.OS == "unknown" {
				continue
			}
			*out = append(*out, candidate{desc: d, idx: idx})
		}
	}
	return nil
}

// imageName names an index entry for the operator: its reference
// annotation, else its digest.
func imageName(d v1.Descriptor) string {
	for _, k := range []string{"org.opencontainers.image.ref.name", "io.containerd.image.name"} {
		if n := d.Annotations[k]; n != "" {
			return n
		}
	}
	return d.Digest.String()
}

// applyImage applies img's layers to dir in order, each checked against
// the diff_id its config gives (an altered or truncated layer fails the
// import rather than leave a tree nobody built).
func applyImage(dir string, img v1.Image, opts ImportOptions) (ImportStats, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return ImportStats{}, fmt.Errorf("image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return ImportStats{}, fmt.Errorf("layers: %w", err)
	}
	// The diff_ids come from the config itself: a layer's own DiffID may
	// be computed from its content, which would check nothing.
	diffIDs := cf.RootFS.DiffIDs
	if len(diffIDs) != len(layers) {
		return ImportStats{}, fmt.Errorf("the image config lists %d diff_ids for %d layers", len(diffIDs), len(layers))
	}
	if cf.Architecture != "" && cf.Architecture != runtime.GOARCH {
		opts.logf("warning: the image is for %s/%s, this host is linux/%s: its programs will not run here", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	x, err := newExtractor(dir, opts)
	if err != nil {
		return ImportStats{}, err
	}
	defer x.root.Close()
	for i, l := range layers {
		x.startLayer(fmt.Sprintf("layer %d/%d %s", i+1, len(layers), shortHash(diffIDs[i])))
		opts.logf("%s", x.layer)
		if err := applyLayer(x, l, diffIDs[i]); err != nil {
			return x.st, fmt.Errorf("%s: %w", x.layer, err)
		}
	}
	return x.st, nil
}

// applyLayer applies one layer's uncompressed tar stream and checks it
// against diffID.
func applyLayer(x *extractor, l v1.Layer, diffID v1.Hash) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	// A docker save archive may hold a compressed layer its manifest does
	// not say is compressed: look at the bytes.
	r, _, err := decompress(rc)
	if err != nil {
		return err
	}
	defer r.Close()
	sum := sha256.New()
	tee := io.TeeReader(r, sum)
	if err := x.apply(tar.NewReader(tee)); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, tee); err != nil { // the padding after the tar's end
		return err
	}
	if diffID.Algorithm == "sha256" && hex.EncodeToString(sum.Sum(nil)) != diffID.Hex {
		return errors.New("the content does not match its diff_id (the archive is corrupt or was altered)")
	}
	return nil
}

// shortHash is a hash as the operator reads it: algorithm and 12 digits.
func shortHash(h v1.Hash) string {
	if len(h.Hex) > 12 {
		return h.Algorithm + ":" + h.Hex[:12]
	}
	return h.String()
}

// whiteout applies a whiteout entry of the layer: .wh.NAME deletes NAME
// as the lower layers left it, .wh..wh..opq empties its directory of what
// they left. A whiteout applies to lower layers only (image-spec): what
// this layer wrote at that path stays.
func (x *extractor) whiteout(name string) error {
	dir, base := path.Dir(name), path.Base(name)
	if base == whiteoutOpaque {
		x.st.Whiteouts++
		return x.opaque(dir)
	}
	if strings.HasPrefix(base, whiteoutPrefix+whiteoutPrefix) {
		return nil // other AUFS metadata (.wh..wh.plnk …): nothing to apply
	}
	gone := strings.TrimPrefix(base, whiteoutPrefix)
	if gone == "" || gone == "." || gone == ".." {
		return errors.New("whiteout names no file")
	}
	target := path.Join(dir, gone)
	x.st.Whiteouts++
	if x.written[target] || x.parents[target] {
		return x.opaque(target)
	}
	return x.root.RemoveAll(target)
}

// opaque removes from dir everything this layer did not write.
func (x *extractor) opaque(dir string) error {
	fi, err := x.root.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return nil // a file or link of this layer: nothing under it
	}
	return fs.WalkDir(x.root.FS(), dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir || x.written[p] || x.parents[p] {
			return nil // this layer's, or holds some of it: look inside
		}
		if err := x.root.RemoveAll(p); err != nil {
			return err
		}
		if d.IsDir() {
			return fs.SkipDir
		}
		return nil
	})
}
