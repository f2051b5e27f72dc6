package keys

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

func TestHostKeyCreatedOnceAndReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state") // parent missing: created 0700
	path := filepath.Join(dir, "ssh_host_ed25519_key")

	s1, err := LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatalf("first call: %v", err)
	}
	if s1.PublicKey().Type() != gossh.KeyAlgoED25519 {
		t.Errorf("generated a %s key, want ed25519", s1.PublicKey().Type())
	}
	wantMode(t, dir, fs.ModeDir|0o700)
	wantMode(t, path, 0o600)
	wantMode(t, path+".pub", 0o644)

	// The .pub file holds the same key as an authorized_keys line.
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ParseAuthorizedKeys(pub)
	if err != nil || len(keys) != 1 {
		t.Fatalf("%s.pub: %d keys, %v", path, len(keys), err)
	}
	if !bytes.Equal(keys[0].Key.Marshal(), s1.PublicKey().Marshal()) {
		t.Error(".pub does not hold the generated key")
	}

	s2, err := LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatalf("second call: %v", err)
	}
	if !bytes.Equal(s1.PublicKey().Marshal(), s2.PublicKey().Marshal()) {
		t.Error("second call returned a different key")
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("state dir holds %d entries, want the key and its .pub", len(entries))
	}
}

func TestHostKeyConcurrentCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssh_host_ed25519_key")
	const n = 8
	var (
		wg   sync.WaitGroup
		pubs [n][]byte
		errs [n]error
	)
	for i := range n {
		wg.Go(func() {
			s, err := LoadOrCreateHostKey(path)
			errs[i] = err
			if err == nil {
				pubs[i] = s.PublicKey().Marshal()
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if !bytes.Equal(pubs[i], pubs[0]) {
			t.Fatalf("caller %d got a different key than caller 0", i)
		}
	}
	s, err := LoadOrCreateHostKey(path)
	if err != nil || !bytes.Equal(s.PublicKey().Marshal(), pubs[0]) {
		t.Fatalf("the stored key is not the one the callers got (%v)", err)
	}
}

func TestHostKeyRefused(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if _, err := LoadOrCreateHostKey(good); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte, mode fs.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	readable := write("readable", pem, 0o644)
	groupOnly := write("group", pem, 0o640)
	garbage := write("garbage", []byte("not a key\n"), 0o600)
	empty := write("empty", nil, 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want string
	}{
		{readable, fmt.Sprintf("host key %s is readable by group or others (mode 0644); run: chmod 600 %[1]s", readable)},
		{groupOnly, fmt.Sprintf("host key %s is readable by group or others (mode 0640); run: chmod 600 %[1]s", groupOnly)},
		{garbage, fmt.Sprintf("parse host key %s: ssh: no key found", garbage)},
		{empty, fmt.Sprintf("parse host key %s: ssh: no key found", empty)},
		{link, fmt.Sprintf("host key %s is a symlink", link)},
		{dir, fmt.Sprintf("host key %s is not a regular file", dir)},
	} {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			before, _ := os.ReadFile(tc.path)
			_, err := LoadOrCreateHostKey(tc.path)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant   %s", err, tc.want)
			}
			// A refused key is never replaced.
			if after, _ := os.ReadFile(tc.path); !bytes.Equal(before, after) {
				t.Error("the refused file was changed")
			}
		})
	}
}

func wantMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != want {
		t.Errorf("%s has mode %s, want %s", path, fi.Mode(), want)
	}
}
