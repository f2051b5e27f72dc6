package jail

import (
	"errors"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// TTYStreams wraps a PTY master as a process's stdin and stdout. Closing
// the stdin does nothing, because the master also carries the output (a
// client's EOF on a terminal session is not a hangup, as with sshd). The
// stdout ends (io.EOF) at EIO, when every slave fd is closed, or at a read
// deadline, which callers set once the process has exited.
func TTYStreams(master *os.File) (io.WriteCloser, io.ReadCloser) {
	out := ttyOutput{f: master}
	if rc, err := master.SyscallConn(); err == nil && nonblocking(rc) {
		out.rc = rc
	}
	return ttyInput{master}, out
}

// nonblocking reports whether rc's fd is in non-blocking mode.
func nonblocking(rc syscall.RawConn) bool {
	var fl int
	var err error
	if cerr := rc.Control(func(fd uintptr) { fl, err = unix.FcntlInt(fd, unix.F_GETFL, 0) }); cerr != nil || err != nil {
		return false
	}
	return fl&unix.O_NONBLOCK != 0
}

type ttyInput struct{ f *os.File }

func (t ttyInput) Write(b []byte) (int, error) { return t.f.Write(b) }
func (t ttyInput) Close() error                { return nil }

// ttyOutput reads a PTY master. A Read returns what the terminal holds
// now, up to len(b), not what one read(2) gives: the line discipline hands
// out at most 4 KiB per read(2) and refills from the tty's buffer as it is
// read, so a busy terminal fills a 32 KiB buffer in one Read and the SSH
// channel sends one 32 KiB packet (one encryption, 3 socket writes) instead
// of eight (16). It never waits for more once it has a byte: a keystroke's
// echo goes out at once. rc is nil when f is blocking: one read(2) per Read.
type ttyOutput struct {
	f  *os.File
	rc syscall.RawConn
}

func (t ttyOutput) Read(b []byte) (int, error) {
	if t.rc == nil || len(b) == 0 {
		n, err := t.f.Read(b)
		return n, ttyErr(err)
	}
	n := 0
	var rerr error
	err := t.rc.Read(func(fd uintptr) bool {
		for n < len(b) {
			m, err := unix.Read(int(fd), b[n:])
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return n > 0 // with nothing yet, wait until the master is readable
			case err != nil:
				rerr = &os.PathError{Op: "read", Path: t.f.Name(), Err: err}
				return true
			case m == 0:
				rerr = io.EOF
				return true
			}
			n += m
		}
		return true
	})
	if n > 0 {
		return n, nil // an error after some bytes comes again at the next Read
	}
	if err == nil {
		err = rerr
	}
	return 0, ttyErr(err)
}

// ttyErr makes the master's end of output io.EOF: EIO (no slave fd left)
// or the read deadline set after the process exited.
func ttyErr(err error) error {
	if err != nil && (errors.Is(err, unix.EIO) || errors.Is(err, os.ErrDeadlineExceeded)) {
		return io.EOF
	}
	return err
}

func (t ttyOutput) Close() error { return t.f.Close() }
