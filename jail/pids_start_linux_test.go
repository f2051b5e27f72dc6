package jail_test

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestStartAtPidsLimitFailsFast: an environment that cannot start because
// her pids limit is full (its init cannot make its threads) fails at once,
// not after the start timeout: the gateway held its own copy of the init's
// end of the control socket while the init prepared, and never saw it die.
func TestStartAtPidsLimitFailsFast(t *testing.T) {
	s := newSupervisor(t)
	spec := newSpec(t, "pids")
	spec.Limits.Pids = 40
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatal("20 environments started within pids 40")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		t0 := time.Now()
		e, err := s.Environment(ctx, fmt.Sprintf("session/%d", i), spec)
		cancel()
		if err == nil {
			t.Cleanup(e.Release)
			continue
		}
		if took := time.Since(t0); took > 5*time.Second {
			t.Errorf("start %d at her pids limit failed after %v: %v", i, took, err)
		}
		return
	}
}
