package gateway_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// clientOffer is what an SSH client offers by default, in its order. The
// x/crypto client leaves out the names it does not implement (umac, cbc,
// curve448, sntrup, hmac-md5, …), which the gateway does not offer either,
// so the negotiation is the one the real client gets.
type clientOffer struct {
	name                         string
	kex, ciphers, macs, hostKeys []string
	// What the gateway's default offer must negotiate with it.
	wantKex, wantCipher, wantMAC string // wantMAC "": an AEAD cipher, no MAC used
}

// The offers of the clients issue 15 names, each from the client's source.
var realClients = []clientOffer{
	{
		// paramiko 2.12 (Debian 12's python3-paramiko; Transport._preferred_*,
		// the same lists since 2.9; curve25519 since 2.7, etm MACs and
		// group16 since 2.6). No AES-GCM and no chacha20: it needs AES-CTR
		// with an etm MAC. paramiko before 2.7 (RHEL 8's 2.4) has neither
		// curve25519 nor etm and cannot use the default offer at all.
		name: "paramiko 2.12",
		kex: []string{"curve25519-sha256@libssh.org", "ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
			"diffie-hellman-group16-sha512", "diffie-hellman-group-exchange-sha256", "diffie-hellman-group14-sha256",
			"diffie-hellman-group-exchange-sha1", "diffie-hellman-group14-sha1", "diffie-hellman-group1-sha1"},
		ciphers: []string{"aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-cbc", "aes192-cbc", "aes256-cbc", "3des-cbc"},
		macs: []string{"hmac-sha2-256", "hmac-sha2-512", "hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com",
			"hmac-sha1", "hmac-md5", "hmac-sha1-96", "hmac-md5-96"},
		hostKeys: []string{"ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
			"rsa-sha2-512", "rsa-sha2-256", "ssh-rsa", "ssh-dss"},
		wantKex: "curve25519-sha256@libssh.org", wantCipher: "aes128-ctr", wantMAC: "hmac-sha2-256-etm@openssh.com",
	},
	{
		// asyncssh 2.x without liboqs (a plain pip install: no mlkem or
		// sntrup): kex_dh.py, encryption.py and mac.py registration order.
		name: "asyncssh",
		kex: []string{"curve25519-sha256", "curve25519-sha256@libssh.org", "curve448-sha512", "ecdh-sha2-nistp521",
			"ecdh-sha2-nistp384", "ecdh-sha2-nistp256", "ecdh-sha2-1.3.132.0.10", "diffie-hellman-group-exchange-sha256",
			"diffie-hellman-group14-sha256", "diffie-hellman-group15-sha512", "diffie-hellman-group16-sha512",
			"diffie-hellman-group17-sha512", "diffie-hellman-group18-sha512"},
		ciphers: []string{"chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com",
			"aes256-ctr", "aes192-ctr", "aes128-ctr"},
		macs: []string{"umac-64-etm@openssh.com", "umac-128-etm@openssh.com", "hmac-sha2-256-etm@openssh.com",
			"hmac-sha2-512-etm@openssh.com", "hmac-sha1-etm@openssh.com", "umac-64@openssh.com", "umac-128@openssh.com",
			"hmac-sha2-256", "hmac-sha2-512", "hmac-sha1"},
		hostKeys: []string{"ssh-ed25519", "ecdsa-sha2-nistp521", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp256",
			"rsa-sha2-256", "rsa-sha2-512", "ssh-rsa"},
		wantKex: "curve25519-sha256", wantCipher: "aes256-gcm@openssh.com",
	},
	{
		// Node ssh2 1.x (lib/protocol/constants.js) on Node without
		// ML-KEM, x86 with AES-NI and the native binding: chacha20 after
		// the CTR ciphers' first two.
		name: "Node ssh2",
		kex: []string{"curve25519-sha256@libssh.org", "curve25519-sha256", "ecdh-sha2-nistp256", "ecdh-sha2-nistp384",
			"ecdh-sha2-nistp521", "diffie-hellman-group-exchange-sha256", "diffie-hellman-group14-sha256",
			"diffie-hellman-group15-sha512", "diffie-hellman-group16-sha512", "diffie-hellman-group17-sha512",
			"diffie-hellman-group18-sha512"},
		ciphers: []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr",
			"chacha20-poly1305@openssh.com", "aes256-ctr"},
		macs: []string{"hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha1-etm@openssh.com",
			"hmac-sha2-256", "hmac-sha2-512", "hmac-sha1"},
		hostKeys: []string{"ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
			"rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"},
		wantKex: "curve25519-sha256@libssh.org", wantCipher: "aes128-gcm@openssh.com",
	},
	{
		// OpenSSH 9.2p1 (Debian 12; `ssh -G`): AES-CTR before AES-GCM.
		name: "OpenSSH 9.2",
		kex: []string{"sntrup761x25519-sha512@openssh.com", "curve25519-sha256", "curve25519-sha256@libssh.org",
			"ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521", "diffie-hellman-group-exchange-sha256",
			"diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512", "diffie-hellman-group14-sha256"},
		ciphers: openSSHCiphers92,
		macs:    openSSHMACs,
		hostKeys: []string{"ssh-ed25519-cert-v01@openssh.com", "ecdsa-sha2-nistp256-cert-v01@openssh.com",
			"ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
			"sk-ssh-ed25519@openssh.com", "rsa-sha2-512", "rsa-sha2-256"},
		wantKex: "curve25519-sha256", wantCipher: "aes128-ctr", wantMAC: "hmac-sha2-256-etm@openssh.com",
	},
	{
		// OpenSSH 10.0: ML-KEM first, AES-GCM now before AES-CTR.
		name: "OpenSSH 10.0",
		kex: []string{"mlkem768x25519-sha256", "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com",
			"curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256", "ecdh-sha2-nistp384",
			"ecdh-sha2-nistp521"},
		ciphers: []string{"chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
			"aes128-ctr", "aes192-ctr", "aes256-ctr"},
		macs:     openSSHMACs,
		hostKeys: []string{"ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256"},
		wantKex:  "mlkem768x25519-sha256", wantCipher: "aes128-gcm@openssh.com",
	},
}

