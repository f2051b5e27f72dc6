package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExplainNetwork: explain shows a nat tenant's effective egress
// policy in the firewall's order, and nothing of it for a none tenant.
func TestExplainNetwork(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"alice", "bob"} {
		if err := os.Mkdir(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "jailgate.yaml")
	cfg := `state_dir: ` + dir + `/state
users:
  alice:
    keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a"]
    rootfs: ` + dir + `/alice
    network: nat
    egress: {allow: [10.1.2.3:5432], deny: [203.0.113.0/24]}
  bob:
    keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl b"]
    rootfs: ` + dir + `/bob
`
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := cmdExplain([]string{"alice", "--config", path}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"network:      nat", "egress allow: 10.1.2.3/32:5432, and port 53 of her resolvers",
		"egress deny:  203.0.113.0/24", "then denied:  0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 127.0.0.0/8 169.254.0.0/16",
		"the network pool", "dns:          the host's resolvers"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("explain alice lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := cmdExplain([]string{"bob", "--config", path}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "network:      none") || strings.Contains(out.String(), "egress") {
		t.Errorf("explain bob (network: none):\n%s", out.String())
	}
}
