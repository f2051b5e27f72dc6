package keys

import (
	"crypto/sha256"
	"encoding/base64"

	gossh "golang.org/x/crypto/ssh"
)

// Key is one parsed authorized_keys line.
type Key struct {
	Key     gossh.PublicKey // the public key
	Comment string          // the trailing comment, possibly empty
	Options []string        // options before the key type, as written
	Line    int             // 1-based line in its source
}

// Index answers "is this key one of this tenant's keys?". It is built once
// per configuration snapshot and is safe for concurrent reads.
type Index struct {
	byUser map[string]map[string]bool // user -> marshalled key -> true
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{byUser: map[string]map[string]bool{}}
}

// Add lists key as one of user's keys.
func (ix *Index) Add(user string, key gossh.PublicKey) {
	m := ix.byUser[user]
	if m == nil {
		m = map[string]bool{}
		ix.byUser[user] = m
	}
	m[string(key.Marshal())] = true
}

// Authorize reports whether key is listed for user. Keys compare by their
// wire encoding, as ssh.KeysEqual does.
func (ix *Index) Authorize(user string, key gossh.PublicKey) bool {
	if ix == nil || key == nil {
		return false
	}
	return ix.byUser[user][string(key.Marshal())]
}

// Fingerprint returns the OpenSSH SHA256 fingerprint of key, as ssh-keygen -l prints it.
func Fingerprint(key gossh.PublicKey) string {
	sum := sha256.Sum256(key.Marshal())
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}
