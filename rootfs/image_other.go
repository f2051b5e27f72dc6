//go:build !linux

package rootfs

import (
	"errors"
	"path/filepath"
)

// ImageDir is where image NAME lives under the state directory.
func ImageDir(stateDir, name string) string { return filepath.Join(stateDir, "images", name) }

// MountImage needs Linux.
func MountImage(string, string, string, uint32, uint32) (string, error) {
	return "", errors.ErrUnsupported
}

// UnmountImages needs Linux.
func UnmountImages(string) error { return nil }
