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
	byUser   map[string]map[string]Options // user -> marshalled key -> its options
	comments map[string]string             // user + marshalled key -> the line's comment
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{byUser: map[string]map[string]Options{}, comments: map[string]string{}}
}

// Add lists key as one of user's keys, with no options.
func (ix *Index) Add(user string, key gossh.PublicKey) { ix.AddWithOptions(user, key, Options{}) }

// AddWithOptions lists key as one of user's keys with its line's options.
// A key listed twice keeps its first options, as sshd uses the first match.
func (ix *Index) AddWithOptions(user string, key gossh.PublicKey, o Options) {
	m := ix.byUser[user]
	if m == nil {
		m = map[string]Options{}
		ix.byUser[user] = m
	}
	if _, dup := m[string(key.Marshal())]; !dup {
		m[string(key.Marshal())] = o
	}
}

// SetComment remembers the comment of user's key line, for the audit log.
func (ix *Index) SetComment(user string, key gossh.PublicKey, comment string) {
	ix.comments[user+"\x00"+string(key.Marshal())] = comment
}

// Comment returns the comment of user's key line, if any.
func (ix *Index) Comment(user string, key gossh.PublicKey) string {
	if ix == nil || key == nil {
		return ""
	}
	return ix.comments[user+"\x00"+string(key.Marshal())]
}

// Authorize reports whether key is listed for user. Keys compare by their
// wire encoding, as ssh.KeysEqual does.
func (ix *Index) Authorize(user string, key gossh.PublicKey) bool {
	_, ok := ix.Lookup(user, key)
	return ok
}

// Lookup returns the options of key if it is listed for user.
func (ix *Index) Lookup(user string, key gossh.PublicKey) (Options, bool) {
	if ix == nil || key == nil {
		return Options{}, false
	}
	o, ok := ix.byUser[user][string(key.Marshal())]
	return o, ok
}

// Fingerprint returns the OpenSSH SHA256 fingerprint of key, as ssh-keygen -l prints it.
func Fingerprint(key gossh.PublicKey) string {
	sum := sha256.Sum256(key.Marshal())
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}
