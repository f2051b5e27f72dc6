package gateway

import (
	"fmt"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// BenchmarkKeyAuth is the check publicKeyHandler runs for every key a
// client offers: keyAuth against the connection's snapshot (revocation
// list, tenant, key index, the key's options), for 1 to 10000 tenants
// with two keys each. hit offers the tenant's second key, miss a key no
// tenant has; revoked=100 adds a revoked_keys list of that length.
func BenchmarkKeyAuth(b *testing.B) {
	for _, tenants := range []int{1, 100, 10000} {
		cfg := benchTenants(b, tenants, "t")
		for _, revoked := range []int{0, 100} {
			cfg := *cfg
			cfg.RevokedKeys = nil
			for i := range revoked {
				cfg.RevokedKeys = append(cfg.RevokedKeys, benchPub(-1-i))
			}
			cfg.IndexRevoked() // as config.Parse does
			user := fmt.Sprintf("t%d", tenants/2)
			offers := map[string]gossh.PublicKey{
				"hit":  benchPub(2*(tenants/2) + 1),
				"miss": benchPub(2 * tenants),
			}
			for _, outcome := range []string{"hit", "miss"} {
				key := offers[outcome]
				b.Run(fmt.Sprintf("tenants=%d/revoked=%d/%s", tenants, revoked, outcome), func(b *testing.B) {
					b.ReportAllocs()
					meta := benchMeta{user: user}
					for b.Loop() {
						_, _, reason := keyAuth(&cfg, meta, key)
						if (reason == "") != (outcome == "hit") {
							b.Fatalf("keyAuth %s: reason %q", outcome, reason)
						}
					}
				})
			}
		}
	}
}

// benchMeta is the connection metadata keyAuth reads: only the user for a
// plain key.
type benchMeta struct {
	gossh.ConnMetadata
	user string
}

func (m benchMeta) User() string { return m.user }
