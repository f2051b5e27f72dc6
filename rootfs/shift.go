package rootfs

import (
	"errors"
	"fmt"
	"math"

	"golang.org/x/sys/unix"
)

// ShiftStats counts what a shift did.
type ShiftStats struct {
	Entries  int // entries looked at, the top directory included
	Changed  int // entries whose owner or group was changed
	Unmapped int // entries with an id in neither range, given the range's nobody
	Mounts   int // mount points skipped: other file systems and bind mounts
}

// Shift moves the ownership of every entry under dir, dir included, from the
// host id range [from, from+size) to [to, to+size); uids and gids are mapped
// independently. An id already in the target range is left alone, so a
// shift that was interrupted can be run again; an id in neither range is
// given the nobody of the target range (to+65534, or to+size-1 in a range
// smaller than 65535 ids) and counted in ShiftStats.Unmapped.
//
// The walk never follows a symbolic link: links are re-owned as links
// (fchownat(2) with AT_SYMLINK_NOFOLLOW) and directories are entered by
// descriptor with O_NOFOLLOW, so a link planted in the tree cannot make the
// shift change a host file. It stays on dir's mount: mount points below it
// are skipped. A file with several hard links is shifted once, and the
// setuid and setgid bits that chown(2) clears are set again.
func Shift(dir string, from, to, size uint32) error {
	_, err := ShiftWithStats(dir, from, to, size)
	return err
}

// ShiftWithStats is Shift, also returning what it did.
func ShiftWithStats(dir string, from, to, size uint32) (ShiftStats, error) {
	ids, err := newIDShift(from, to, size)
	if err != nil {
		return ShiftStats{}, fmt.Errorf("rootfs: shift %s: %w", dir, err)
	}
	fd, err := openTree(dir)
	if err != nil {
		return ShiftStats{}, fmt.Errorf("rootfs: shift %s: %w", dir, err)
	}
	defer unix.Close(fd)
	st, err := shiftFD(fd, dir, ids)
	if err != nil {
		return st, fmt.Errorf("rootfs: shift %s: %w", dir, err)
	}
	return st, nil
}

// idShift maps ids from one host range to another.
type idShift struct {
	from, to, size uint64
}

func newIDShift(from, to, size uint32) (idShift, error) {
	s := idShift{uint64(from), uint64(to), uint64(size)}
	switch {
	case size == 0:
		return s, errors.New("empty id range")
	case s.from+s.size > math.MaxUint32+1:
		return s, fmt.Errorf("id range %d+%d passes the largest id", from, size)
	// The last id of the target may not be 4294967295: chown(2) reads it as
	// "leave unchanged".
	case s.to+s.size > math.MaxUint32:
		return s, fmt.Errorf("id range %d+%d passes the largest id", to, size)
	}
	return s, nil
}

// nobody is the id given to owners outside both ranges: the tenant's own
// nobody (65534) if her range has one, else her last id.
func (s idShift) nobody() uint32 {
	if s.size > 65534 {
		return uint32(s.to + 65534)
	}
	return uint32(s.to + s.size - 1)
}

// mapID returns the new value of id, and whether it was in neither range.
func (s idShift) mapID(id uint32) (uint32, bool) {
	x := uint64(id)
	switch {
	case x >= s.from && x < s.from+s.size:
		return uint32(x - s.from + s.to), false
	case x >= s.to && x < s.to+s.size:
		return id, false
	}
	return s.nobody(), true
}
