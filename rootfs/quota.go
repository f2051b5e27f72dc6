package rootfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Disk quota backends, as config's disk_quota names them.
const (
	QuotaProject = "project" // ext4/XFS project quota on her tree
	QuotaBtrfs   = "btrfs"   // her tree a btrfs subvolume with a qgroup limit
	QuotaImage   = "image"   // her layer in an ext4 image file of her quota's size
)

// Quota bounds what a tenant keeps in her tree: Bytes of data and Inodes
// files (0: unlimited), enforced by Backend ("" when nothing is bounded).
type Quota struct {
	Backend       string
	Bytes, Inodes int64
}

// Usage is what a tenant's tree holds against her quota; a zero limit is
// unlimited (or not known to the backend).
type Usage struct {
	Backend             string
	Bytes, BytesLimit   int64
	Inodes, InodesLimit int64
}

// MakeTree is os.MkdirAll(dir, perm), except that dir itself, if it is
// made, is a btrfs subvolume where its parent is on btrfs: a tree of its
// own that the btrfs backend can bound with a qgroup limit later (a plain
// directory cannot become one in place). Elsewhere, or where the
// subvolume is refused, it is a plain directory.
func MakeTree(dir string, perm fs.FileMode) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), perm); err != nil {
		return err
	}
	if t, err := ProbeBtrfs(filepath.Dir(dir)); err == nil && t.Btrfs {
		if err := CreateSubvolume(dir); err == nil {
			return os.Chmod(dir, perm) // the kernel makes it 0755, whatever the umask
		}
	}
	if err := os.Mkdir(dir, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}
