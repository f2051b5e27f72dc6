package config

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// BenchmarkParse is what a reload (SIGHUP) costs before the swap: Parse of
// a configuration with n tenants, two inline keys each, every rootfs an
// existing directory (so each is stat'ed, as in production).
func BenchmarkParse(b *testing.B) {
	for _, tenants := range []int{1, 1000} {
		b.Run(fmt.Sprintf("tenants=%d", tenants), func(b *testing.B) {
			data := benchConfig(b, tenants)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				c, err := Parse("bench.yaml", data)
				if err != nil {
					b.Fatal(err)
				}
				if len(c.Users) != tenants {
					b.Fatalf("parsed %d tenants, want %d", len(c.Users), tenants)
				}
			}
		})
	}
}

// benchConfig writes the YAML of n tenants t0 … t(n-1), with rootfs
// directories under a temporary root.
func benchConfig(b *testing.B, n int) []byte {
	b.Helper()
	root := b.TempDir()
	var y strings.Builder
	fmt.Fprintf(&y, "listen: 127.0.0.1:2222\nstate_dir: %s\ndefaults:\n  shell: /bin/sh\n  rootfs: %s/{user}\nusers:\n",
		filepath.Join(root, "state"), root)
	for i := range n {
		name := fmt.Sprintf("t%d", i)
		if err := os.Mkdir(filepath.Join(root, name), 0o755); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&y, "  %s:\n    keys:\n", name)
		for j := range 2 {
			pub, _ := gossh.NewPublicKey(ed25519.PublicKey(fmt.Sprintf("%032d", 2*i+j))) // 32 bytes: cannot fail
			line := strings.TrimSuffix(string(gossh.MarshalAuthorizedKey(pub)), "\n")
			fmt.Fprintf(&y, "      - %s %s@bench\n", line, name)
		}
	}
	return []byte(y.String())
}
