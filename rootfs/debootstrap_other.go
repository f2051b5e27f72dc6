//go:build !linux

package rootfs

import "os/exec"

// isolate does nothing off Linux, where debootstrap does not run.
func isolate(*exec.Cmd) {}
