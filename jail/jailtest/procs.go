package jailtest

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RangeProcs lists the host pids whose real uid lies in [base, base+size):
// a tenant's processes as the host sees them. Zombies are left out: they
// hold nothing but a pid, and reaping an orphan is the host init's job
// (some container inits never do).
func RangeProcs(base, size uint32) []string {
	var found []string
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/status")
		if err != nil {
			continue
		}
		if strings.Contains(string(b), "\nState:\tZ") {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "Uid:" {
				continue
			}
			if uid, err := strconv.ParseUint(f[1], 10, 32); err == nil && uint32(uid) >= base && uint32(uid)-base < size {
				found = append(found, d.Name())
			}
		}
	}
	return found
}

// WaitNoProcs fails the test unless the host has no process of the id
// range within timeout.
func WaitNoProcs(t testing.TB, base, size uint32, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := RangeProcs(base, size)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes of the id range %d+%d remain on the host after %v: pids %v", base, size, timeout, left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
