package gateway_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
)

func TestPTY(t *testing.T) {
	l := newLab(t, &jailtest.HostManager{}, config.EnvTenant)
	s, err := l.client(t, "alice").NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm-256color", 24, 80, gossh.TerminalModes{gossh.ECHO: 0, gossh.TTY_OP_ISPEED: 38400}); err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("vt100", 24, 80, nil); err == nil {
		t.Error("a second pty-req was accepted")
	}
	in, _ := s.StdinPipe()
	out, _ := s.StdoutPipe()
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, "stty -echo; tty && echo TERM=$TERM; stty size\n")
	gatewaytest.Expect(t, out, "/dev/pts/", wait)
	gatewaytest.Expect(t, out, "TERM=xterm-256color", wait)
	gatewaytest.Expect(t, out, "24 80", wait)
	if err := s.WindowChange(33, 111); err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, "stty size\n")
	gatewaytest.Expect(t, out, "33 111", wait)
	io.WriteString(in, "exit 3\n")
	if code, _, ok := exitStatus(s.Wait()); !ok || code != 3 {
		t.Errorf("shell exit: want 3")
	}
	p := l.m.Procs()[0]
	if p.TTY == nil || p.TTY.Term != "xterm-256color" || p.TTY.Modes[gossh.ECHO] != 0 || p.TTY.Modes[gossh.TTY_OP_ISPEED] != 38400 {
		t.Errorf("spawned TTY %+v", p.TTY)
	}
}

func TestPTYBytesUnchanged(t *testing.T) {
	l := newLab(t, &jailtest.HostManager{}, config.EnvTenant)
	s, err := l.client(t, "alice").NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm", 24, 80, nil); err != nil {
		t.Fatal(err)
	}
	out, err := s.Output(`stty raw -echo; printf 'a\nb'`)
	if err != nil || string(out) != "a\nb" {
		t.Errorf("under stty raw: %q, %v; want exactly %q (no \\r added)", out, err, "a\nb")
	}
}

func TestExecWithPTYAfterStartRefused(t *testing.T) {
	l := newLab(t, &jailtest.HostManager{}, config.EnvTenant)
	s, err := l.client(t, "alice").NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.StdinPipe() // kept open: read x waits
	out, _ := s.StdoutPipe()
	if err := s.Start("echo started; read x"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "started", wait)
	if err := s.RequestPty("xterm", 24, 80, nil); err == nil {
		t.Error("a pty-req after the command started was accepted")
	}
	if ok, err := s.SendRequest("exec", true, gossh.Marshal(struct{ C string }{"true"})); ok || err != nil {
		t.Errorf("a second exec: ok %v, err %v", ok, err)
	}
	if err := s.Setenv("LANG", "C"); err == nil {
		t.Error("env after start was accepted")
	}
}

func TestEnvAllowlist(t *testing.T) {
	l := newLab(t, &jailtest.HostManager{}, config.EnvTenant)
	s, err := l.client(t, "alice").NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, kv := range [][2]string{{"LANG", "C.UTF-8"}, {"LC_ALL", "C"}, {"TERM", "vt220"}} {
		if err := s.Setenv(kv[0], kv[1]); err != nil {
			t.Errorf("Setenv %s: %v", kv[0], err)
		}
	}
	for _, name := range []string{"LD_PRELOAD", "FOO", "PATH", "HOME", "LC-ALL", "LC_ALL=x"} {
		if err := s.Setenv(name, "/tmp/evil.so"); err == nil {
			t.Errorf("Setenv %s accepted", name)
		}
	}
	if err := s.Setenv("LC_BIG", strings.Repeat("x", 5000)); err == nil {
		t.Error("a 5000-byte value was accepted")
	}
	out, err := s.Output(`echo "$LANG $LC_ALL $TERM ${LD_PRELOAD-unset} ${FOO-unset}"`)
	if err != nil || string(out) != "C.UTF-8 C vt220 unset unset\n" {
		t.Errorf("env: %q, %v", out, err)
	}
	if strings.Contains(l.Logs(), "evil") || strings.Contains(l.Logs(), "C.UTF-8") {
		t.Errorf("the log holds env values:\n%s", l.Logs())
	}
}

