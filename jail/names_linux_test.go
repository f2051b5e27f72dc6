package jail

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCapabilityNumbers checks that CapabilityNames is in number order:
// CapMask turns a name into 1<<index, so a name out of place would keep
// the wrong capability.
func TestCapabilityNumbers(t *testing.T) {
	for name, want := range map[string]int{
		"CAP_CHOWN": unix.CAP_CHOWN, "CAP_KILL": unix.CAP_KILL, "CAP_NET_RAW": unix.CAP_NET_RAW,
		"CAP_SYS_ADMIN": unix.CAP_SYS_ADMIN, "CAP_AUDIT_WRITE": unix.CAP_AUDIT_WRITE,
		"CAP_SYSLOG": unix.CAP_SYSLOG, "CAP_BPF": unix.CAP_BPF, "CAP_CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
	} {
		if got, _ := CapMask([]string{name}); got != 1<<want {
			t.Errorf("CapMask(%s) = %#x, want bit %d", name, got, want)
		}
	}
	if len(CapabilityNames) != unix.CAP_LAST_CAP+1 {
		t.Errorf("%d capability names, the kernel headers know %d", len(CapabilityNames), unix.CAP_LAST_CAP+1)
	}
	for _, n := range DefaultCaps {
		if !slices.Contains(CapabilityNames, n) {
			t.Errorf("default capability %s is not in CapabilityNames", n)
		}
	}
}

// TestRlimitNames checks that every name a config may use has a resource,
// and no resource is unreachable by name.
func TestRlimitNames(t *testing.T) {
	for _, n := range RlimitNames {
		if _, ok := rlimitNames[n]; !ok {
			t.Errorf("rlimit %q has no resource", n)
		}
	}
	if len(rlimitNames) != len(RlimitNames) || !slices.IsSorted(RlimitNames) {
		t.Errorf("RlimitNames %v and the resource map (%d) differ, or the list is unsorted", RlimitNames, len(rlimitNames))
	}
}
