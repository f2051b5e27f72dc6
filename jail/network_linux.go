package jail

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// networkModes are the EnvSpec.Network modes this jail can build, each with
// its gateway-side setup. It runs in start's "network" step, between clone
// and config: the environment's network namespace exists (the init's,
// /proc/<pid>/ns/net) but nothing in it runs yet, so what is made there
// (a veth end, routes) is in place before the init's own network step. A
// setup appends its cleanup to starting.undo. nil: nothing to set up from
// outside.
var networkModes = map[string]func(*starting) error{
	NetworkNone: nil,      // loopback only, which the init brings up inside (networkUp)
	NetworkNAT:  setupNAT, // a veth pair to the host, eth0 inside (network_nat_linux.go)
}

// networkMode returns the mode EnvSpec.Network names, "" meaning
// NetworkNone, or an error naming an unknown one.
func networkMode(name string) (string, error) {
	if name == "" {
		return NetworkNone, nil
	}
	if _, ok := networkModes[name]; !ok {
		known := slices.Sorted(maps.Keys(networkModes))
		return "", fmt.Errorf("network mode %q is not supported (known: %s)", name, strings.Join(known, ", "))
	}
	return name, nil
}

// setupNetwork runs the network mode's gateway-side setup, if it has one.
func setupNetwork(s *starting) error {
	if setup := networkModes[s.network]; setup != nil {
		return setup(s)
	}
	return nil
}