func TestSignalForwarded(t *testing.T) {
	l := newLab(t, &jailtest.HostManager{}, config.EnvTenant)
	s, err := l.client(t, "alice").NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, _ := s.StdoutPipe()
	// The shell runs the trap once the current 0.1s sleep is over.
	if err := s.Start(`trap 'echo got; exit 0' USR1; echo ready; i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; exit 1`); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "ready\n", wait)
	if err := s.Signal(gossh.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "got\n", wait)
	if err := s.Wait(); err != nil {
		t.Errorf("after the trap: %v, want exit 0", err)
	}
}

func TestSubsystems(t *testing.T) {
	m := &jailtest.HostManager{}
	l := newLab(t, m, config.EnvTenant)
	c := l.client(t, "alice")
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestSubsystem("netconf"); err == nil {
		t.Error("subsystem netconf accepted")
	}
	if !strings.Contains(l.Logs(), "subsystem=netconf") {
		t.Errorf("the refusal is not logged:\n%s", l.Logs())
	}
	// sftp is asked of the jail, as a subsystem, never with a terminal.
	s2, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	s2.RequestPty("xterm", 24, 80, nil)
	if err := s2.RequestSubsystem("sftp"); err != nil {
		t.Fatalf("subsystem sftp refused: %v", err)
	}
	var got *jailtest.Proc
	m.WaitFor(wait, func() bool {
		for _, p := range m.Procs() {
			if p.Subsystem != "" {
				got = &p
			}
		}
		return got != nil
	})
	if got == nil || got.Subsystem != "sftp" || got.TTY != nil || got.Dir != "/root" {
		t.Errorf("spawned %+v, want the sftp subsystem in /root without a terminal", got)
	}
}

func TestUnknownSignalRefused(t *testing.T) {
	l := newLab(t, &jailtest.HostManager{}, config.EnvTenant)
	s, err := l.client(t, "alice").NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.StdinPipe() // kept open: read x waits
	out, _ := s.StdoutPipe()
	if err := s.Start("echo ready; read x"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "ready", wait)
	for _, name := range []string{"STOP", "SIGTERM", "", "WINCH"} {
		if ok, err := s.SendRequest("signal", true, gossh.Marshal(struct{ S string }{name})); ok || err != nil {
			t.Errorf("signal %q: ok %v err %v", name, ok, err)
		}
	}
	if ok, _ := s.SendRequest("signal", true, gossh.Marshal(struct{ S string }{"KILL"})); !ok {
		t.Error("signal KILL refused")
	}
	if _, sig, ok := exitStatus(s.Wait()); !ok || sig != "KILL" {
		t.Errorf("after signal KILL: want exit-signal KILL")
	}
	if st := l.m.Procs()[0].Status; st.Signal != unix.SIGKILL {
		t.Errorf("status %+v", st)
	}
}

// TestLegacySCPWithoutSCP: scp -O runs "scp -t PATH" over exec; when her
// environment has no scp (her shell's status 127), she reads why and what
// works instead, after the shell's own message, and the status stays 127.
// Other commands that are not found get no such line.
func TestLegacySCPWithoutSCP(t *testing.T) {
	l := newLab(t, &jailtest.HostManager{}, config.EnvTenant)
	c := l.client(t, "alice")
	for _, tc := range []struct {
		cmd    string
		notice bool
	}{
		{"/nonexistent/scp -t -- legacy.bin", true},
		{"/nonexistent/scp -v -r -p -f dir", true},
		{"/nonexistent/scp --version", false},
		{"/nonexistent/rsync --server . x", false},
	} {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		s.Stderr = &stderr
		err = s.Run(tc.cmd)
		s.Close()
		var ee *gossh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 127 {
			t.Errorf("%s: %v, want exit status 127", tc.cmd, err)
		}
		const want = "jailgate: scp -O (the legacy protocol) needs an scp program in your environment, and there is none; " +
			"use scp without -O (SFTP), which needs nothing in it\n"
		if got := strings.HasSuffix(stderr.String(), want); got != tc.notice {
			t.Errorf("%s: stderr %q; notice shown %v, want %v", tc.cmd, stderr.String(), got, tc.notice)
		}
	}
}
