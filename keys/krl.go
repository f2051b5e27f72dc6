package keys

import (
	"bytes"
	"crypto/sha1" // KRL sections may name keys by SHA1 digest (PROTOCOL.krl 4)
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// KRLMagic starts every OpenSSH key revocation list (PROTOCOL.krl 1).
const KRLMagic = "SSHKRL\n\x00"

// KRL section types (PROTOCOL.krl, OpenSSH krl.h).
const (
	krlSectionCerts     = 1
	krlSectionExplicit  = 2
	krlSectionSHA1      = 3
	krlSectionSignature = 4
	krlSectionSHA256    = 5
	krlSectionExtension = 255

	krlCertSerialList   = 0x20
	krlCertSerialRange  = 0x21
	krlCertSerialBitmap = 0x22
	krlCertKeyID        = 0x23
	krlCertExtension    = 0x39
)

// krlMaxBitmap bounds a serial bitmap's mpint as OpenSSH's sshbuf does
// (SSHBUF_MAX_BIGNUM: 16384 bits, plus a leading zero byte).
const krlMaxBitmap = 16384/8 + 1

// KRL is a parsed OpenSSH key revocation list (ssh-keygen -k; sshd
// RevokedKeys). It revokes plain keys (explicitly, or by SHA1 or SHA256
// digest of their wire encoding) and certificates by serial number or key
// ID, per CA or for any CA. It is immutable and safe for concurrent use.
type KRL struct {
	Version   uint64    // krl_version: grows each time the list is changed
	Generated time.Time // when ssh-keygen wrote it
	Comment   string

	keys   map[string]bool // plain key wire encodings
	sha1   map[[sha1.Size]byte]bool
	sha256 map[[sha256.Size]byte]bool
	certs  map[string]*krlCerts // by the CA's wire encoding; "" is any CA
}

// krlCerts are the certificates one CA issued that are revoked.
type krlCerts struct {
	ranges  []serialRange // sorted, merged
	bitmaps []serialBitmap
	ids     map[string]bool
}

// serialRange is lo through hi, inclusive.
type serialRange struct{ lo, hi uint64 }

// serialBitmap revokes offset+N for every bit N set (bit 0 is the least
// significant bit of the last byte).
type serialBitmap struct {
	offset uint64
	bits   []byte // big-endian, no leading zero bytes
}

// IsKRL reports whether data is a binary KRL rather than a key list.
func IsKRL(data []byte) bool { return bytes.HasPrefix(data, []byte(KRLMagic)) }

// ParseKRL parses a binary KRL as OpenSSH 9.4 and later do: every section
// must parse completely, unknown sections and critical extensions are
// errors, non-critical extensions (Bloom filters) are skipped, and signed
// KRLs are refused, since OpenSSH no longer verifies KRL signatures either.
func ParseKRL(data []byte) (*KRL, error) {
	if !IsKRL(data) {
		return nil, errors.New("krl: no SSHKRL magic")
	}
	r := krlReader{b: data[len(KRLMagic):]}
	format := r.u32()
	k := &KRL{Version: r.u64(), keys: map[string]bool{}, sha1: map[[sha1.Size]byte]bool{},
		sha256: map[[sha256.Size]byte]bool{}, certs: map[string]*krlCerts{}}
	gen := r.u64()
	r.u64() // flags: none defined
	r.str() // reserved
	k.Comment = string(r.str())
	if r.err != nil {
		return nil, fmt.Errorf("krl: header: %w", r.err)
	}
	if format != 1 {
		return nil, fmt.Errorf("krl: format version %d, want 1", format)
	}
	if gen <= 1<<62 {
		k.Generated = time.Unix(int64(gen), 0).UTC()
	}
	for n := 1; r.len() > 0; n++ {
		typ := r.u8()
		sect := krlReader{b: r.str()}
		if r.err != nil {
			return nil, fmt.Errorf("krl: section %d: %w", n, r.err)
		}
		var err error
		switch typ {
		case krlSectionCerts:
			err = k.parseCerts(&sect)
		case krlSectionExplicit:
			err = blobs(&sect, 0, func(b []byte) { k.keys[string(b)] = true })
		case krlSectionSHA1:
			err = blobs(&sect, sha1.Size, func(b []byte) { k.sha1[[sha1.Size]byte(b)] = true })
		case krlSectionSHA256:
			err = blobs(&sect, sha256.Size, func(b []byte) { k.sha256[[sha256.Size]byte(b)] = true })
		case krlSectionExtension:
			err = extension(&sect)
		case krlSectionSignature:
			err = errors.New("signed KRLs are not supported (nor by OpenSSH since 9.4)")
		default:
			err = fmt.Errorf("unknown section type %d", typ)
		}
		if err == nil {
			err = sect.done()
		}
		if err != nil {
			return nil, fmt.Errorf("krl: section %d: %w", n, err)
		}
	}
	for _, c := range k.certs {
		c.ranges = mergeRanges(c.ranges)
	}
	return k, nil
}

// parseCerts reads a certificate section: the CA (empty for any CA), a
// reserved string, then subsections (PROTOCOL.krl 2).
func (k *KRL) parseCerts(r *krlReader) error {
	caBlob := r.str()
	r.str() // reserved
	if r.err != nil {
		return r.err
	}
	ca := ""
	if len(caBlob) > 0 {
		pub, err := gossh.ParsePublicKey(caBlob)
		if err != nil {
			return fmt.Errorf("CA key: %w", err)
		}
		ca = string(pub.Marshal())
	}
	c := k.certs[ca]
	if c == nil {
		c = &krlCerts{ids: map[string]bool{}}
		k.certs[ca] = c
	}
	for r.len() > 0 {
		typ := r.u8()
		sub := krlReader{b: r.str()}
		if r.err != nil {
			return r.err
		}
		var err error
		switch typ {
		case krlCertSerialList:
			for sub.len() > 0 && sub.err == nil && err == nil {
				if s := sub.u64(); sub.err == nil {
					err = c.revokeRange(s, s)
				}
			}
		case krlCertSerialRange:
			lo, hi := sub.u64(), sub.u64()
			if sub.err == nil {
				err = c.revokeRange(lo, hi)
			}
		case krlCertSerialBitmap:
			err = c.revokeBitmap(&sub)
		case krlCertKeyID:
			for sub.len() > 0 && sub.err == nil {
				id := sub.str()
				if bytes.IndexByte(id, 0) >= 0 {
					err = errors.New("key ID holds a NUL byte")
					break
				}
				c.ids[string(id)] = true
			}
		case krlCertExtension:
			err = extension(&sub)
		default:
			err = fmt.Errorf("unknown certificate subsection type %#x", typ)
		}
		if err == nil {
			err = sub.done()
		}
		if err != nil {
			return fmt.Errorf("certificates: %w", err)
		}
	}
	return nil
}

// revokeRange revokes lo..hi. Serial 0, a certificate without one, cannot
// be revoked by serial (OpenSSH krl.c).
func (c *krlCerts) revokeRange(lo, hi uint64) error {
	if lo == 0 || lo > hi {
		return fmt.Errorf("bad serial range %d-%d", lo, hi)
	}
	c.ranges = append(c.ranges, serialRange{lo, hi})
	return nil
}

// revokeBitmap reads a serial offset and an mpint bitmap.
func (c *krlCerts) revokeBitmap(r *krlReader) error {
	off := r.u64()
	b := r.str()
	if r.err != nil {
		return r.err
	}
	if len(b) > krlMaxBitmap || len(b) == krlMaxBitmap && b[0] != 0 {
		return errors.New("serial bitmap too large")
	}
	if len(b) > 0 && b[0]&0x80 != 0 {
		return errors.New("serial bitmap is a negative number")
	}
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	if len(b) == 0 {
		return nil
	}
	top := uint64(len(b)-1)*8 + uint64(bits.Len8(b[0])) - 1 // its highest bit set
	if off == 0 && b[len(b)-1]&1 != 0 {
		return errors.New("serial bitmap revokes serial 0")
	}
	if off+top < off {
		return errors.New("serial bitmap wraps past 2^64")
	}
	c.bitmaps = append(c.bitmaps, serialBitmap{offset: off, bits: bytes.Clone(b)})
	return nil
}

// revoked reports whether this CA's list names the certificate.
func (c *krlCerts) revoked(cert *gossh.Certificate) bool {
	if c.ids[cert.KeyId] {
		return true
	}
	s := cert.Serial
	if s == 0 {
		return false // the default when a CA sets none; never revoked by serial
	}
	i := sort.Search(len(c.ranges), func(i int) bool { return c.ranges[i].hi >= s })
	if i < len(c.ranges) && c.ranges[i].lo <= s {
		return true
	}
	for _, bm := range c.bitmaps {
		if s < bm.offset {
			continue
		}
		n := s - bm.offset
		if n >= uint64(len(bm.bits))*8 {
			continue
		}
		if bm.bits[len(bm.bits)-1-int(n/8)]&(1<<(n%8)) != 0 {
			return true
		}
	}
	return false
}

// mergeRanges sorts ranges and joins those that overlap or touch.
func mergeRanges(rs []serialRange) []serialRange {
	slices.SortFunc(rs, func(a, b serialRange) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && (r.lo <= out[n-1].hi || r.lo-1 == out[n-1].hi) {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// IsRevoked reports whether key is revoked, as sshd checks a key against
// RevokedKeys (OpenSSH ssh_krl_check_key): the key, or for a certificate
// its plain key, explicitly or by digest; the certificate by serial or key
// ID under its CA or under any CA; and the certificate's CA as a key.
func (k *KRL) IsRevoked(key gossh.PublicKey) bool {
	if k == nil || key == nil {
		return false
	}
	cert, isCert := key.(*gossh.Certificate)
	if !isCert {
		return k.plainRevoked(key)
	}
	if k.plainRevoked(cert.Key) {
		return true
	}
	if c := k.certs[string(cert.SignatureKey.Marshal())]; c != nil && c.revoked(cert) {
		return true
	}
	if c := k.certs[""]; c != nil && c.revoked(cert) {
		return true
	}
	return k.plainRevoked(cert.SignatureKey)
}

// plainRevoked checks a plain key by SHA1, SHA256 and wire encoding.
func (k *KRL) plainRevoked(key gossh.PublicKey) bool {
	if c, ok := key.(*gossh.Certificate); ok {
		key = c.Key // a CA may itself be a certificate's key; check the key
	}
	blob := key.Marshal()
	return k.sha1[sha1.Sum(blob)] || k.sha256[sha256.Sum256(blob)] || k.keys[string(blob)]
}

// blobs reads a section of strings, each exactly size bytes unless size is 0.
func blobs(r *krlReader, size int, add func([]byte)) error {
	for r.len() > 0 {
		b := r.str()
		if r.err != nil {
			return r.err
		}
		if size != 0 && len(b) != size {
			return fmt.Errorf("digest of %d bytes, want %d", len(b), size)
		}
		add(b)
	}
	return nil
}

// extension reads an extension (PROTOCOL.krl 2.5, 5): a critical one
// jailgate does not know is an error, the rest are skipped.
func extension(r *krlReader) error {
	name := r.str()
	critical := r.u8()
	r.str() // contents
	if r.err != nil {
		return r.err
	}
	if critical > 1 {
		return errors.New("extension: bad boolean")
	}
	if critical == 1 {
		return fmt.Errorf("unsupported critical extension %q", name)
	}
	return nil
}

// krlReader reads SSH wire types (RFC 4251 5), remembering the first error.
type krlReader struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated")

func (r *krlReader) len() int { return len(r.b) }

func (r *krlReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = errShort
		r.b = nil
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *krlReader) u8() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *krlReader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *krlReader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *krlReader) str() []byte {
	n := r.u32()
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.b)) {
		r.err = errShort
		r.b = nil
		return nil
	}
	return r.take(int(n))
}

// done reports an error, or data left over after a (sub)section.
func (r *krlReader) done() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) > 0 {
		return fmt.Errorf("%d bytes of unparsed data", len(r.b))
	}
	return nil
}
