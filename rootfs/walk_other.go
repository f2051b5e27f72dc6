//go:build !linux

package rootfs

import "errors"

func openTree(dir string) (int, error) { return -1, errors.ErrUnsupported }

func shiftFD(fd int, display string, ids idShift) (ShiftStats, error) {
	return ShiftStats{}, errors.ErrUnsupported
}
