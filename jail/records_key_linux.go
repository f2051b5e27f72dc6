package jail

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// A key's link, <dir>/key-<hash of the key> -> <env name>, and its lock:
// two gateways on one state_dir (the two sides of an upgrade) never both
// start an environment of one key (tenant/alice): the second takes over
// the first's (Environment's startOrJoin).

// keyLink names the symlink to the environment serving key, so that a
// gateway that misses a key looks for one another gateway started.
func keyLink(dir, key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(dir, "key-"+hex.EncodeToString(sum[:8]))
}

// lockKey takes the lock of key on this state_dir: one gateway at a time
// looks for and starts its environment.
func lockKey(dir, key string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := keyLink(dir, key) + ".lock"
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, err
		}
		for {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		if err != nil {
			f.Close()
			return nil, err
		}
		// forgetKey may have removed the file while this one waited: the
		// lock counts only on the file the path names now.
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(path, &now) == nil && held.Ino == now.Ino {
			return func() { f.Close() }, nil
		}
		f.Close()
	}
}

// liveByKey is the live environment of key another gateway recorded, or nil.
func liveByKey(dir, key string) *EnvRecord {
	name, err := os.Readlink(keyLink(dir, key))
	if err != nil || strings.ContainsRune(name, '/') {
		return nil
	}
	r, err := readRecord(dir, name)
	if err != nil || r.Key != key {
		return nil
	}
	return r
}

// linkKey points key's link at the environment name.
func linkKey(dir, key, name string) error {
	tmp := keyLink(dir, key) + ".new"
	os.Remove(tmp)
	if err := os.Symlink(name, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, keyLink(dir, key))
}

// unlinkKey removes key's link if it still names the environment name
// (a failed start's undo, which holds key's lock).
func unlinkKey(dir, key, name string) {
	if cur, err := os.Readlink(keyLink(dir, key)); err == nil && cur == name {
		os.Remove(keyLink(dir, key))
	}
}

// forgetKey removes key's link if it names the environment name, which has
// ended, and then its lock file, under that lock.
func forgetKey(dir, key, name string) {
	if dir == "" {
		return
	}
	unlock, err := lockKey(dir, key)
	if err != nil {
		return
	}
	defer unlock()
	unlinkKey(dir, key, name)
	if _, err := os.Lstat(keyLink(dir, key)); errors.Is(err, fs.ErrNotExist) {
		os.Remove(keyLink(dir, key) + ".lock")
	}
}

// sweepKeyLink removes a key link whose environment's record is gone, and
// its lock file, unless a gateway holds that lock (starting it right now).
func sweepKeyLink(dir, link string) {
	name, err := os.Readlink(link)
	if err == nil && !strings.ContainsRune(name, '/') {
		if _, err := os.Lstat(recordPath(dir, name)); err == nil {
			return
		}
	}
	f, err := os.OpenFile(link+".lock", os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		defer f.Close()
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			return
		}
	}
	os.Remove(link)
	os.Remove(link + ".lock")
}
