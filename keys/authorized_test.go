package keys

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseAuthorizedKeysGood(t *testing.T) {
	got, err := ParseAuthorizedKeys(readTestdata(t, "good_authorized_keys"))
	if err != nil {
		t.Fatalf("ParseAuthorizedKeys: %v", err)
	}
	want := []struct {
		line    int
		typ     string
		comment string
		options []string
	}{
		{3, "ssh-ed25519", "alice@laptop", nil},
		{4, "ecdsa-sha2-nistp256", "bob@desk", []string{"no-pty", `command="echo hi there"`}},
		{6, "ssh-rsa", "carol key", nil}, // CRLF line ending
		{7, "ssh-ed25519", "", []string{"restrict"}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d keys, want %d", len(got), len(want))
	}
	for i, w := range want {
		k := got[i]
		if k.Line != w.line || k.Key.Type() != w.typ || k.Comment != w.comment || !reflect.DeepEqual(k.Options, w.options) {
			t.Errorf("key %d = {line %d, %s, %q, %q}, want {line %d, %s, %q, %q}",
				i, k.Line, k.Key.Type(), k.Comment, k.Options, w.line, w.typ, w.comment, w.options)
		}
	}
}

func TestParseAuthorizedKeysBad(t *testing.T) {
	keys, err := ParseAuthorizedKeys(readTestdata(t, "bad_authorized_keys"))
	if err == nil {
		t.Fatal("no error")
	}
	var lines []int
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var le *LineError
		if !errors.As(e, &le) {
			t.Fatalf("%T is not a *LineError: %v", e, e)
		}
		lines = append(lines, le.Line)
	}
	if want := []int{3, 4, 6}; !reflect.DeepEqual(lines, want) {
		t.Errorf("bad lines %v, want %v; error:\n%v", lines, want, err)
	}
	for _, want := range []string{
		"line 3: not a public key: ssh-ed25519 key data is not valid base64 (truncated paste?): illegal base64 data at input byte 3",
		"line 4: not a public key: ssh: no key found",
		`line 6: not a public key: key type "ssh-rsa" does not match the key data (ssh-ed25519)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// The good lines still come back.
	if len(keys) != 2 || keys[0].Line != 1 || keys[1].Line != 7 {
		t.Errorf("good keys = %+v, want lines 1 and 7", keys)
	}
}

func TestParseAuthorizedKeysCases(t *testing.T) {
	alice := strings.TrimSpace(string(readTestdata(t, "alice.pub")))
	for _, tc := range []struct {
		name, in string
		nkeys    int
		err      string // substring; "" means no error
	}{
		{"empty", "", 0, ""},
		{"blank and comments", "\n   \n# x\n\t# y\n", 0, ""},
		{"no trailing newline", alice, 1, ""},
		{"only a type", "ssh-ed25519", 0, `line 1: not a public key: no key data after "ssh-ed25519"`},
		{"truncated", alice[:60], 0, "line 1: not a public key: bad ssh-ed25519 key data (truncated paste?)"},
		{"unmatched quote", `command="x ` + alice, 0, "line 1: not a public key"},
		{"second line bad", alice + "\nssh-ed25519 AAAA\n", 1, "line 2: not a public key"},
		{"certificate", string(readTestdata(t, "alice-cert.pub")), 0, "line 1: is a certificate, not a public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := ParseAuthorizedKeys([]byte(tc.in))
			if len(keys) != tc.nkeys {
				t.Errorf("got %d keys, want %d", len(keys), tc.nkeys)
			}
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
}

// fingerprints were printed by ssh-keygen -lf for the testdata keys.
var fingerprints = map[string]string{
	"alice.pub":   "SHA256:kJ1JbkP3lU6ToshtHM8O02wpB/URIOdbJGFjtEzjYFo",
	"mallory.pub": "SHA256:wiHfzqOGLbUA/0keLF3QYWI1uH862vilVhkFGHLMrDs",
}

func TestFingerprint(t *testing.T) {
	_, haveKeygen := exec.LookPath("ssh-keygen")
	for name, want := range fingerprints {
		keys, err := ParseAuthorizedKeys(readTestdata(t, name))
		if err != nil || len(keys) != 1 {
			t.Fatalf("%s: %d keys, %v", name, len(keys), err)
		}
		got := Fingerprint(keys[0].Key)
		if got != want {
			t.Errorf("%s: Fingerprint = %s, want %s", name, got, want)
		}
		if got != gossh.FingerprintSHA256(keys[0].Key) {
			t.Errorf("%s: Fingerprint disagrees with gossh.FingerprintSHA256", name)
		}
		if haveKeygen != nil {
			continue
		}
		out, err := exec.Command("ssh-keygen", "-lf", filepath.Join("testdata", name)).Output()
		if err != nil {
			t.Fatalf("ssh-keygen -lf: %v", err)
		}
		// "256 SHA256:... comment (ED25519)"
		if f := strings.Fields(string(out)); len(f) < 2 || f[1] != got {
			t.Errorf("ssh-keygen -lf %s printed %q, want fingerprint %s", name, out, got)
		}
	}
}

func TestIndex(t *testing.T) {
	alice := parseOne(t, "alice.pub")
	mallory := parseOne(t, "mallory.pub")
	ix := NewIndex()
	ix.Add("alice", alice)
	ix.Add("bob", mallory)
	for _, tc := range []struct {
		user string
		key  gossh.PublicKey
		want bool
	}{
		{"alice", alice, true},
		{"alice", mallory, false}, // another tenant's key
		{"bob", mallory, true},
		{"bob", alice, false},
		{"carol", alice, false}, // unknown user
		{"", alice, false},
		{"alice", nil, false},
	} {
		if got := ix.Authorize(tc.user, tc.key); got != tc.want {
			t.Errorf("Authorize(%q, %v) = %v, want %v", tc.user, keyName(tc.key), got, tc.want)
		}
	}
	var nilIndex *Index
	if nilIndex.Authorize("alice", alice) {
		t.Error("nil Index authorized a key")
	}
}

func keyName(k gossh.PublicKey) string {
	if k == nil {
		return "nil"
	}
	return Fingerprint(k)
}

func parseOne(t *testing.T, name string) gossh.PublicKey {
	t.Helper()
	keys, err := ParseAuthorizedKeys(readTestdata(t, name))
	if err != nil || len(keys) != 1 {
		t.Fatalf("%s: %d keys, %v", name, len(keys), err)
	}
	return keys[0].Key
}

func FuzzParseAuthorizedKeys(f *testing.F) {
	entries, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			f.Add(readTestdata(f, e.Name()))
		}
	}
	f.Add([]byte(`command="a,b" ssh-ed25519`))
	f.Add([]byte(`permitopen="localhost:8888,[::1]:*",permitlisten="8080" ` + "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"))
	f.Add([]byte("\x00\n\r\n#\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseAuthorizedKeys(data)
		for _, k := range keys {
			if k.Key == nil || k.Line < 1 {
				t.Fatalf("bad key %+v", k)
			}
			ParseOptions(k.Options) // must not panic, whatever the options say
		}
		if err != nil {
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var le *LineError
				if !errors.As(e, &le) || le.Line < 1 {
					t.Fatalf("bad error %v", e)
				}
			}
		}
	})
}
