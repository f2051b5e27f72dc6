package jail

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// networkUp builds the inside of the environment's network mode
// (initConfig.Network, which the gateway checked before clone): lo up in
// every mode, and for NetworkNone nothing else. What the gateway made from
// outside (networkModes) is already there.
func networkUp(cfg *initConfig) *StepError {
	switch cfg.Network {
	case NetworkNone:
		return loopbackUp()
	default:
		return &StepError{Step: "network", Op: "network mode", Err: fmt.Sprintf("%q is not supported", cfg.Network)}
	}
}

// loopbackUp brings up lo in the environment's network namespace.
func loopbackUp() *StepError {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return stepErr("network", "socket", "", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return stepErr("network", "ifreq lo", "", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return stepErr("network", "SIOCGIFFLAGS lo", "", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return stepErr("network", "SIOCSIFFLAGS lo up", "", err)
	}
	return nil
}
