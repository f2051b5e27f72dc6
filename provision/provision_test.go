package provision

import (
	"testing"
	"time"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/jail"
)

func TestSpecFor(t *testing.T) {
	u := &config.User{Name: "alice", Rootfs: "/srv/alice", Hostname: "alice-lab", Network: "none",
		Environment: config.EnvTenant, Linger: time.Minute, Limits: jail.Limits{Memory: 1 << 29, Pids: 256, CPU: 1.5}}
	got := SpecFor(u)
	want := &jail.EnvSpec{Tenant: "alice", Rootfs: "/srv/alice", Hostname: "alice-lab", Network: "none",
		Linger: time.Minute, Limits: jail.Limits{Memory: 1 << 29, Pids: 256, CPU: 1.5}}
	if got.Tenant != want.Tenant || got.Rootfs != want.Rootfs || got.Hostname != want.Hostname ||
		got.Network != want.Network || got.Linger != want.Linger || got.Limits != want.Limits || got.IDMap != (jail.IDMap{}) {
		t.Errorf("SpecFor = %+v, want %+v", got, want)
	}
	u.Environment = config.EnvSession
	if got := SpecFor(u); got.Linger != 0 {
		t.Errorf("session-mode spec lingers %v", got.Linger)
	}
}
