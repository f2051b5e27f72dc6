package rootfs

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
