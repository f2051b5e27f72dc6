package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"
)

// hostileTar builds an archive that tries every way out of its target.
func hostileTar(t *testing.T, outside string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	add := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	add(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg}, "root:x:0:0::/root:/bin/sh\n")
	add(&tar.Header{Name: "../../" + filepath.Base(outside) + "/evil1", Typeflag: tar.TypeReg}, "x")
	add(&tar.Header{Name: outside + "/evil2", Typeflag: tar.TypeReg}, "x") // absolute
	add(&tar.Header{Name: "out", Typeflag: tar.TypeSymlink, Linkname: outside}, "")
	add(&tar.Header{Name: "out/evil3", Typeflag: tar.TypeReg}, "x") // through a symlinked parent
	add(&tar.Header{Name: "dev/sda", Typeflag: tar.TypeBlock, Devmajor: 8}, "")
	add(&tar.Header{Name: "usr/bin/su", Typeflag: tar.TypeReg, Mode: 0o4755}, "elf")
	add(&tar.Header{Name: "usr/bin/hard", Typeflag: tar.TypeLink, Linkname: "../../../etc/shadow"}, "")
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestImportHostileTarball(t *testing.T) {
	outside := t.TempDir()
	dir := filepath.Join(t.TempDir(), "img")
	st, err := Import(dir, bytes.NewReader(hostileTar(t, outside)), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("the import wrote outside its target: %v", ents)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "etc/passwd")); err != nil || len(b) == 0 {
		t.Errorf("etc/passwd not imported: %v", err)
	}
	// The absolute entry lands inside, under its own path.
	if _, err := os.Stat(filepath.Join(dir, outside, "evil2")); err != nil {
		t.Errorf("absolute entry not placed inside the tree: %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "out")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink entry not kept as a link: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "dev/sda")); err == nil {
		t.Error("a block device was imported")
	}
	if fi, err := os.Stat(filepath.Join(dir, "usr/bin/su")); err != nil || fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("setuid bit kept without KeepSetuid: %v %v", fi.Mode(), err)
	}
	if st.Skipped < 3 { // evil3 through the link, the device, the hard link out
		t.Errorf("skipped %d entries, want at least 3: %+v", st.Skipped, st)
	}
	// With KeepSetuid the bit stays.
	dir2 := filepath.Join(t.TempDir(), "img2")
	if _, err := Import(dir2, bytes.NewReader(hostileTar(t, outside)), ImportOptions{KeepSetuid: true}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir2, "usr/bin/su")); fi == nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Error("KeepSetuid dropped the setuid bit")
	}
}
