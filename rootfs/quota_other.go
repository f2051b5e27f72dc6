//go:build !linux

package rootfs

import "errors"

// BtrfsTree is what the btrfs backend needs to know about a tree.
type BtrfsTree struct {
	Btrfs, Subvolume, QuotaOn bool
	FSID                      string
}

// ProbeBtrfs finds no btrfs off Linux.
func ProbeBtrfs(string) (BtrfsTree, error) { return BtrfsTree{}, nil }

// CreateSubvolume needs Linux.
func CreateSubvolume(string) error { return errors.ErrUnsupported }

// SetBtrfsLimit needs Linux.
func SetBtrfsLimit(string, int64) error { return errors.ErrUnsupported }

// MountOf knows no mounts off Linux.
func MountOf(string) (point, fstype, source string) { return "", "", "" }

// TenantUsage knows no quota off Linux.
func TenantUsage(string, string, string) (Usage, bool, error) { return Usage{}, false, nil }

// ProjectQuotaGaps knows no kernel config off Linux.
func ProjectQuotaGaps() []string { return nil }
