package keys

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	gossh "golang.org/x/crypto/ssh"
)

// LineError is a problem with one line of authorized_keys data.
type LineError struct {
	Line int   // 1-based line number
	Err  error // what is wrong with it
}

// Error returns "line N: what is wrong".
func (e *LineError) Error() string {
	return fmt.Sprintf("line %d: %v", e.Line, e.Err)
}

// Unwrap returns the underlying error.
func (e *LineError) Unwrap() error { return e.Err }

// errCertificate rejects certificates listed as if they were keys: the Index
// compares wire encodings, so a listed certificate would be accepted without
// its validity period, principals or CA signature ever being checked.
var errCertificate = errors.New("is a certificate, not a public key (list the key itself)")

// ParseAuthorizedKeys parses data in OpenSSH authorized_keys format (sshd(8)
// AUTHORIZED_KEYS FILE FORMAT). Blank lines and lines starting with # are
// skipped; options before the key type are kept in Key.Options as written and
// the trailing comment in Key.Comment. Every bad line is reported: the error
// is an errors.Join of *LineError, one per bad line, and the keys of the good
// lines are returned alongside it.
func ParseAuthorizedKeys(data []byte) ([]Key, error) {
	var (
		out  []Key
		errs []error
	)
	for n := 1; len(data) > 0; n++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		line = bytes.Trim(line, " \t\r")
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		k, err := parseLine(line)
		if err != nil {
			errs = append(errs, &LineError{Line: n, Err: err})
			continue
		}
		k.Line = n
		out = append(out, k)
	}
	return out, errors.Join(errs...)
}

// parseLine parses one non-blank, non-comment line. gossh.ParseAuthorizedKey
// skips lines it cannot parse and moves on to the next, so it only ever sees
// this one line here.
func parseLine(line []byte) (Key, error) {
	pub, comment, options, rest, err := gossh.ParseAuthorizedKey(line)
	if err != nil {
		// err itself is not wrapped: it is the library's last attempt, see diagnose.
		return Key{}, fmt.Errorf("not a public key: %w", diagnose(line))
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		// Cannot happen for a single line; kept so a change in the
		// library cannot make a line silently carry two keys.
		return Key{}, errors.New("more than one key on the line")
	}
	if _, ok := pub.(*gossh.Certificate); ok {
		return Key{}, errCertificate
	}
	return Key{Key: pub, Comment: comment, Options: options}, nil
}

// keyTypes are the key type names an authorized_keys line may carry. DSA
// is named literally: x/crypto deprecated its constants, and a DSA line must
// still be recognised to be diagnosed.
var keyTypes = map[string]bool{
	gossh.KeyAlgoRSA: true, "ssh-dss": true, gossh.KeyAlgoED25519: true,
	gossh.KeyAlgoECDSA256: true, gossh.KeyAlgoECDSA384: true, gossh.KeyAlgoECDSA521: true,
	gossh.KeyAlgoSKECDSA256: true, gossh.KeyAlgoSKED25519: true,
	gossh.CertAlgoRSAv01: true, "ssh-dss-cert-v01@openssh.com": true, gossh.CertAlgoED25519v01: true,
	gossh.CertAlgoECDSA256v01: true, gossh.CertAlgoECDSA384v01: true, gossh.CertAlgoECDSA521v01: true,
	gossh.CertAlgoSKECDSA256v01: true, gossh.CertAlgoSKED25519v01: true,
}

// diagnose explains why gossh.ParseAuthorizedKey refused line. The library
// reports the error of its last attempt (reading the first field as options),
// which hides the usual mistakes: a truncated paste, a type that does not
// match the key data. Lines it cannot explain get the library's "ssh: no key
// found".
func diagnose(line []byte) error {
	fields := strings.Fields(string(line))
	for i, f := range fields {
		if !keyTypes[f] {
			continue
		}
		if i+1 == len(fields) {
			return fmt.Errorf("no key data after %q", f)
		}
		data, err := base64.StdEncoding.DecodeString(fields[i+1])
		if err != nil {
			return fmt.Errorf("%s key data is not valid base64 (truncated paste?): %w", f, err)
		}
		pub, err := gossh.ParsePublicKey(data)
		if err != nil {
			return fmt.Errorf("bad %s key data (truncated paste?): %w", f, err)
		}
		if pub.Type() != f {
			return fmt.Errorf("key type %q does not match the key data (%s)", f, pub.Type())
		}
		break
	}
	return errors.New("ssh: no key found")
}
