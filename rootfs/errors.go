package rootfs

import "errors"

// ErrNotDir is wrapped by errors about a root filesystem path that exists but
// is not a directory.
var ErrNotDir = errors.New("not a directory")

// ErrSymlink is wrapped by errors about a root filesystem path that is a
// symbolic link. A tenant tree is never entered through a link: whoever can
// change the link could point the shift at any host directory.
var ErrSymlink = errors.New("is a symbolic link")

// ErrNotEmpty is wrapped by FromHost's error when the target directory holds
// files that FromHost did not put there.
var ErrNotEmpty = errors.New("directory not empty and not built by FromHost")

// ErrInUse is wrapped by Prepare's error when the directory is recorded as
// the root filesystem of another tenant. Two tenants sharing one tree would
// share files across their id ranges.
var ErrInUse = errors.New("rootfs in use by another tenant")

// inUseError names the tenant a directory belongs to; it matches ErrInUse.
type inUseError struct {
	dir, tenant string
}

func (e *inUseError) Error() string {
	return "rootfs " + e.dir + " is already prepared for tenant " + e.tenant
}

func (e *inUseError) Is(target error) bool { return target == ErrInUse }
