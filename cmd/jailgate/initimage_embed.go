//go:build embedinit

package main

import _ "embed"

// initImage is the small init binary make build compiles first
// (./cmd/jailgate/initbin); serve runs environments from a sealed copy.
//
//go:embed initbin/jailgate-init
var initImage []byte
