package gateway

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/keys"
	"github.com/jailgate/jailgate/provision"
)

// BenchmarkConfigSnapshot measures how a connection takes its
// configuration (Server.Config, an atomic load) with every CPU reading,
// alone and while another goroutine keeps reloading (SetConfig) between
// two 1000-tenant snapshots; op=reload is SetConfig itself, serially
// (the swap, the log line's tenant diff and the revocation pass).
func BenchmarkConfigSnapshot(b *testing.B) {
	const tenants = 1000
	a, c := benchTenants(b, tenants, "a"), benchTenants(b, tenants, "b")
	hostKey, err := gossh.NewSignerFromKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))) // unused: nothing is served
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(Options{Config: a, Manager: &jailtest.HostManager{}, HostKey: hostKey, Logger: slog.New(slog.DiscardHandler),
		Provision: func(_ context.Context, u *config.User) (*jail.EnvSpec, error) { return provision.SpecFor(u), nil }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	snapshots := []*config.Config{a, c}
	read := func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if srv.Config() == nil {
					b.Error("no snapshot")
					return
				}
			}
		})
	}
	b.Run("op=load/reload=idle", read)
	b.Run("op=load/reload=busy", func(b *testing.B) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				srv.SetConfig(snapshots[i%2])
			}
		})
		read(b)
		close(stop)
		wg.Wait()
	})
	b.Run(fmt.Sprintf("op=reload/tenants=%d", tenants), func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			srv.SetConfig(snapshots[i%2])
			i++
		}
	})
}

// benchTenants builds a snapshot of n tenants named prefix0, prefix1, …,
// each with two keys (benchPub(2i), benchPub(2i+1)), as config.Parse
// would fill it; two prefixes give a reload that swaps every tenant.
func benchTenants(b *testing.B, n int, prefix string) *config.Config {
	b.Helper()
	c := &config.Config{Listen: "127.0.0.1:0", Users: map[string]*config.User{}, Keys: keys.NewIndex()}
	for i := range n {
		u := &config.User{Name: fmt.Sprintf("%s%d", prefix, i), Shell: "/bin/sh", Environment: config.EnvTenant}
		for j := range 2 {
			k := benchPub(2*i + j)
			u.Keys = append(u.Keys, keys.Key{Key: k, Line: j + 1})
			c.Keys.Add(u.Name, k)
		}
		c.Users[u.Name] = u
	}
	return c
}

// benchPub is a distinct ed25519 public key for i. Any 32 bytes make a
// key that marshals and compares like a real one, and lookups need no
// private key, so thousands cost nothing to make.
func benchPub(i int) gossh.PublicKey {
	pub, _ := gossh.NewPublicKey(ed25519.PublicKey(fmt.Sprintf("%032d", i))) // 32 bytes: cannot fail
	return pub
}
