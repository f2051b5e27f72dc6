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
	out := &ttyOutput{f: master}
	if rc, err := master.SyscallConn(); err == nil && nonblocking(rc) {
		out.rc, out.fill = rc, out.gather
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
// The fields below rc are one Read's, for gather, bound once to fill so
// that a Read allocates nothing: Reads must not overlap (attach has one
// reader).
type ttyOutput struct {
	f    *os.File
	rc   syscall.RawConn
	fill func(fd uintptr) bool // t.gather
	b    []byte
	n    int
	err  error
}

func (t *ttyOutput) Read(b []byte) (int, error) {
	if t.rc == nil || len(b) == 0 {
		n, err := t.f.Read(b)
		return n, ttyErr(err)
	}
	t.b, t.n, t.err = b, 0, nil
	err := t.rc.Read(t.fill)
	n, rerr := t.n, t.err
	t.b = nil
	if n > 0 {
		return n, nil // an error after some bytes comes again at the next Read
	}
	if err == nil {
		err = rerr
	}
	return 0, ttyErr(err)
}

// gather reads fd into t.b until it is full or the terminal has nothing
// more now; with nothing at all it returns false, and the poller waits
// until the master is readable (or its read deadline).
func (t *ttyOutput) gather(fd uintptr) bool {
	for t.n < len(t.b) {
		m, err := unix.Read(int(fd), t.b[t.n:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return t.n > 0
		case err != nil:
			t.err = &os.PathError{Op: "read", Path: t.f.Name(), Err: err}
			return true
		case m == 0:
			t.err = io.EOF
			return true
		}
		t.n += m
	}
	return true
}

// ttyErr makes the master's end of output io.EOF: EIO (no slave fd left)
// or the read deadline set after the process exited.
func ttyErr(err error) error {
	if err != nil && (errors.Is(err, unix.EIO) || errors.Is(err, os.ErrDeadlineExceeded)) {
		return io.EOF
	}
	return err
}

func (t *ttyOutput) Close() error { return t.f.Close() }
