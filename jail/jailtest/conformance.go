package jailtest

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/jail"
)

// conformanceTimeout bounds each conformance case.
const conformanceTimeout = 20 * time.Second

// conformancePath is the PATH every conformance process gets.
const conformancePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// RunConformance runs one shared table of behaviours against m, after
// ContainerSSH's RunConformanceTests: the fake HostManager and the real jail
// must both pass it. spec is the environment every case starts (each under
// a key of its own); its filesystem needs /bin/sh, cat, sleep, stty and ls,
// and a writable /tmp.
// It calls t.Setenv, so t must not be parallel.
func RunConformance(t *testing.T, m jail.Manager, spec *jail.EnvSpec) {
	t.Setenv("JAILGATE_CONFORMANCE_SECRET", "leaked")
	for _, tc := range append(conformanceCases, listenCases...) {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
			defer cancel()
			env, err := m.Environment(ctx, "conformance/"+strings.ReplaceAll(tc.name, " ", "-"), spec)
			if err != nil {
				t.Fatalf("environment: %v", err)
			}
			defer env.Release()
			tc.run(t, ctx, env)
		})
	}
}

// conformanceCases is the table RunConformance runs.
var conformanceCases = []struct {
	name string
	run  func(t *testing.T, ctx context.Context, env jail.Env)
}{
	{"echo through pipes", func(t *testing.T, ctx context.Context, env jail.Env) {
		r := runProc(t, ctx, env, shSpec("echo hello; echo oops >&2", nil), nil)
		if r.stdout != "hello\n" || r.stderr != "oops\n" || r.status != (jail.ExitStatus{}) {
			t.Errorf("got stdout %q stderr %q status %+v; want hello, oops, exit 0", r.stdout, r.stderr, r.status)
		}
	}},
	{"exit code", func(t *testing.T, ctx context.Context, env jail.Env) {
		if r := runProc(t, ctx, env, shSpec("exit 3", nil), nil); r.status != (jail.ExitStatus{Code: 3}) {
			t.Errorf("exit 3: status %+v", r.status)
		}
	}},
	{"exit by signal", func(t *testing.T, ctx context.Context, env jail.Env) {
		if r := runProc(t, ctx, env, shSpec("kill -TERM $$", nil), nil); r.status.Signal != unix.SIGTERM {
			t.Errorf("kill -TERM $$: status %+v, want signal SIGTERM", r.status)
		}
	}},
	{"environment passthrough only", func(t *testing.T, ctx context.Context, env jail.Env) {
		ps := shSpec(`echo "$FOO ${JAILGATE_CONFORMANCE_SECRET-unset}"`, nil)
		ps.Env = append(ps.Env, "FOO=bar")
		if r := runProc(t, ctx, env, ps, nil); r.stdout != "bar unset\n" {
			t.Errorf("got %q, want %q: FOO passed and the manager's own environment not", r.stdout, "bar unset\n")
		}
	}},
	{"stdin EOF reaches the process", func(t *testing.T, ctx context.Context, env jail.Env) {
		ps := &jail.ProcSpec{Argv: []string{"/bin/sh", "-c", "cat"}, Env: []string{conformancePath}, Dir: "/"}
		r := runProc(t, ctx, env, ps, func(p jail.Process) {
			io.WriteString(p.Stdin(), "abc\n")
			p.Stdin().Close()
		})
		if r.stdout != "abc\n" || r.status != (jail.ExitStatus{}) {
			t.Errorf("cat: stdout %q status %+v", r.stdout, r.status)
		}
	}},
	{"tty is a terminal", func(t *testing.T, ctx context.Context, env jail.Env) {
		tty := &jail.TTY{Term: "xterm", Rows: 24, Cols: 80}
		r := runProc(t, ctx, env, shSpec("test -t 0 && test -t 1 && echo is-a-tty; stty size", tty), nil)
		if !strings.Contains(r.stdout, "is-a-tty") || !strings.Contains(r.stdout, "24 80") {
			t.Errorf("with a TTY: output %q, want is-a-tty and the size 24 80", r.stdout)
		}
		if r.stderr != "" {
			t.Errorf("stderr with a TTY: %q, want nothing (it is the terminal)", r.stderr)
		}
	}},
	{"tty resize", func(t *testing.T, ctx context.Context, env jail.Env) {
		tty := &jail.TTY{Term: "xterm", Rows: 24, Cols: 80}
		// The process waits for a line, so the resize lands before stty runs.
		r := runProc(t, ctx, env, shSpec("read line; stty size", tty), func(p jail.Process) {
			if err := p.Resize(33, 111); err != nil {
				t.Errorf("resize: %v", err)
			}
			io.WriteString(p.Stdin(), "go\n")
		})
		if !strings.Contains(r.stdout, "33 111") {
			t.Errorf("after Resize(33, 111): output %q", r.stdout)
		}
	}},
	{"kill ends the process", func(t *testing.T, ctx context.Context, env jail.Env) {
		p, err := env.Spawn(ctx, shSpec("sleep 100", nil))
		if err != nil {
			t.Fatalf("spawn: %v", err)
		}
		defer closeStdio(p)
		if err := p.Kill(); err != nil {
			t.Errorf("kill: %v", err)
		}
		st := waitProc(t, ctx, p)
		if st.Signal == 0 {
			t.Errorf("killed sleep: status %+v, want a signal", st)
		}
		if err := p.Kill(); err != nil {
			t.Errorf("second kill (idempotent): %v", err)
		}
	}},
}

