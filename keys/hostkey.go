package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/internal/atomicfile"
)

// hostKeyComment is the comment stored in a generated key and its .pub file.
const hostKeyComment = "jailgate host key"

// LoadOrCreateHostKey returns the host key stored at path, an unencrypted
// OpenSSH private key. If there is none, it generates an ed25519 key and
// stores it there with mode 0600, plus its public half in path+".pub".
//
// An existing key is refused if it is a symlink, not a regular file, or has
// any group or other permission bit set (as sshd refuses such host keys).
// Creation is safe against a concurrent creator: the key is written with
// atomicfile.Create (a temporary file opened O_EXCL, synced, and hard-linked
// into place), which fails rather than replacing a key another process
// stored meanwhile; that key is then loaded instead.
func LoadOrCreateHostKey(path string) (gossh.Signer, error) {
	s, err := loadHostKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	s, err = createHostKey(path)
	if errors.Is(err, fs.ErrExist) {
		// Lost the race to another process: use the key it stored.
		return loadHostKey(path)
	}
	return s, err
}

// loadHostKey loads an existing key; its error wraps fs.ErrNotExist if
// there is no file at path.
func loadHostKey(path string) (gossh.Signer, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("load host key: %w", err)
	}
	if err := checkHostKeyMode(path, fi); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load host key: %w", err)
	}
	defer f.Close()
	// Check that what we opened is what we inspected: path may have been
	// swapped for a symlink between Lstat and Open.
	ofi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load host key: %w", err)
	}
	if !os.SameFile(fi, ofi) {
		return nil, fmt.Errorf("load host key %s: file changed while opening it", path)
	}
	const maxKeySize = 64 << 10 // far above any OpenSSH private key
	data, err := io.ReadAll(io.LimitReader(f, maxKeySize+1))
	if err != nil {
		return nil, fmt.Errorf("load host key: %w", err)
	}
	if len(data) > maxKeySize {
		return nil, fmt.Errorf("parse host key %s: larger than %d bytes", path, maxKeySize)
	}
	s, err := gossh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("parse host key %s: %w", path, err)
	}
	return s, nil
}

// checkHostKeyMode refuses anything but a regular file private to its owner.
func checkHostKeyMode(path string, fi fs.FileInfo) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("host key %s is a symlink; refusing to follow it (point host_key at the file itself)", path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("host key %s is not a regular file (mode %s)", path, fi.Mode())
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("host key %s is readable by group or others (mode %04o); run: chmod 600 %s",
			path, fi.Mode().Perm(), path)
	}
	return nil
}

// createHostKey generates and stores a new key. Its error wraps fs.ErrExist
// if a key appeared at path meanwhile.
func createHostKey(path string) (gossh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate host key: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(priv, hostKeyComment)
	if err != nil {
		return nil, fmt.Errorf("generate host key: %w", err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("generate host key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create host key directory: %w", err)
	}
	// atomicfile.Create links the synced key into place, and link(2) never
	// replaces an existing file: if another process stored a key first,
	// this fails with fs.ErrExist and the caller loads that key.
	if err := atomicfile.Create(path, pem.EncodeToMemory(block), 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		return nil, fmt.Errorf("create host key: %w", err)
	}

	pub := gossh.MarshalAuthorizedKey(signer.PublicKey())
	pub = append(pub[:len(pub)-1], " "+hostKeyComment+"\n"...)
	// The .pub file is derived data: replacing a stale one is fine.
	if err := atomicfile.WriteFile(path+".pub", pub, 0o644); err != nil {
		return nil, fmt.Errorf("create host key %s.pub: %w", path, err)
	}
	return signer, nil
}
