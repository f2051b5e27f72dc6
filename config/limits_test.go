package config

import (
	"testing"

	"github.com/jailgate/jailgate/jail"
)

// TestLimitDefaults: a config that says nothing gets bounds that keep the
// host alive (issue 16, item 8: no limits by default let one fork bomb
// take the host's pid space); swap and tmp follow memory wherever memory
// came from; `limits: unlimited` is the explicit opt-out; and each value
// records where it came from, for explain.
func TestLimitDefaults(t *testing.T) {
	defer func(f func() int64) { hostMemory = f }(hostMemory)
	hostMemory = func() int64 { return 8 << 30 }
	const key = "    keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a\"]\n    rootfs: $ROOT/alice\n"
	cases := []struct {
		name, defaults, own string
		want                jail.Limits
		from                map[string]string
	}{
		{"nothing said", "", "",
			jail.Limits{Pids: 1024, Memory: 4 << 30, SwapAsMemory: true, PTYs: 64, Tmp: 4 << 30},
			map[string]string{"pids": "default", "memory": "default: half of this host's RAM", "tmp": "default: as much as memory"}},
		{"memory in defaults, pids her own", "  limits: { memory: 2GiB }\n", "    limits: { pids: 50 }\n",
			jail.Limits{Pids: 50, Memory: 2 << 30, SwapAsMemory: true, PTYs: 64, Tmp: 2 << 30},
			map[string]string{"pids": "users.alice", "memory": "defaults:", "memory_swap": "default: as much as memory"}},
		{"swap and tmp her own", "", "    limits: { memory: 1GiB, memory_swap: 0, tmp: 64MiB, ptys: 0 }\n",
			jail.Limits{Pids: 1024, Memory: 1 << 30, Tmp: 64 << 20},
			map[string]string{"memory_swap": "users.alice", "ptys": "users.alice"}},
		{"unlimited in defaults", "  limits: unlimited\n", "",
			jail.Limits{}, map[string]string{"memory": "defaults: (unlimited)"}},
		{"unlimited, then her own pids", "  limits: unlimited\n", "    limits: { pids: 100 }\n",
			jail.Limits{Pids: 100}, map[string]string{"pids": "users.alice", "memory": "defaults: (unlimited)"}},
		{"connections her own", "", "    limits: { connections: 200 }\n",
			jail.Limits{Pids: 1024, Memory: 4 << 30, SwapAsMemory: true, PTYs: 64, Tmp: 4 << 30, Connections: 200},
			map[string]string{"connections": "users.alice", "net_rate": "default: unlimited"}},
		{"memory 0: tmp falls back to 1GiB", "", "    limits: { memory: 0 }\n",
			jail.Limits{Pids: 1024, PTYs: 64, Tmp: 1 << 30}, nil},
	}
	r := fixture(t)
	for _, tc := range cases {
		yaml := "defaults:\n  shell: /bin/sh\n" + tc.defaults + "users:\n  alice:\n" + key + tc.own
		c, err := Parse("l.yaml", []byte(r.Replace(yaml)))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		u := c.Users["alice"]
		if u.Limits != tc.want {
			t.Errorf("%s: limits %+v, want %+v", tc.name, u.Limits, tc.want)
		}
		for k, want := range tc.from {
			if u.LimitsFrom[k] != want {
				t.Errorf("%s: %s from %q, want %q", tc.name, k, u.LimitsFrom[k], want)
			}
		}
	}
}
