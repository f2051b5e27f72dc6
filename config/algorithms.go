package config

import (
	"fmt"
	"slices"
	"strings"

	gossh "golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// The SSH algorithm offer (server.kex, server.ciphers, server.macs). The
// defaults pass ssh-audit with no [fail] and no [warn], as OpenSSH does
// with the ssh-audit hardening guide applied: hybrid post-quantum and
// X25519 key exchange, AEAD ciphers, then AES-CTR with encrypt-then-MAC
// MACs only. In each list a client takes the first algorithm of ITS OWN
// list that the server offers (RFC 4253 section 7.1): the server's order
// decides nothing, only what it leaves out does.

// DefaultKex are the key exchanges offered unless server.kex says
// otherwise. mlkem768x25519-sha256 (ML-KEM-768 + X25519, OpenSSH 9.9's
// and 10.0's default) protects recorded sessions against a future quantum
// computer; curve25519-sha256 and its pre-RFC name @libssh.org are what
// every other client in use speaks (OpenSSH since 6.5, PuTTY, paramiko
// since 2.7, asyncssh, Node ssh2). No NIST P-curve ECDH (ssh-audit: fail)
// and no SHA-1 or 2048-bit finite-field groups.
var DefaultKex = []string{gossh.KeyExchangeMLKEM768X25519, gossh.KeyExchangeCurve25519, kexCurve25519LibSSH}

// DefaultCiphers are the transport ciphers offered unless server.ciphers
// says otherwise: AES-GCM, then AES-CTR for clients without an AEAD cipher
// (paramiko before 3.5, and 2.x is still what many distributions and
// Ansible ship). chacha20-poly1305 is left out on purpose: every OpenSSH
// client lists it first, so offering it at all makes every OpenSSH
// connection use it, and the SSH library implements it without assembly:
// about a tenth of AES-GCM's speed for the crypto alone, about half end to
// end (README, Performance). Every client that has it also has AES-GCM or
// AES-CTR. An OpenSSH client before 10.0 lists AES-CTR before AES-GCM, so
// it gets aes128-ctr with hmac-sha2-256-etm.
var DefaultCiphers = []string{gossh.CipherAES128GCM, gossh.CipherAES256GCM, gossh.CipherAES128CTR, gossh.CipherAES256CTR}

// DefaultMACs are the MACs offered unless server.macs says otherwise:
// encrypt-then-MAC only (the AEAD ciphers need none). The plain
// hmac-sha2-* MACs authenticate the plaintext (encrypt-and-MAC;
// ssh-audit: warn).
var DefaultMACs = []string{gossh.HMACSHA256ETM, gossh.HMACSHA512ETM}

// kexCurve25519LibSSH is curve25519-sha256's name before RFC 8731; the SSH
// library implements it but lists only the RFC name as supported.
const kexCurve25519LibSSH = "curve25519-sha256@libssh.org"

// weakAlgorithms are the names server.kex, server.ciphers or server.macs
// may list but that widen the offer beyond the hardened set, with the
// reason: ssh-audit's verdict. `jailgate check` warns about each.
var weakAlgorithms = map[string]string{
	gossh.KeyExchangeECDHP256:   "ssh-audit: fail, NIST P-curve",
	gossh.KeyExchangeECDHP384:   "ssh-audit: fail, NIST P-curve",
	gossh.KeyExchangeECDHP521:   "ssh-audit: fail, NIST P-curve",
	gossh.KeyExchangeDH14SHA256: "ssh-audit: warn, 2048-bit modulus",
	gossh.HMACSHA256:            "ssh-audit: warn, encrypt-and-MAC",
	gossh.HMACSHA512:            "ssh-audit: warn, encrypt-and-MAC",
	gossh.HMACSHA1:              "ssh-audit: warn, encrypt-and-MAC with SHA-1",
}

// algorithmList is one of server.kex, server.ciphers, server.macs.
type algorithmList struct {
	key       string   // the field under server
	what      string   // "key exchange", for messages
	supported []string // what the SSH library implements and does not call insecure
	defaults  []string
}

// algorithmLists are the three lists, by field.
var algorithmLists = map[string]algorithmList{
	"kex": {"kex", "key exchange",
		append(gossh.SupportedAlgorithms().KeyExchanges, kexCurve25519LibSSH), DefaultKex},
	"ciphers": {"ciphers", "cipher", gossh.SupportedAlgorithms().Ciphers, DefaultCiphers},
	"macs":    {"macs", "MAC", gossh.SupportedAlgorithms().MACs, DefaultMACs},
}

// algorithms decodes one of the lists into dst: a non-empty list of
// distinct names the SSH library implements and does not call insecure
// (so diffie-hellman-group14-sha1, hmac-sha1-96 and the CBC ciphers are
// errors). A weak name is kept, with a warning.
func (p *parser) algorithms(dst *[]string, v *yaml.Node, field, key string) {
	l := algorithmLists[key]
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		p.add(p.at(v), field, "must be a non-empty list, e.g. [%s]", strings.Join(l.defaults, ", "))
		return
	}
	*dst = []string{}
	for i, item := range v.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		name := p.str(item, f)
		switch {
		case slices.Contains(*dst, name):
			p.add(p.at(item), f, "%q is listed twice", name)
		case !slices.Contains(l.supported, name):
			p.add(p.at(item), f, "%q is not a supported %s (one of %s)", name, l.what, strings.Join(l.supported, ", "))
		default:
			*dst = append(*dst, name)
			if why, weak := weakAlgorithms[name]; weak {
				p.warn(p.at(item), f, "%s is weak (%s); the default offer is %s", name, why, strings.Join(l.defaults, ", "))
			}
		}
	}
}
