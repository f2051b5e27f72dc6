package jail

import (
	"encoding/binary"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// runFilter runs the environment's filter on one syscall in x/net/bpf's
// VM. The VM loads 32-bit words big-endian where the kernel loads them in
// the host's order, so each word is written big-endian at the offset the
// filter reads it from (argLowHalf for an argument's low half).
func runFilter(t *testing.T, name string, args ...uint64) uint32 {
	t.Helper()
	info, err := arch.GetInfo("")
	if err != nil {
		t.Fatal(err)
	}
	prog, err := seccompProgram()
	if err != nil {
		t.Fatal(err)
	}
	insts := make([]bpf.RawInstruction, len(prog))
	for i, p := range prog {
		insts[i] = bpf.RawInstruction{Op: p.Code, Jt: p.Jt, Jf: p.Jf, K: p.K}
	}
	dis, ok := bpf.Disassemble(insts)
	if !ok {
		t.Fatal("disassemble")
	}
	vm, err := bpf.NewVM(dis)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, seccompDataArgs+8*6)
	binary.BigEndian.PutUint32(data[0:], uint32(info.SyscallNames[name]))
	binary.BigEndian.PutUint32(data[4:], uint32(info.ID))
	for i, a := range args {
		lo := argLowHalf(uint32(i))
		hi := seccompDataArgs + 8*uint32(i) + 4 - (lo - seccompDataArgs - 8*uint32(i))
		binary.BigEndian.PutUint32(data[lo:], uint32(a))
		binary.BigEndian.PutUint32(data[hi:], uint32(a>>32))
	}
	ret, err := vm.Run(data)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(ret)
}

// TestSeccompMaskedArgs: the filter reads 32-bit arguments as the kernel
// does, so a set upper half (TIOCSTI|1<<32, CVE-2019-10063) changes
// nothing, and the new denials hold.
func TestSeccompMaskedArgs(t *testing.T) {
	const denied = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	cases := []struct {
		name string
		nr   string
		args []uint64
		deny bool
	}{
		{"TIOCSTI", "ioctl", []uint64{0, unix.TIOCSTI}, true},
		{"TIOCSTI with the upper half set", "ioctl", []uint64{0, unix.TIOCSTI | 1<<32}, true},
		{"TIOCLINUX with the upper half set", "ioctl", []uint64{0, unix.TIOCLINUX | 0xffffffff00000000}, true},
		{"TCGETS", "ioctl", []uint64{0, unix.TCGETS}, false},
		{"TIOCGWINSZ", "ioctl", []uint64{0, unix.TIOCGWINSZ}, false},
		{"personality query", "personality", []uint64{0xffffffff}, false},
		{"personality PER_LINUX", "personality", []uint64{0}, false},
		{"personality PER_LINUX, upper half set", "personality", []uint64{1 << 32}, false},
		{"personality ADDR_NO_RANDOMIZE", "personality", []uint64{0x0040000}, true},
		{"socket AF_VSOCK", "socket", []uint64{unix.AF_VSOCK, unix.SOCK_STREAM}, true},
		{"socket AF_VSOCK, upper half set", "socket", []uint64{unix.AF_VSOCK | 1<<40, unix.SOCK_STREAM}, true},
		{"socket AF_INET", "socket", []uint64{unix.AF_INET, unix.SOCK_STREAM}, false},
		{"socket AF_UNIX", "socket", []uint64{unix.AF_UNIX, unix.SOCK_STREAM}, false},
		{"io_uring_setup", "io_uring_setup", []uint64{8, 0}, true},
		{"io_uring_enter", "io_uring_enter", nil, true},
		{"io_uring_register", "io_uring_register", nil, true},
		{"fanotify_init", "fanotify_init", nil, true},
		{"keyctl", "keyctl", nil, true},
		{"read", "read", []uint64{0, 0, 1}, false},
	}
	for _, tc := range cases {
		got := runFilter(t, tc.nr, tc.args...)
		if tc.deny && got != denied {
			t.Errorf("%s: filter returned %#x, want EPERM", tc.name, got)
		}
		if !tc.deny && got != unix.SECCOMP_RET_ALLOW {
			t.Errorf("%s: filter returned %#x, want allow", tc.name, got)
		}
	}
}