var (
	openSSHCiphers92 = []string{"chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr",
		"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
	openSSHMACs = []string{"umac-64-etm@openssh.com", "umac-128-etm@openssh.com", "hmac-sha2-256-etm@openssh.com",
		"hmac-sha2-512-etm@openssh.com", "hmac-sha1-etm@openssh.com", "umac-64@openssh.com", "umac-128@openssh.com",
		"hmac-sha2-256", "hmac-sha2-512", "hmac-sha1"}
)

// dialOffer logs in as alice with offer and runs `echo ok`, returning
// what was negotiated.
func dialOffer(t *testing.T, addr string, signer gossh.Signer, o clientOffer) (gossh.NegotiatedAlgorithms, error) {
	t.Helper()
	c, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
		Config:            gossh.Config{KeyExchanges: o.kex, Ciphers: o.ciphers, MACs: o.macs},
		HostKeyAlgorithms: o.hostKeys,
		User:              "alice",
		Auth:              []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback:   gossh.InsecureIgnoreHostKey(), //nolint:gosec // G106: a test server with a throwaway host key
		Timeout:           10 * time.Second,
	})
	if err != nil {
		return gossh.NegotiatedAlgorithms{}, err
	}
	defer c.Close()
	algs := c.Conn.(gossh.AlgorithmsConnMetadata).Algorithms()
	out, err := c.NewSession()
	if err != nil {
		return algs, err
	}
	defer out.Close()
	got, err := out.Output("echo ok")
	if err == nil && strings.TrimSpace(string(got)) != "ok" {
		t.Errorf("%s: echo ok printed %q", o.name, got)
	}
	return algs, err
}

// defaultOfferGateway starts a gateway with the configuration defaults'
// algorithm offer and one tenant, alice.
func defaultOfferGateway(t *testing.T) (addr string, signer gossh.Signer) {
	signer, pub := gatewaytest.NewKey(t)
	cfg := gatewaytest.Config(gatewaytest.User("alice", pub))
	cfg.Server.Kex = slices.Clone(config.DefaultKex)
	cfg.Server.Ciphers = slices.Clone(config.DefaultCiphers)
	cfg.Server.MACs = slices.Clone(config.DefaultMACs)
	return gatewaytest.Start(t, cfg, &jailtest.HostManager{}).Addr, signer
}

