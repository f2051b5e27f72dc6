// Package atomicfile is jailgate's one way to write a file that must
// survive a crash whole: the data goes to a new temporary file beside the
// target (O_EXCL|O_NOFOLLOW, so a planted name or symlink is never written
// through), is fsynced, then renamed (or linked) into place, and the
// directory is fsynced so that the rename itself is durable. A reader sees
// the old content or the new, never a part of either.
//
// It imports no project package, so every layer may use it.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// WriteFile replaces path with data, created with mode perm.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, os.Rename)
}

// Create writes data to path, created with mode perm, only if path does not
// exist yet: link(2) never replaces a file, so of two racing writers one
// wins and the other gets an error matching fs.ErrExist (and the file the
// winner wrote, whole).
func Create(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, os.Link)
}

// write puts data in a temporary file in path's directory, then place()s it
// at path and syncs the directory.
func write(path string, data []byte, perm fs.FileMode, place func(tmp, path string) error) error {
	dir := filepath.Dir(path)
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+filepath.Base(path)+"."+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // after a rename there is nothing left to remove
	// The umask may have cut perm; the file gets exactly what was asked.
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := place(tmp, path); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) {
			return &fs.PathError{Op: "write", Path: path, Err: le.Err}
		}
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs directory dir, making the renames, links and removals in
// it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return &fs.PathError{Op: "fsync", Path: dir, Err: err}
	}
	return nil
}
