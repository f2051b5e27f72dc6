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
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// This file imports one image once oci.go has told its format: it opens
// the OCI layout or docker save archive with go-containerregistry, picks
// the image of an index (the one for linux/GOARCH), and applies its layers
// in order, whiteouts honoured.

// Whiteout names (OCI image-spec layer.md "Whiteouts", from AUFS): a file
// .wh.NAME deletes NAME of the lower layers; .wh..wh..opq makes its
// directory opaque: nothing of the lower layers shows through it.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

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