// shSpec is a /bin/sh -c script with a PATH, in "/".
func shSpec(script string, tty *jail.TTY) *jail.ProcSpec {
	return &jail.ProcSpec{Argv: []string{"/bin/sh", "-c", script}, Env: []string{conformancePath}, Dir: "/", TTY: tty}
}

// procResult is what a process printed and how it ended.
type procResult struct {
	stdout, stderr string
	status         jail.ExitStatus
}

// runProc spawns ps, calls feed (or closes stdin when feed is nil), reads
// the output to its end and waits. It fails the test if ctx ends first.
func runProc(t *testing.T, ctx context.Context, env jail.Env, ps *jail.ProcSpec, feed func(jail.Process)) procResult {
	t.Helper()
	p, err := env.Spawn(ctx, ps)
	if err != nil {
		t.Fatalf("spawn %q: %v", ps.Argv, err)
	}
	defer closeStdio(p)
	outc, errc := readAll(p.Stdout()), readAll(p.Stderr())
	if feed != nil {
		feed(p)
	} else if ps.TTY == nil {
		p.Stdin().Close()
	}
	var r procResult
	for _, dst := range []*string{&r.stdout, &r.stderr} {
		select {
		case *dst = <-outc:
		case <-ctx.Done():
			p.Kill()
			t.Fatalf("%q: output did not end within %v", ps.Argv, conformanceTimeout)
		}
		outc = errc
	}
	r.status = waitProc(t, ctx, p)
	return r
}

// readAll reads r to its end in the background; a nil r reads as "".
func readAll(r io.Reader) <-chan string {
	c := make(chan string, 1)
	if r == nil {
		c <- ""
		return c
	}
	go func() {
		b, _ := io.ReadAll(r)
		c <- string(b)
	}()
	return c
}

// waitProc waits for p, failing the test if ctx ends first.
func waitProc(t *testing.T, ctx context.Context, p jail.Process) jail.ExitStatus {
	t.Helper()
	c := make(chan jail.ExitStatus, 1)
	go func() {
		st, err := p.Wait()
		if err != nil {
			t.Errorf("wait: %v", err)
		}
		c <- st
	}()
	select {
	case st := <-c:
		return st
	case <-ctx.Done():
		p.Kill()
		t.Fatalf("process did not end within %v", conformanceTimeout)
		return jail.ExitStatus{}
	}
}

// closeStdio closes the caller's ends of p's stdio, as the gateway does.
func closeStdio(p jail.Process) {
	p.Stdin().Close()
	for _, r := range []io.Reader{p.Stdout(), p.Stderr()} {
		if c, ok := r.(io.Closer); ok {
			c.Close()
		}
	}
}
