package jailtest

import (
	"os"
	"path/filepath"

	"github.com/jailgate/jailgate/statedir"
)

// CgroupPrefix is a test Supervisor's own parent cgroup (jail.Options.
// CgroupPrefix): "jailgate-test-" and the hash of dir, a temporary
// directory of the test (its state dir), so that concurrent test runs on
// one host never see, limit or sweep each other's environments.
func CgroupPrefix(dir string) string { return "jailgate-test-" + statedir.New(dir).Hash() }

// HostIDs is the host id registry of in-process test gateways
// (jail.WithRegistry, provision.Options.HostIDs): one file for every test
// run on this host, so that concurrent runs hand out disjoint id ranges as
// real gateways do, and never the real registry (statedir.HostIDs). Each
// test's state dir is temporary, so its ranges are reclaimed once it is
// removed.
func HostIDs() string { return filepath.Join(os.TempDir(), "jailgate-test-hostids.json") }
