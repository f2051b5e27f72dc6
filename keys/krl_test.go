package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// newSigner makes an ed25519 key.
func newSigner(t testing.TB) gossh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signCert issues a user certificate for key with serial and id.
func signCert(t testing.TB, ca gossh.Signer, key gossh.PublicKey, serial uint64, id string) *gossh.Certificate {
	t.Helper()
	c := &gossh.Certificate{Key: key, Serial: serial, KeyId: id, CertType: gossh.UserCert,
		ValidPrincipals: []string{"alice"}, ValidBefore: gossh.CertTimeInfinity}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

// requireKeygen skips without ssh-keygen, except in CI where .ci/run
// installs it.
func requireKeygen(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ssh-keygen is not installed")
		}
		t.Skip("ssh-keygen is not installed")
	}
}

// keygenKRL writes spec and the CA's public key (nil: -s none, the
// wildcard CA) and runs ssh-keygen -k, returning the KRL.
func keygenKRL(t *testing.T, ca gossh.PublicKey, spec string) []byte {
	t.Helper()
	dir := t.TempDir()
	args := []string{"-k", "-f", filepath.Join(dir, "krl")}
	if ca != nil {
		caFile := filepath.Join(dir, "ca.pub")
		if err := os.WriteFile(caFile, gossh.MarshalAuthorizedKey(ca), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-s", caFile)
	} else {
		args = append(args, "-s", "none")
	}
	specFile := filepath.Join(dir, "spec")
	if err := os.WriteFile(specFile, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ssh-keygen", append(args, specFile)...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -k: %v\n%s\nspec:\n%s", err, out, spec)
	}
	data, err := os.ReadFile(filepath.Join(dir, "krl"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustParseKRL(t *testing.T, data []byte) *KRL {
	t.Helper()
	k, err := ParseKRL(data)
	if err != nil {
		t.Fatalf("ParseKRL: %v", err)
	}
	return k
}

// TestKRLFromKeygenCertificates: serials (as ssh-keygen encodes them:
// ranges, lists and bitmaps) and key IDs revoke certificates of that CA
// only; serial 0 is never revoked by serial.
func TestKRLFromKeygenCertificates(t *testing.T) {
	requireKeygen(t)
	ca, other := newSigner(t), newSigner(t)
	user := newSigner(t).PublicKey()
	var spec strings.Builder
	spec.WriteString("serial: 1000-200000\nserial: 10000000\nserial: 90000000000\nid: lost-laptop\n")
	for s := 101; s <= 161; s += 2 {
		spec.WriteString("serial: " + strconv.Itoa(s) + "\n")
	}
	data := keygenKRL(t, ca.PublicKey(), spec.String())
	for _, typ := range []byte{krlCertSerialList, krlCertSerialRange, krlCertSerialBitmap, krlCertKeyID} {
		if !hasSubsection(data, typ) {
			t.Errorf("ssh-keygen wrote no %#x subsection; the test no longer covers it", typ)
		}
	}
	k := mustParseKRL(t, data)
	for _, tc := range []struct {
		serial  uint64
		id      string
		revoked bool
	}{
		{1000, "a", true}, {999, "a", false}, {200000, "a", true}, {200001, "a", false}, {150000, "a", true},
		{10000000, "a", true}, {10000001, "a", false}, {90000000000, "a", true},
		{101, "a", true}, {103, "a", true}, {161, "a", true}, {102, "a", false}, {163, "a", false}, {99, "a", false},
		{0, "a", false}, {5, "lost-laptop", true}, {0, "lost-laptop", true}, {5, "lost-laptop2", false},
	} {
		if got := k.IsRevoked(signCert(t, ca, user, tc.serial, tc.id)); got != tc.revoked {
			t.Errorf("serial %d id %q: revoked %v, want %v", tc.serial, tc.id, got, tc.revoked)
		}
		if k.IsRevoked(signCert(t, other, user, tc.serial, tc.id)) {
			t.Errorf("serial %d id %q from another CA revoked", tc.serial, tc.id)
		}
	}
	if k.IsRevoked(user) {
		t.Error("the plain key of a revoked certificate is revoked")
	}
}

// TestKRLFromKeygenWildcardCA: ssh-keygen -s none revokes key IDs under
// every CA.
func TestKRLFromKeygenWildcardCA(t *testing.T) {
	requireKeygen(t)
	k := mustParseKRL(t, keygenKRL(t, nil, "id: mallory\n"))
	user := newSigner(t).PublicKey()
	for _, ca := range []gossh.Signer{newSigner(t), newSigner(t)} {
		if !k.IsRevoked(signCert(t, ca, user, 1, "mallory")) {
			t.Error("key ID mallory not revoked under the wildcard CA")
		}
		if k.IsRevoked(signCert(t, ca, user, 1, "alice")) {
			t.Error("key ID alice revoked")
		}
	}
}

// TestKRLFromKeygenKeys: explicit keys, sha1:, sha256: and hash: revoke
// plain keys and the certificates over them, and a revoked CA revokes
// every certificate it signed.
func TestKRLFromKeygenKeys(t *testing.T) {
	requireKeygen(t)
	explicit, bySHA1, bySHA256, byHash, revokedCA, fine := newSigner(t), newSigner(t), newSigner(t), newSigner(t), newSigner(t), newSigner(t)
	line := func(s gossh.Signer) string {
		return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(s.PublicKey())))
	}
	spec := "key: " + line(explicit) + "\nsha1: " + line(bySHA1) + "\nsha256: " + line(bySHA256) +
		"\nhash: " + Fingerprint(byHash.PublicKey()) + "\nkey: " + line(revokedCA) + "\n"
	data := keygenKRL(t, nil, spec)
	k := mustParseKRL(t, data)
	ca := newSigner(t)
	for _, s := range []gossh.Signer{explicit, bySHA1, bySHA256, byHash} {
		if !k.IsRevoked(s.PublicKey()) {
			t.Errorf("%s not revoked", Fingerprint(s.PublicKey()))
		}
		if !k.IsRevoked(signCert(t, ca, s.PublicKey(), 1, "x")) {
			t.Errorf("certificate over revoked key %s not revoked", Fingerprint(s.PublicKey()))
		}
	}
	if k.IsRevoked(fine.PublicKey()) || k.IsRevoked(signCert(t, ca, fine.PublicKey(), 1, "x")) {
		t.Error("a key the KRL does not name is revoked")
	}
	if !k.IsRevoked(signCert(t, revokedCA, fine.PublicKey(), 1, "x")) {
		t.Error("certificate signed by a revoked CA accepted")
	}
	if len(k.sha1) != 1 || len(k.sha256) != 2 || len(k.keys) != 2 {
		t.Errorf("sections: %d sha1, %d sha256, %d keys; want 1, 2 (sha256: and hash:), 2", len(k.sha1), len(k.sha256), len(k.keys))
	}
}

// TestKRLTestdata: a KRL made once with ssh-keygen (ssh-keygen -k -z 3 -s
// alice-ca.pub, spec: id: alice, serial: 7-9, serial: 1000000, odd serials
// 101-131, sha256: mallory.pub) reads without ssh-keygen.
func TestKRLTestdata(t *testing.T) {
	k := mustParseKRL(t, readTestdata(t, "alice.krl"))
	if k.Version != 3 || k.Generated.IsZero() {
		t.Errorf("version %d generated %v", k.Version, k.Generated)
	}
	key := func(name string) gossh.PublicKey {
		pub, _, _, _, err := gossh.ParseAuthorizedKey(readTestdata(t, name))
		if err != nil {
			t.Fatal(err)
		}
		return pub
	}
	if !k.IsRevoked(key("alice-cert.pub")) {
		t.Error("alice-cert.pub (key ID alice) not revoked")
	}
	if !k.IsRevoked(key("mallory.pub")) {
		t.Error("mallory.pub (sha256) not revoked")
	}
	if k.IsRevoked(key("alice.pub")) {
		t.Error("alice.pub revoked")
	}
}

// TestParseKRLErrors: malformed lists are refused, with the section.
func TestParseKRLErrors(t *testing.T) {
	ca := newSigner(t).PublicKey().Marshal()
	certs := func(subs ...[]byte) []byte { return section(krlSectionCerts, wstr(ca), wstr(nil), cat(subs...)) }
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"no magic", "magic", []byte("ssh-ed25519 AAAA")},
		{"short header", "header: truncated", []byte(KRLMagic + "\x00\x00")},
		{"format 2", "format version 2", header(2)},
		{"truncated section", "section 1: truncated", append(header(1), krlSectionExplicit, 0, 0, 1)},
		{"unknown section", "unknown section type 9", append(header(1), section(9)...)},
		{"signature", "signed KRLs", append(header(1), section(krlSectionSignature, wstr(ca))...)},
		{"critical extension", `critical extension "x@example.com"`,
			append(header(1), section(krlSectionExtension, wstr([]byte("x@example.com")), []byte{1}, wstr(nil))...)},
		{"short sha256", "digest of 3 bytes", append(header(1), section(krlSectionSHA256, wstr([]byte("abc")))...)},
		{"trailing data", "unparsed data", append(header(1), section(krlSectionCerts, wstr(nil), wstr(nil),
			sub(krlCertSerialRange, u64(1), u64(2), []byte{9}))...)},
		{"serial 0", "bad serial range 0-0", append(header(1), certs(sub(krlCertSerialList, u64(0)))...)},
		{"reversed range", "bad serial range 5-4", append(header(1), certs(sub(krlCertSerialRange, u64(5), u64(4)))...)},
		{"bad CA", "CA key", append(header(1), section(krlSectionCerts, wstr([]byte("junk")), wstr(nil))...)},
		{"negative bitmap", "negative", append(header(1), certs(sub(krlCertSerialBitmap, u64(1), wstr([]byte{0x80})))...)},
		{"bitmap wraps", "wraps", append(header(1), certs(sub(krlCertSerialBitmap, u64(1<<64-2), wstr([]byte{4})))...)},
		{"bitmap serial 0", "serial 0", append(header(1), certs(sub(krlCertSerialBitmap, u64(0), wstr([]byte{1})))...)},
		{"NUL in key ID", "NUL", append(header(1), certs(sub(krlCertKeyID, wstr([]byte("a\x00b"))))...)},
		{"unknown subsection", "subsection type 0x30", append(header(1), certs(sub(0x30))...)},
	} {
		_, err := ParseKRL(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestParseKRLSkipsOptionalExtensions: a non-critical extension (a Bloom
// filter) is skipped; a bitmap's bits count from the least significant.
func TestParseKRLSkipsOptionalExtensions(t *testing.T) {
	ca, user := newSigner(t), newSigner(t).PublicKey()
	sum := sha256.Sum256(user.Marshal())
	data := cat(header(1),
		section(krlSectionExtension, wstr([]byte("bloom-key-hash-sha256")), []byte{0}, wstr([]byte("bits"))),
		section(krlSectionSHA256, wstr(sum[:])),
		section(krlSectionCerts, wstr(ca.PublicKey().Marshal()), wstr(nil),
			sub(krlCertExtension, wstr([]byte("cert-bloom-serial")), []byte{0}, wstr(nil)),
			sub(krlCertSerialBitmap, u64(100), wstr([]byte{0x00, 0x01, 0x02}))))
	k := mustParseKRL(t, data)
	if !k.IsRevoked(user) {
		t.Error("sha256-listed key not revoked")
	}
	other := newSigner(t).PublicKey()
	for serial, want := range map[uint64]bool{100: false, 101: true, 108: true, 109: false, 99: false, 116: false} {
		if got := k.IsRevoked(signCert(t, ca, other, serial, "")); got != want {
			t.Errorf("bitmap offset 100, bits 0x0102: serial %d revoked %v, want %v", serial, got, want)
		}
	}
}

func FuzzParseKRL(f *testing.F) {
	f.Add(readTestdata(f, "alice.krl"))
	f.Add(header(1))
	ca := newSigner(f).PublicKey().Marshal()
	f.Add(cat(header(1), section(krlSectionCerts, wstr(ca), wstr(nil),
		sub(krlCertSerialBitmap, u64(3), wstr([]byte{0x7f, 0xff})), sub(krlCertKeyID, wstr([]byte("id"))),
		sub(krlCertSerialList, u64(9), u64(12)), sub(krlCertSerialRange, u64(20), u64(30)))))
	user, certCA := newSigner(f), newSigner(f)
	probes := []gossh.PublicKey{user.PublicKey(), signCert(f, certCA, user.PublicKey(), 10, "id"), signCert(f, certCA, user.PublicKey(), 0, "")}
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKRL(data)
		if err != nil {
			if k != nil {
				t.Fatal("a KRL and an error")
			}
			return
		}
		for _, p := range probes {
			k.IsRevoked(p) // must not panic
		}
		for _, c := range k.certs {
			for i := 1; i < len(c.ranges); i++ {
				if c.ranges[i].lo <= c.ranges[i-1].hi {
					t.Fatalf("ranges not merged: %v", c.ranges)
				}
			}
		}
	})
}

// The KRL wire format, for hand-made lists.

func header(format uint32) []byte {
	b := append([]byte(KRLMagic), u32(format)...)
	return cat(b, u64(1), u64(1700000000), u64(0), wstr(nil), wstr([]byte("test")))
}

func section(typ byte, parts ...[]byte) []byte { return append([]byte{typ}, wstr(cat(parts...))...) }
func sub(typ byte, parts ...[]byte) []byte     { return section(typ, parts...) }
func wstr(b []byte) []byte                     { return append(u32(uint32(len(b))), b...) }
func u32(v uint32) []byte                      { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte                      { return binary.BigEndian.AppendUint64(nil, v) }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// hasSubsection reports whether any certificate section of a valid KRL
// holds a subsection of type typ.
func hasSubsection(data []byte, typ byte) bool {
	r := krlReader{b: data[len(KRLMagic):]}
	r.u32()
	r.u64()
	r.u64()
	r.u64()
	r.str()
	r.str()
	for r.len() > 0 && r.err == nil {
		t := r.u8()
		s := krlReader{b: r.str()}
		if t != krlSectionCerts {
			continue
		}
		s.str()
		s.str()
		for s.len() > 0 && s.err == nil {
			if s.u8() == typ {
				return true
			}
			s.str()
		}
	}
	return false
}
