package jailtest

import (
	"os"
	"testing"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// RawPTY opens a PTY pair for tests of the output path: the slave raw
// (bytes pass unchanged, no echo) and the master non-blocking, as the
// jail hands it to the gateway. Both are closed at the test's end.
func RawPTY(tb testing.TB) (master, slave *os.File) {
	tb.Helper()
	m, s, err := pty.Open()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	tio, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
	if err != nil {
		m.Close()
		tb.Fatal(err)
	}
	tio.Iflag, tio.Oflag, tio.Lflag = 0, 0, 0
	if err := unix.IoctlSetTermios(int(s.Fd()), unix.TCSETS, tio); err != nil {
		m.Close()
		tb.Fatal(err)
	}
	// creack/pty's Fd() made the master blocking; a non-blocking duplicate
	// goes through the poller, as the jail's does.
	fd, err := unix.FcntlInt(m.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	m.Close()
	if err != nil {
		tb.Fatal(err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		tb.Fatal(err)
	}
	master = os.NewFile(uintptr(fd), "ptmx")
	tb.Cleanup(func() { master.Close() })
	return master, s
}
