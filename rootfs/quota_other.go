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

// ProjectTree is what the project backend needs to know about a tree.
type ProjectTree struct {
	FS       string
	Enforced bool
	Why      string
}

// ProbeProject finds no project quota off Linux.
func ProbeProject(string) (ProjectTree, error) { return ProjectTree{}, nil }

// SetProject needs Linux.
func SetProject(string, uint32) error { return errors.ErrUnsupported }

// SetProjectLimit needs Linux.
func SetProjectLimit(string, uint32, int64, int64) error { return errors.ErrUnsupported }

// ProjectOf needs Linux.
func ProjectOf(string) (uint32, bool, error) { return 0, false, errors.ErrUnsupported }
