package keys

import (
	"crypto/ed25519"
	"fmt"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// BenchmarkIndexAuthorize is the key index's part of the check made for
// every key a client offers: 1 to 10000 tenants with two keys each; hit
// offers a tenant's second key, miss a key nobody has. The index is a map
// keyed by the wire encoding, so the cost should not grow with tenants.
func BenchmarkIndexAuthorize(b *testing.B) {
	for _, tenants := range []int{1, 100, 10000} {
		ix := NewIndex()
		for i := range tenants {
			ix.Add(fmt.Sprintf("t%d", i), benchKey(2*i))
			ix.Add(fmt.Sprintf("t%d", i), benchKey(2*i+1))
		}
		user := fmt.Sprintf("t%d", tenants/2)
		for _, c := range []struct {
			outcome string
			key     gossh.PublicKey
		}{
			{"hit", benchKey(2*(tenants/2) + 1)},
			{"miss", benchKey(2 * tenants)},
		} {
			b.Run(fmt.Sprintf("tenants=%d/%s", tenants, c.outcome), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if ix.Authorize(user, c.key) != (c.outcome == "hit") {
						b.Fatalf("Authorize %s: wrong answer", c.outcome)
					}
				}
			})
		}
	}
}

// benchKey is a distinct ed25519 public key for i. Any 32 bytes make a key
// that marshals and compares like a real one, so thousands cost nothing.
func benchKey(i int) gossh.PublicKey {
	pub, _ := gossh.NewPublicKey(ed25519.PublicKey(fmt.Sprintf("%032d", i))) // 32 bytes: cannot fail
	return pub
}
