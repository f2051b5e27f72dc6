package gateway

import (
	"bytes"
	"net"
	"strings"

	"github.com/gliderlabs/ssh"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/keys"
)

// Reasons a certificate is refused (log only).
const (
	reasonNoCA    = "certificate not signed by a trusted user CA"
	reasonRevoked = "key is revoked"
)

// revoked reports whether cfg's revoked_keys refuse key: listed as a plain
// key (for a certificate: its key or its CA), or revoked by one of the
// KRLs, which also name certificates by serial number and key ID.
func revoked(cfg *config.Config, key gossh.PublicKey) bool {
	if cfg.KeyListedRevoked(key) {
		return true
	}
	if cert, ok := key.(*gossh.Certificate); ok &&
		(cfg.KeyListedRevoked(cert.Key) || cfg.KeyListedRevoked(cert.SignatureKey)) {
		return true
	}
	for _, k := range cfg.RevokedKRLs {
		if k.IsRevoked(key) {
			return true
		}
	}
	return false
}

// listed reports whether key is in list, by wire encoding.
func listed(list []gossh.PublicKey, key gossh.PublicKey) bool {
	m := key.Marshal()
	for _, k := range list {
		if bytes.Equal(k.Marshal(), m) {
			return true
		}
	}
	return false
}

// authorizeCert checks a user certificate as sshd does with
// TrustedUserCAKeys: signed by a trusted CA, a user certificate whose
// principals include the tenant's name, within its validity window, its
// source-address critical option matching the client (keyAuth has checked
// it is not revoked). It returns the tenant and her options from the
// certificate, or why not.
func authorizeCert(cfg *config.Config, conn gossh.ConnMetadata, cert *gossh.Certificate) (*config.User, keys.Options, string) {
	u := cfg.Users[conn.User()]
	if u == nil {
		return nil, keys.Options{}, reasonUnknownUser
	}
	checker := gossh.CertChecker{
		IsUserAuthority:          func(auth gossh.PublicKey) bool { return listed(cfg.TrustedUserCAKeys, auth) },
		SupportedCriticalOptions: []string{"force-command"},
	}
	if _, err := checker.Authenticate(conn, cert); err != nil {
		if !listed(cfg.TrustedUserCAKeys, cert.SignatureKey) {
			return nil, keys.Options{}, reasonNoCA
		}
		return nil, keys.Options{}, "certificate refused: " + err.Error()
	}
	// x/crypto checks source-address only against the Permissions the
	// callback returns, and gliderlabs returns its own: check it here.
	if !sourceAllowed(cert.CriticalOptions["source-address"], conn.RemoteAddr()) {
		return nil, keys.Options{}, "certificate source-address does not match the client"
	}
	_, pty := cert.Extensions["permit-pty"]
	_, fwd := cert.Extensions["permit-port-forwarding"]
	_, agent := cert.Extensions["permit-agent-forwarding"]
	return u, keys.Options{Command: cert.CriticalOptions["force-command"], NoPTY: !pty, NoPortForwarding: !fwd,
		NoAgentForwarding: !agent}, ""
}

// keyAuth is the one place that decides whether key logs user in: a listed
// key (with its authorized_keys options), or a user certificate from a
// trusted CA. It returns the tenant, the options that bind the sessions,
// and why not.
func keyAuth(cfg *config.Config, conn gossh.ConnMetadata, key gossh.PublicKey) (*config.User, keys.Options, string) {
	if cfg == nil {
		return nil, keys.Options{}, reasonNoConfig
	}
	if key != nil && revoked(cfg, key) {
		return nil, keys.Options{}, reasonRevoked
	}
	if cert, ok := key.(*gossh.Certificate); ok {
		return authorizeCert(cfg, conn, cert)
	}
	u, reason := authorize(cfg, conn.User(), key)
	if reason != "" {
		return nil, keys.Options{}, reason
	}
	o, _ := cfg.Keys.Lookup(conn.User(), key)
	return u, o, ""
}

// ctxMeta presents a gliderlabs context as x/crypto connection metadata
// (gliderlabs returns its versions as strings).
type ctxMeta struct{ ctx ssh.Context }

func (m ctxMeta) User() string          { return m.ctx.User() }
func (m ctxMeta) SessionID() []byte     { return []byte(m.ctx.SessionID()) }
func (m ctxMeta) ClientVersion() []byte { return []byte(m.ctx.ClientVersion()) }
func (m ctxMeta) ServerVersion() []byte { return []byte(m.ctx.ServerVersion()) }
func (m ctxMeta) RemoteAddr() net.Addr  { return m.ctx.RemoteAddr() }
func (m ctxMeta) LocalAddr() net.Addr   { return m.ctx.LocalAddr() }

// sourceAllowed reports whether addr is in a certificate's
// source-address list (comma-separated addresses and CIDR blocks); an
// empty list allows any address.
func sourceAllowed(list string, addr net.Addr) bool {
	if list == "" {
		return true
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	for _, p := range strings.Split(list, ",") {
		if _, n, err := net.ParseCIDR(p); err == nil {
			if n.Contains(tcp.IP) {
				return true
			}
		} else if ip := net.ParseIP(p); ip != nil && ip.Equal(tcp.IP) {
			return true
		}
	}
	return false
}
