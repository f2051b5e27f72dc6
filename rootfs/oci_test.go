package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/zstd"
)

// ent is one tar entry of a test layer; body is a regular file's content.
type ent struct {
	name string
	typ  byte
	body string // content, or the link target
	mode int64
}

func file(name, body string) ent { return ent{name: name, typ: tar.TypeReg, body: body} }
func dir(name string) ent        { return ent{name: name, typ: tar.TypeDir} }
func link(name, to string) ent   { return ent{name: name, typ: tar.TypeSymlink, body: to} }

// tarOf builds a tar of ents, owned by the test's own ids so that it
// imports unprivileged too.
func tarOf(t *testing.T, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: os.Getuid(), Gid: os.Getgid()}
		if h.Mode == 0 {
			h.Mode = 0o644
			if e.typ == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		switch e.typ {
		case tar.TypeReg:
			h.Size = int64(len(e.body))
		case tar.TypeSymlink, tar.TypeLink:
			h.Linkname = e.body
		case tar.TypeBlock, tar.TypeChar:
			h.Devmajor = 8
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imageOf makes an image of the layers (gzip-compressed, as registries
// serve them).
func imageOf(t *testing.T, layers ...[]byte) v1.Image {
	t.Helper()
	img := empty.Image
	for _, b := range layers {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// hostileLayers is a base layer and two layers over it that delete, make
// opaque, replace, and try every way out of the tree.
func hostileLayers(t *testing.T, outside string) [][]byte {
	base := tarOf(t,
		dir("etc/"), file("etc/passwd", "base"), file("etc/keep", "keep"),
		dir("opq/"), file("opq/lower1", "x"), dir("opq/sub/"), file("opq/sub/lower2", "x"),
		dir("gone/"), file("gone/file", "x"), file("gonefile", "x"),
		file("replaced", "lower"), link("link", "etc"),
		dir("dirtofile/"), file("dirtofile/x", "x"), file("filetodir", "x"),
	)
	second := tarOf(t,
		file(".wh.gonefile", ""), file(".wh.gone", ""),
		file("opq/.wh..wh..opq", ""), file("opq/new", "new"), file("opq/sub/newer", "newer"),
		file("replaced", "upper"), file("dirtofile", "now a file"), dir("filetodir/"), file("filetodir/y", "y"),
		file(".wh..wh.plnk", ""), // AUFS metadata: ignored
		// The hostile part.
		file("../../"+filepath.Base(outside)+"/evil1", "x"),
		file(outside+"/evil2", "x"),
		link("out", outside),
		file("out/evil3", "x"),
		file("out/.wh.victim", ""),   // a whiteout through a link out
		file("out/.wh..wh..opq", ""), // an opaque dir through a link out
		file("etc/.wh..", ""),        // a whiteout of nothing
		ent{name: "dev/sda", typ: tar.TypeBlock},
		ent{name: "dev/fifo", typ: tar.TypeFifo},
		ent{name: "usr/bin/su", typ: tar.TypeReg, body: "elf", mode: 0o4755},
	)
	third := tarOf(t, file("etc/passwd", "final"), file("opq/new2", "new2"))
	return [][]byte{base, second, third}
}

// wantHostile is the tree hostileLayers must give, as treeOf shows it.
func wantHostile(outside string) map[string]string {
	want := map[string]string{
		"etc": "d", "etc/passwd": "f final", "etc/keep": "f keep",
		"opq": "d", "opq/new": "f new", "opq/new2": "f new2", "opq/sub": "d", "opq/sub/newer": "f newer",
		"replaced": "f upper", "link": "l etc", "dirtofile": "f now a file",
		"filetodir": "d", "filetodir/y": "f y", "out": "l " + outside,
		"usr": "d", "usr/bin": "d", "usr/bin/su": "f elf",
		filepath.Base(outside):            "d",
		filepath.Base(outside) + "/evil1": "f x",
	}
	// The absolute entry lands inside, under its own path.
	p := strings.TrimPrefix(outside, "/")
	want[p+"/evil2"] = "f x"
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		want[d] = "d"
	}
	want[p] = "d"
	return want
}

// treeOf describes every path under dir: "d", "f CONTENT" or "l TARGET".
func treeOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.IsDir():
			got[rel] = "d"
		case d.Type()&fs.ModeSymlink != 0:
			to, _ := os.Readlink(p)
			got[rel] = "l " + to
		case d.Type().IsRegular():
			b, _ := os.ReadFile(p)
			got[rel] = "f " + string(b)
		default:
			got[rel] = "other " + d.Type().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// assertTree fails the test on every difference between dir and want.
func assertTree(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	got := treeOf(t, dir)
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if got[k] != want[k] {
			t.Errorf("%s: got %q, want %q", k, got[k], want[k])
		}
	}
}

// writeLayout writes img as an OCI image layout directory.
func writeLayout(t *testing.T, img v1.Image) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tarDir archives the directory src as a tar file (gzipped if zip), as
// `skopeo copy … oci-archive:` does with a layout.
func tarDir(t *testing.T, src string, zip bool) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "archive.tar")
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if zip {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == src {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name, _ = filepath.Rel(src, p)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			tw.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	if zw != nil {
		zw.Close()
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// gzipFile writes a gzipped copy of file.
func gzipFile(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	out := file + ".gz"
	if err := os.WriteFile(out, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// dockerSave writes img as `docker save` does.
func dockerSave(t *testing.T, img v1.Image) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "saved.tar")
	tag, err := name.NewTag("example.com/hostile:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		t.Fatal(err)
	}
	return out
}

// legacySave writes layers as `docker save` did before Docker 25:
// uncompressed HASH/layer.tar files, HASH.json the config.
func legacySave(t *testing.T, layers [][]byte) string {
	t.Helper()
	var diffIDs, paths []string
	files := map[string][]byte{}
	for _, l := range layers {
		sum := sha256.Sum256(l)
		h := hex.EncodeToString(sum[:])
		diffIDs = append(diffIDs, `"sha256:`+h+`"`)
		paths = append(paths, `"`+h+`/layer.tar"`)
		files[h+"/layer.tar"] = l
	}
	cfg := []byte(`{"architecture":"` + runtime.GOARCH + `","os":"linux","rootfs":{"type":"layers","diff_ids":[` + strings.Join(diffIDs, ",") + `]}}`)
	sum := sha256.Sum256(cfg)
	files[hex.EncodeToString(sum[:])+".json"] = cfg
	files["manifest.json"] = []byte(`[{"Config":"` + hex.EncodeToString(sum[:]) + `.json","RepoTags":["hostile:1"],"Layers":[` + strings.Join(paths, ",") + `]}]`)
	var ents []ent
	for _, n := range slices.Sorted(maps.Keys(files)) {
		ents = append(ents, file(n, string(files[n])))
	}
	out := filepath.Join(t.TempDir(), "legacy.tar")
	if err := os.WriteFile(out, tarOf(t, ents...), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestImportImageLayers applies hostile layered images in every form an
// operator may have them: whiteouts delete, opaque directories empty,
// later layers win, and nothing is written outside the target.
func TestImportImageLayers(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("still here"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := imageOf(t, hostileLayers(t, outside)...)
	lay := writeLayout(t, img)
	forms := map[string]string{
		"layout dir":          lay,
		"oci archive":         tarDir(t, lay, false),
		"oci archive gzipped": tarDir(t, lay, true),
		"docker save":         dockerSave(t, img),
		"docker save gzipped": gzipFile(t, dockerSave(t, img)),
		"docker save legacy":  legacySave(t, hostileLayers(t, outside)),
	}
	for form, src := range forms {
		t.Run(form, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "img")
			var log []string
			st, err := ImportFile(dst, src, ImportOptions{Log: func(f string, a ...any) {
				log = append(log, fmt.Sprintf(f, a...))
			}})
			if err != nil {
				t.Fatal(err)
			}
			assertTree(t, dst, wantHostile(outside))
			if ents, _ := os.ReadDir(outside); len(ents) != 1 {
				t.Errorf("the import wrote outside its target: %v", ents)
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "victim")); string(b) != "still here" {
				t.Error("a whiteout through a link out deleted a host file")
			}
			if fi, err := os.Stat(filepath.Join(dst, "usr/bin/su")); err != nil || fi.Mode()&fs.ModeSetuid != 0 {
				t.Errorf("usr/bin/su: %v %v (setuid must be stripped)", fi, err)
			}
			// evil3 and the whiteout through the link, the empty
			// whiteout, the device and the fifo. (The opaque marker
			// through the link is no directory of the tree: nothing to do.)
			if st.Skipped != 5 {
				t.Errorf("skipped %d entries, want 5; log:\n%s", st.Skipped, strings.Join(log, "\n"))
			}
			// Refused entries are named with their layer.
			if !slices.ContainsFunc(log, func(l string) bool {
				return strings.HasPrefix(l, "layer 2/3 sha256:") && strings.Contains(l, "skipped out/evil3:")
			}) {
				t.Errorf("no log line names layer 2/3 and out/evil3:\n%s", strings.Join(log, "\n"))
			}
			if entries, _ := os.ReadDir(filepath.Dir(dst)); len(entries) != 1 {
				t.Errorf("temporary files left beside the image: %v", entries)
			}
		})
	}
}

// TestImportOpaqueKeepsThisLayer: an opaque marker after this layer's own
// entries in the directory (the spec only says it SHOULD come first)
// still hides only the lower layers' content.
func TestImportOpaqueKeepsThisLayer(t *testing.T) {
	img := imageOf(t,
		tarOf(t, dir("d/"), file("d/old", "x"), dir("d/sub/"), file("d/sub/old", "x"), file("d/sub/keep-not", "x")),
		tarOf(t, file("d/sub/mine", "m"), dir("d/sub2/"), file("d/.wh..wh..opq", ""), file(".wh.nothing", "")),
	)
	dst := filepath.Join(t.TempDir(), "img")
	if _, err := ImportFile(dst, writeLayout(t, img), ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	assertTree(t, dst, map[string]string{"d": "d", "d/sub": "d", "d/sub/mine": "f m", "d/sub2": "d"})
}

// TestImportPlatformIndex: of a multi-platform index, the host's image is
// imported, and the log says which.
func TestImportPlatformIndex(t *testing.T) {
	var idx v1.ImageIndex = empty.Index
	for _, arch := range []string{"arm64", runtime.GOARCH, "s390x"} {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        imageOf(t, tarOf(t, file("arch", arch))),
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	// An attestation manifest, as BuildKit adds: never a candidate.
	idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
		Add:        imageOf(t, tarOf(t, file("attestation", "x"))),
		Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}},
	})
	src := filepath.Join(t.TempDir(), "layout")
	// Nested, as docker save (Docker >= 25) writes it: index.json → index.
	if _, err := layout.Write(src, mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: idx})); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	dst := filepath.Join(t.TempDir(), "img")
	_, err := ImportFile(dst, src, ImportOptions{Log: func(f string, a ...any) { fmt.Fprintf(&log, f+"\n", a...) }})
	if err != nil {
		t.Fatal(err)
	}
	assertTree(t, dst, map[string]string{"arch": "f " + runtime.GOARCH})
	if !strings.Contains(log.String(), "importing linux/"+runtime.GOARCH) || !strings.Contains(log.String(), "linux/arm64") {
		t.Errorf("the log does not say which platform was chosen:\n%s", log.String())
	}

	// No image for this host: refused, naming what there is.
	other := filepath.Join(t.TempDir(), "layout")
	idx = empty.Index
	for _, arch := range []string{"arm64", "s390x"} {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        imageOf(t, tarOf(t, file("arch", arch))),
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	if _, err := layout.Write(other, idx); err != nil {
		t.Fatal(err)
	}
	_, err = ImportFile(filepath.Join(t.TempDir(), "img"), other, ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), "linux/arm64, linux/s390x") || !strings.Contains(err.Error(), other) {
		t.Errorf("got %v, want an error naming the file and the platforms it has", err)
	}
}

// TestImportCorruptLayer: a layer whose content does not match its
// diff_id fails the import, naming the layer.
func TestImportCorruptLayer(t *testing.T) {
	img := imageOf(t, tarOf(t, file("a", "a")), tarOf(t, file("b", "b")))
	src := writeLayout(t, img)
	layers, _ := img.Layers()
	dg, _ := layers[1].Digest()
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(tarOf(t, file("b", "altered")))
	zw.Close()
	if err := os.WriteFile(filepath.Join(src, "blobs", dg.Algorithm, dg.Hex), zipped.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ImportFile(filepath.Join(t.TempDir(), "img"), src, ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), "layer 2/2 sha256:") || !strings.Contains(err.Error(), "diff_id") {
		t.Errorf("got %v, want a diff_id mismatch naming layer 2/2", err)
	}
}

// TestImportFileKinds: what ImportFile makes of each kind of input.
func TestImportFileKinds(t *testing.T) {
	plain := tarOf(t, dir("bin/"), file("bin/sh", "sh"), file("manifest.json", "[]"))
	tmp := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	zst := zw.EncodeAll(plain, nil)
	tarFile := write("plain.tar", plain)
	for _, src := range []string{tarFile, gzipFile(t, tarFile), write("plain.tar.zst", zst)} {
		dst := filepath.Join(t.TempDir(), "img")
		if _, err := ImportFile(dst, src, ImportOptions{}); err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		assertTree(t, dst, map[string]string{"bin": "d", "bin/sh": "f sh", "manifest.json": "f []"})
	}
	for src, want := range map[string]string{
		write("junk", []byte("not an archive at all, not even close to one; "+strings.Repeat("x", 600))): "not a tar archive",
		t.TempDir():                   "not an OCI image layout",
		filepath.Join(tmp, "missing"): "no such file",
	} {
		_, err := ImportFile(filepath.Join(t.TempDir(), "img"), src, ImportOptions{})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), src) {
			t.Errorf("%s: got %v, want %q and the file's name", src, err, want)
		}
	}
}
