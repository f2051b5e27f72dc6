// Package gatewaytest runs a gateway.Server in-process for tests, after
// net/http/httptest: Start serves on 127.0.0.1:0 with a fresh host key and
// captures the log, Dial logs in with an x/crypto client, and Expect waits
// for output without sleeping (ContainerSSH's WaitForStdout).
package gatewaytest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/keys"
	"github.com/jailgate/jailgate/provision"
)

// Harness is a gateway serving on a loopback port for one test.
type Harness struct {
	Addr   string          // host:port the gateway listens on
	Server *gateway.Server // the server itself, e.g. for SetConfig
	logs   *syncBuffer
}

// Start serves cfg with manager m on 127.0.0.1:0 with a fresh ed25519 host
// key; the log (debug level and up) is captured for Logs. Each configure
// function may change the options before the server is built (e.g. set
// LoginGraceTime, or Provision: provision.SpecFor by default). The server
// is closed when the test ends, and the log is printed if the test failed.
func Start(t testing.TB, cfg *config.Config, m jail.Manager, configure ...func(*gateway.Options)) *Harness {
	t.Helper()
	hostKey, _ := NewKey(t)
	h := &Harness{logs: &syncBuffer{}}
	opts := gateway.Options{
		Config:  cfg,
		Manager: m,
		HostKey: hostKey,
		Logger:  slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		// The spec from the config alone, with a zero IDMap: the fake
		// jail needs no id range or prepared rootfs.
		Provision: func(_ context.Context, u *config.User) (*jail.EnvSpec, error) { return provision.SpecFor(u), nil },
	}
	for _, f := range configure {
		f(&opts)
	}
	srv, err := gateway.New(opts)
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.Addr, h.Server = l.Addr().String(), srv
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", h.Logs())
		}
	})
	return h
}

// Logs returns everything the gateway logged so far, in slog's text format.
func (h *Harness) Logs() string { return h.logs.String() }

// Dial logs in to addr as user with signer (a nil signer offers no key)
// and returns the client, closed when the test ends. The host key is not
// checked.
func Dial(t testing.TB, addr, user string, signer gossh.Signer) (*gossh.Client, error) {
	t.Helper()
	var auth []gossh.AuthMethod
	if signer != nil {
		auth = append(auth, gossh.PublicKeys(signer))
	}
	c, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User:            user,
		Auth:            auth,
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), //nolint:gosec // G106: a test server with a throwaway host key
		Timeout:         10 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// NewKey returns a fresh ed25519 key pair.
func NewKey(t testing.TB) (gossh.Signer, gossh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer, signer.PublicKey()
}

// User returns a tenant named name with the given keys and the settings a
// host-run test needs: /bin/sh as shell and a tenant environment.
func User(name string, pubs ...gossh.PublicKey) *config.User {
	u := &config.User{
		Name:        name,
		Shell:       "/bin/sh",
		Hostname:    name + "-lab",
		Environment: config.EnvTenant,
		Network:     "none",
	}
	for i, p := range pubs {
		u.Keys = append(u.Keys, keys.Key{Key: p, Line: i + 1})
	}
	return u
}

// Config builds a configuration snapshot of users, with the key index
// filled from each user's Keys.
func Config(users ...*config.User) *config.Config {
	c := &config.Config{Listen: "127.0.0.1:0", Users: map[string]*config.User{}, Keys: keys.NewIndex()}
	for _, u := range users {
		c.Users[u.Name] = u
		for _, k := range u.Keys {
			o, _ := keys.ParseOptions(k.Options) // the test wrote them; config.Parse checks
			c.Keys.AddWithOptions(u.Name, k.Key, o)
		}
	}
	return c
}

// Expect reads r until want appears and returns what it read, or fails the
// test with what was read if r ends or timeout passes first. It reads one
// byte at a time, so nothing after want is consumed and Expect can be
// called again on the same reader.
func Expect(t testing.TB, r io.Reader, want string, timeout time.Duration) string {
	t.Helper()
	var (
		mu   sync.Mutex
		got  []byte
		rerr error
	)
	found := make(chan bool, 1)
	go func() {
		b := make([]byte, 1)
		for {
			n, err := r.Read(b)
			mu.Lock()
			got = append(got, b[:n]...)
			done := bytes.HasSuffix(got, []byte(want))
			rerr = err
			mu.Unlock()
			if done {
				found <- true
				return
			}
			if err != nil {
				found <- false
				return
			}
		}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case ok := <-found:
		mu.Lock()
		defer mu.Unlock()
		if !ok {
			t.Fatalf("waiting for %q: read %q, then %v", want, got, rerr)
		}
		return string(got)
	case <-timer.C:
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("waiting for %q: not there after %v; read %q", want, timeout, got)
		return ""
	}
}

// syncBuffer is a bytes.Buffer safe for the log handler's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Clone(b.buf.String())
}
