package jail

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestSwapDefaultWithoutAccounting: on a cgroup v1 memory hierarchy with no
// swap accounting (no memory.memsw.* files), the default swap
// (SwapAsMemory) is left unenforced and the memory limit still applies,
// where an explicit memory_swap is an error that says what is missing.
// With accounting, the default is memory + as much again.
func TestSwapDefaultWithoutAccounting(t *testing.T) {
	const mem = 64 << 20
	dir := t.TempDir()
	limit := filepath.Join(dir, "memory.limit_in_bytes")
	if err := os.WriteFile(limit, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeV1Limits("memory", dir, Limits{Memory: mem, SwapAsMemory: true}); err != nil {
		t.Fatalf("default swap without accounting: %v", err)
	}
	if b, _ := os.ReadFile(limit); string(b) != strconv.Itoa(mem) {
		t.Errorf("memory.limit_in_bytes = %q, want %d", b, mem)
	}
	if err := writeV1Limits("memory", dir, Limits{Memory: mem, MemorySwap: mem}); err == nil {
		t.Error("an explicit memory_swap without swap accounting was accepted")
	}
	memsw := filepath.Join(dir, "memory.memsw.limit_in_bytes")
	if err := os.WriteFile(memsw, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeV1Limits("memory", dir, Limits{Memory: mem, SwapAsMemory: true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(memsw); string(b) != strconv.Itoa(2*mem) {
		t.Errorf("memory.memsw.limit_in_bytes = %q, want memory + as much swap = %d", b, 2*mem)
	}
}
