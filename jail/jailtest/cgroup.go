package jailtest

import "github.com/jailgate/jailgate/statedir"

// CgroupPrefix is a test Supervisor's own parent cgroup (jail.Options.
// CgroupPrefix): "jailgate-test-" and the hash of dir, a temporary
// directory of the test (its state dir), so that concurrent test runs on
// one host never see, limit or sweep each other's environments.
func CgroupPrefix(dir string) string { return "jailgate-test-" + statedir.New(dir).Hash() }
