package jail

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// rlimitNames maps RlimitNames to resources (getrlimit(2)).
var rlimitNames = map[string]int{
	"as": unix.RLIMIT_AS, "core": unix.RLIMIT_CORE, "cpu": unix.RLIMIT_CPU,
	"data": unix.RLIMIT_DATA, "fsize": unix.RLIMIT_FSIZE, "locks": unix.RLIMIT_LOCKS,
	"memlock": unix.RLIMIT_MEMLOCK, "msgqueue": unix.RLIMIT_MSGQUEUE, "nice": unix.RLIMIT_NICE,
	"nofile": unix.RLIMIT_NOFILE, "nproc": unix.RLIMIT_NPROC, "rtprio": unix.RLIMIT_RTPRIO,
	"rttime": unix.RLIMIT_RTTIME, "sigpending": unix.RLIMIT_SIGPENDING, "stack": unix.RLIMIT_STACK,
}

// setRlimits applies the tenant's rlimits to the init, before its
// capabilities go (raising a hard limit needs CAP_SYS_RESOURCE); every
// process it spawns inherits them. unix.Setrlimit also tells Go's runtime,
// so spawned processes get this NOFILE rather than the one Go saved at start.
func setRlimits(cfg *initConfig) *StepError {
	for name, v := range cfg.Rlimits {
		res, ok := rlimitNames[name]
		if !ok {
			return stepErr("rlimits", "setrlimit", "", fmt.Errorf("unknown rlimit %q", name))
		}
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: v, Max: v}); err != nil {
			return stepErr("rlimits", fmt.Sprintf("setrlimit %s %d", name, v), "", err)
		}
	}
	return nil
}