// The clients people use connect to the default offer with their own
// defaults, and negotiate what the offer means them to: paramiko 2.x
// AES-CTR with an etm MAC, the others AES-GCM or, for OpenSSH before 10.0,
// AES-CTR; never chacha20-poly1305 (not offered); the host key is
// ssh-ed25519 for all.
func TestRealClientOffers(t *testing.T) {
	addr, signer := defaultOfferGateway(t)
	for _, o := range realClients {
		t.Run(o.name, func(t *testing.T) {
			algs, err := dialOffer(t, addr, signer, o)
			if err != nil {
				t.Fatalf("%s's default offer: %v", o.name, err)
			}
			if algs.KeyExchange != o.wantKex || algs.Write.Cipher != o.wantCipher || algs.Read.Cipher != o.wantCipher ||
				algs.HostKey != gossh.KeyAlgoED25519 {
				t.Errorf("negotiated %s / %s / %s host key %s, want %s / %s / %s",
					algs.KeyExchange, algs.Write.Cipher, algs.Read.Cipher, algs.HostKey, o.wantKex, o.wantCipher, o.wantCipher)
			}
			if o.wantMAC != "" && (algs.Write.MAC != o.wantMAC || algs.Read.MAC != o.wantMAC) {
				t.Errorf("MACs %s / %s, want %s", algs.Write.MAC, algs.Read.MAC, o.wantMAC)
			}
		})
	}
}

// A client that offers only what the hardened offer leaves out is refused
// at key exchange: NIST-curve or SHA-1 key exchange, a SHA-1 or
// encrypt-and-MAC MAC with a non-AEAD cipher, RSA host key signatures
// (the host key is ed25519, and x/crypto advertises nothing else for it).
func TestWeakClientRefused(t *testing.T) {
	addr, signer := defaultOfferGateway(t)
	good := realClients[0] // paramiko: everything but what each case replaces
	for _, c := range []struct {
		name string
		edit func(o *clientOffer)
		want string
	}{
		{"nist and sha1 kex", func(o *clientOffer) {
			o.kex = []string{"ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521", "diffie-hellman-group14-sha1"}
		}, "no common algorithm for key exchange"},
		{"hmac-sha1 and encrypt-and-MAC", func(o *clientOffer) {
			o.macs = []string{"hmac-sha1", "hmac-sha2-256", "hmac-sha2-512"}
		}, "no common algorithm for client to server MAC"},
		{"rsa host key signatures", func(o *clientOffer) {
			o.hostKeys = []string{"ssh-rsa", "rsa-sha2-256", "rsa-sha2-512", "ecdsa-sha2-nistp256"}
		}, "no common algorithm for host key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := good
			o.name = c.name
			c.edit(&o)
			_, err := dialOffer(t, addr, signer, o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("a client offering %v / %v / %v / host keys %v: %v, want %q",
					o.kex, o.ciphers, o.macs, o.hostKeys, err, c.want)
			}
		})
	}
}

// server.kex, server.ciphers and server.macs widen the offer for new
// connections after a reload: a NIST-curve, hmac-sha2-256 client gets in.
func TestOfferReload(t *testing.T) {
	signer, pub := gatewaytest.NewKey(t)
	cfg := gatewaytest.Config(gatewaytest.User("alice", pub))
	cfg.Server.Kex, cfg.Server.Ciphers, cfg.Server.MACs = config.DefaultKex, config.DefaultCiphers, config.DefaultMACs
	h := gatewaytest.Start(t, cfg, &jailtest.HostManager{})
	old := clientOffer{name: "old", kex: []string{"ecdh-sha2-nistp256"}, ciphers: []string{"aes128-ctr"},
		macs: []string{"hmac-sha2-256"}}
	if _, err := dialOffer(t, h.Addr, signer, old); err == nil {
		t.Fatal("a nistp256/hmac-sha2-256 client logged in to the default offer")
	}
	next := gatewaytest.Config(gatewaytest.User("alice", pub))
	next.Server.Kex = append(slices.Clone(config.DefaultKex), "ecdh-sha2-nistp256")
	next.Server.Ciphers = config.DefaultCiphers
	next.Server.MACs = append(slices.Clone(config.DefaultMACs), "hmac-sha2-256")
	h.Server.SetConfig(next)
	algs, err := dialOffer(t, h.Addr, signer, old)
	if err != nil || algs.KeyExchange != "ecdh-sha2-nistp256" || algs.Write.MAC != "hmac-sha2-256" {
		t.Errorf("after widening the offer: %+v %v", algs, err)
	}
}
