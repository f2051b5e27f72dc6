// Package jailtest holds test helpers for the jail seam: HostManager, a fake
// jail.Manager that runs processes on the host without namespaces (for
// gateway tests that cannot be root), RunConformance, one table of
// behaviours every jail.Manager must show, and helpers for root-only tests.
package jailtest

import (
	"os"
	"testing"
)

// RequireRoot skips t unless the test runs as root. When the CI environment
// variable is set it fails instead: a root-only test that cannot run in CI
// must fail loudly, not pass by skipping (as ContainerSSH's helpers do).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("test needs root (CI is set, so this cannot be skipped)")
	}
	t.Skip("test needs root")
}
