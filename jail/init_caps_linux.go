package jail

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/psx"
)

// capNames maps capability names to numbers: CapabilityNames is in
// number order (capabilities(7)).
var capNames = func() map[string]uintptr {
	m := make(map[string]uintptr, len(CapabilityNames))
	for i, n := range CapabilityNames {
		m[n] = uintptr(i)
	}
	return m
}()

// CapMask turns capability names into a bit mask; an unknown name is an error.
func CapMask(names []string) (uint64, error) {
	var mask uint64
	for _, n := range names {
		c, ok := capNames[strings.ToUpper(n)]
		if !ok {
			return 0, fmt.Errorf("unknown capability %q", n)
		}
		mask |= 1 << c
	}
	return mask, nil
}

// allThreads runs a syscall on every thread of the init. Capabilities and
// no_new_privs are per-thread kernel state, and the init is a multithreaded
// Go process: changing only the calling thread would leave the others with
// the full set, and any of them may fork the next tenant process.
// syscall.AllThreadsSyscall does this only in a binary without cgo (it
// returns ENOTSUP otherwise), and a plain `go build` on a host with a C
// compiler links cgo (package net). libcap's psx covers both: without cgo
// it is AllThreadsSyscall, with cgo it signals every pthread to make the
// call, so `go build` and `go install` give a gateway whose inits drop
// privileges on every thread (issue 15).
func allThreads(trap, a1, a2, a3 uintptr) error {
	// Six arguments, the last three zero: prctl's PR_CAP_AMBIENT and
	// PR_SET_NO_NEW_PRIVS refuse (EINVAL) unused arguments that are not,
	// and psx's C path passes whatever the registers hold for the rest.
	_, _, errno := psx.Syscall6(trap, a1, a2, a3, 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// lastCap reads the highest capability the kernel knows.
func lastCap() uintptr {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 40
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 40
	}
	return uintptr(n)
}

// dropBoundingSet cuts the capability bounding set to cfg.Caps and clears
// the ambient set. Neither changes what the init may do now (its effective
// set), so it runs while the init is blank (prepare), to the set any tenant
// it may serve keeps, before the init makes its spare threads: every
// AllThreadsSyscall is a signal round trip to each thread, one per dropped
// capability, and a thread made later inherits the cut sets from the
// thread that cloned it (on 19 threads this step alone was a quarter of an
// environment's start-up CPU). At identity it runs again with her caps,
// dropping only what is left (usually nothing).
//
// In a cgo build it waits for dropPrivileges instead: psx lists the
// threads in /proc/self/task and signals them by those ids, and until
// setup mounts the new pid namespace's proc, /proc is the host's, whose
// thread ids mean nothing here (the call would wait for ever).
func dropBoundingSet(cfg *initConfig) *StepError {
	if cgoLinked {
		return nil
	}
	return cutBoundingSet(cfg)
}

// cutBoundingSet drops every capability but the tenant's from the bounding
// set of every thread, and clears the ambient set.
func cutBoundingSet(cfg *initConfig) *StepError {
	keep, err := CapMask(cfg.Caps)
	if err != nil {
		return stepErr("caps", "parse", "", err)
	}
	last := lastCap()
	for c := uintptr(0); c <= last; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		// Cut already (prepare): every thread's set is the same.
		if in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, c, 0, 0, 0); err == nil && in == 0 {
			continue
		}
		if err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, c, 0); err != nil {
			return stepErr("caps", fmt.Sprintf("prctl PR_CAPBSET_DROP %d", c), "", err)
		}
	}
	if ambientCleared {
		return nil // by prepare: nothing raises it again (a uid change to 0 does not)
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil {
		return stepErr("caps", "prctl PR_CAP_AMBIENT_CLEAR_ALL", "", err)
	}
	ambientCleared = true
	return nil
}

// ambientCleared says every thread's ambient set is empty: the threads
// made since inherit it.
var ambientCleared bool

// dropPrivileges leaves the init with no more than the tenant's own root
// has, so that everything it starts inherits that and nothing more:
// non-dumpable (so /proc/1/{mem,fd,exe} and ptrace of PID 1 are closed to
// the tenant: CVE-2019-5736 class), the bounding and ambient sets cut
// (dropBoundingSet, before setup; here in a cgo build), the effective, permitted and inheritable sets reduced to the tenant's caps,
// and no_new_privs set, so setuid and file-capability binaries gain nothing.
func dropPrivileges(cfg *initConfig) *StepError {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return stepErr("caps", "prctl PR_SET_DUMPABLE 0", "", err)
	}
	if cgoLinked { // see dropBoundingSet; before capset takes CAP_SETPCAP away
		if serr := cutBoundingSet(cfg); serr != nil {
			return serr
		}
	}
	keep, err := CapMask(cfg.Caps)
	if err != nil {
		return stepErr("caps", "parse", "", err)
	}
	// Heap-allocated, so the addresses stay valid through the call.
	hdr := &unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := new([2]unix.CapUserData)
	for i := range data {
		v := uint32(keep >> (32 * i))
		data[i] = unix.CapUserData{Effective: v, Permitted: v, Inheritable: v}
	}
	err = allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(hdr)
	runtime.KeepAlive(data)
	if err != nil {
		return stepErr("caps", "capset", "", err)
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return stepErr("caps", "prctl PR_SET_NO_NEW_PRIVS 1", "", err)
	}
	return nil
}
