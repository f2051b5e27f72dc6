package jail

import (
	"fmt"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// argRule refuses a syscall by one 32-bit argument. The kernel reads
// ioctl's request, personality's persona and socket's domain as 32-bit
// values (unsigned int / int) and ignores the upper half of the register,
// so the filter must compare the low 32 bits only: a 64-bit comparison
// lets TIOCSTI|1<<32 through (CVE-2019-10063, flatpak's filter).
type argRule struct {
	syscall string
	arg     uint32   // argument index, 0-based
	values  []uint32 // compared against the argument's low 32 bits
	// allowOnly: refuse unless the argument is one of values; otherwise
	// refuse when it is one of them.
	allowOnly bool
}

// maskedArgs are the argument checks the library cannot express (its
// conditions compare all 64 bits).
var maskedArgs = []argRule{
	// Faking terminal input (CVE-2016-7545 class) and the console ioctls.
	{syscall: "ioctl", arg: 1, values: []uint32{unix.TIOCSTI, unix.TIOCLINUX}},
	// btrfs subvolumes, snapshots and qgroups (include/uapi/linux/btrfs.h,
	// _IOW/_IOWR(0x94, nr, size)): a nested subvolume she made would escape
	// her tree's qgroup (the btrfs disk quota), and needs no capability.
	{syscall: "ioctl", arg: 1, values: []uint32{
		0x50009401, // BTRFS_IOC_SNAP_CREATE
		0x5000940e, // BTRFS_IOC_SUBVOL_CREATE
		0x5000940f, // BTRFS_IOC_SNAP_DESTROY
		0x50009417, // BTRFS_IOC_SNAP_CREATE_V2
		0x50009418, // BTRFS_IOC_SUBVOL_CREATE_V2
		0x5000943f, // BTRFS_IOC_SNAP_DESTROY_V2
		0xc0109428, // BTRFS_IOC_QUOTA_CTL
		0x40189429, // BTRFS_IOC_QGROUP_ASSIGN
		0x4010942a, // BTRFS_IOC_QGROUP_CREATE
		0x8030942b, // BTRFS_IOC_QGROUP_LIMIT
		0x4040942c, // BTRFS_IOC_QUOTA_RESCAN
	}},
	// A persona changes how the kernel lays out her address space
	// (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC) and has hidden kernel bugs
	// (CVE-2009-2692); querying (0xffffffff) and the default (PER_LINUX,
	// 0) are all a lab needs.
	{syscall: "personality", arg: 0, values: []uint32{0xffffffff, perLinux}, allowOnly: true},
	// vsock is not network-namespaced: it reaches the hypervisor's
	// services whatever her network mode.
	{syscall: "socket", arg: 0, values: []uint32{unix.AF_VSOCK}},
}

// perLinux is the default persona (PER_LINUX in <sys/personality.h>).
const perLinux = 0

// seccompDataArgs is the offset of args[0] in struct seccomp_data (nr,
// arch, instruction_pointer, then six 64-bit args).
const seccompDataArgs = 16

// argLowHalf is the offset of argument i's low 32 bits.
func argLowHalf(i uint32) uint32 {
	off := seccompDataArgs + 8*i
	probe := uint16(1)
	if *(*byte)(unsafe.Pointer(&probe)) == 0 { // big-endian: the low half comes second
		off += 4
	}
	return off
}

// maskedArgRules assembles maskedArgs for an architecture's syscall
// table: one self-contained block per rule, each falling through to the
// next (and in the end to the library's policy) when it does not refuse.
func maskedArgRules(table map[string]int) ([]bpf.Instruction, error) {
	deny := bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)}
	var out []bpf.Instruction
	for _, r := range maskedArgs {
		nr, ok := table[r.syscall]
		if !ok {
			return nil, fmt.Errorf("seccomp: no syscall %s on this architecture", r.syscall)
		}
		k := len(r.values)
		tail := 2 // jump over the refusal, refusal
		if r.allowOnly {
			tail = 1 // refusal
		}
		size := 3 + k + tail
		block := []bpf.Instruction{
			bpf.LoadAbsolute{Off: 0, Size: 4}, // nr
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(nr), SkipTrue: uint8(size - 2)},
			bpf.LoadAbsolute{Off: argLowHalf(r.arg), Size: 4},
		}
		// A match skips the compares after it and lands on the refusal
		// (refuse-if) or just past it (allow-only): k-i either way.
		for i, v := range r.values {
			block = append(block, bpf.JumpIf{Cond: bpf.JumpEqual, Val: v, SkipTrue: uint8(k - i)})
		}
		if !r.allowOnly {
			block = append(block, bpf.Jump{Skip: 1})
		}
		out = append(append(out, block...), deny)
	}
	return out, nil
}
