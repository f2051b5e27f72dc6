package jail

import (
	"fmt"
	"runtime"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// DeniedSyscalls fail with EPERM inside every environment. Each is either a
// way to reshape the tenant's view of the system (the mount family,
// pivot_root, setns), a kernel attack surface no lab shell needs (bpf,
// perf_event_open, userfaultfd, keyctl, modules, kexec), or host-wide
// state (reboot, swap, acct). Capabilities already stop most of them; the
// filter also stops what a user namespace would let through.
var DeniedSyscalls = []string{
	"mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount",
	"fsconfig", "fspick", "mount_setattr", "setns",
	"keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"reboot", "swapon", "swapoff", "acct", "open_by_handle_at",
	// io_uring runs syscalls from kernel workers the filter never sees,
	// and has been a steady source of kernel bugs (Google disabled it on
	// ChromeOS and its production servers, 2023).
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	// fanotify watches whole filesystems and mounts, a host-wide
	// interface; inotify covers what a lab needs.
	"fanotify_init",
}

// x86Only are denied where the architecture has them.
var x86Only = []string{"iopl", "ioperm"}

// seccompPolicy builds the deny-list policy for the running architecture.
func seccompPolicy() seccomp.Policy {
	names := append([]string(nil), DeniedSyscalls...)
	if runtime.GOARCH == "amd64" {
		names = append(names, x86Only...)
	}
	newUser := seccomp.Condition{Argument: 0, Operation: seccomp.BitsSet, Value: unix.CLONE_NEWUSER}
	return seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{
			{Action: seccomp.ActionErrno, Names: names},
			{Action: seccomp.ActionErrno, NamesWithCondtions: []seccomp.NameWithConditions{
				// A new user namespace needs no capability, and inside it
				// mount and the rest come back: refuse it.
				{Name: "unshare", Conditions: seccomp.ArgumentConditions{newUser}},
				{Name: "clone", Conditions: seccomp.ArgumentConditions{newUser}},
			}},
			// clone3 passes its flags in memory the filter cannot read; ENOSYS
			// makes libc fall back to clone, which the filter can.
			{Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS), Names: []string{"clone3"}},
		},
	}
}

// seccompProgram assembles the policy behind an architecture check: a
// syscall made through another ABI (int 0x80 on x86_64) is refused
// outright, instead of reaching the library's default action.
func seccompProgram() ([]unix.SockFilter, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, err
	}
	p := seccompPolicy()
	body, err := p.Assemble()
	if err != nil {
		return nil, err
	}
	masked, err := maskedArgRules(info.SyscallNames)
	if err != nil {
		return nil, err
	}
	const archOffset = 4 // struct seccomp_data: nr, arch, ...
	insts := []bpf.Instruction{
		bpf.LoadAbsolute{Off: archOffset, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
	}
	insts = append(append(insts, masked...), body...)
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return nil, err
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

// installSeccomp loads the filter on every thread of the init (TSYNC), the
// last step before it serves: everything it spawns inherits it.
func installSeccomp(cfg *initConfig) *StepError {
	if cfg.Seccomp == SeccompUnconfined {
		return nil
	}
	prog, err := seccompProgram()
	if err != nil {
		return stepErr("seccomp", "assemble filter", "", err)
	}
	fprog := &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return stepErr("seccomp", fmt.Sprintf("seccomp SET_MODE_FILTER TSYNC (%d instructions)", len(prog)), "", errno)
	}
	return nil
}
