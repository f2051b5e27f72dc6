package main

import (
	"math/bits"
	"os"
	"slices"
	"syscall"
	"testing"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/jail"
)

// fileUID returns a file's owner on the host.
func fileUID(fi os.FileInfo) uint32 {
	return fi.Sys().(*syscall.Stat_t).Uid
}

// TestCapabilityNamesAgree keeps config's list of capability names (used
// to validate `capabilities:`) and jail's name-to-number map in step.
func TestCapabilityNamesAgree(t *testing.T) {
	for _, n := range config.CapabilityNames {
		if _, err := jail.CapMask([]string{n}); err != nil {
			t.Errorf("config accepts %s but jail does not: %v", n, err)
		}
	}
	all, _ := jail.CapMask(config.CapabilityNames)
	if bits.OnesCount64(all) != len(config.CapabilityNames) {
		t.Errorf("%d names map to %d distinct capabilities", len(config.CapabilityNames), bits.OnesCount64(all))
	}
	for _, n := range jail.DefaultCaps {
		if !slices.Contains(config.CapabilityNames, n) {
			t.Errorf("jail's default capability %s is unknown to config", n)
		}
	}
}

// TestRlimitNamesAgree keeps config's rlimit names and jail's in step.
func TestRlimitNamesAgree(t *testing.T) {
	if !slices.Equal(config.RlimitNames, jail.RlimitNames()) {
		t.Errorf("config accepts rlimits %v, jail knows %v", config.RlimitNames, jail.RlimitNames())
	}
}
