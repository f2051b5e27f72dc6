//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
)

// echoOnce builds testdata/echoserver, static, once per test binary.
var echoOnce = sync.OnceValues(func() (string, error) { return buildStatic("./testdata/echoserver", "echoserver") })

// installEcho copies the echo server into a tenant's tree before her first
// login (the provisioner then shifts it into her ids with the rest).
func installEcho(t *testing.T, rootfs string) {
	t.Helper()
	bin, err := echoOnce()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(rootfs, "usr/local/bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "echoserver"), b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// ask sends one line over c and returns the answer line.
func ask(t *testing.T, c net.Conn, line string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintln(c, line)
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && err != io.EOF {
		t.Fatalf("read answer: %v", err)
	}
	return strings.TrimSpace(got)
}

// TestForwardIntoTheJail: ssh -L's channel reaches a listener inside the
// tenant's environment, never the host's loopback, even on the same port.
func TestForwardIntoTheJail(t *testing.T) {
	l := startLab(t, "")
	installEcho(t, l.rootfs["alice"])
	// The host listens on a loopback port...
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	port := strconv.Itoa(host.Addr().(*net.TCPAddr).Port)
	go func() {
		for {
			c, err := host.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "host:reached")
			c.Close()
		}
	}()
	c := l.client(t, "alice")
	// ...and, first, nothing listens on that port inside alice's jail.
	if fc, err := c.Dial("tcp", "127.0.0.1:"+port); err == nil {
		got := ask(t, fc, "hi")
		fc.Close()
		if strings.HasPrefix(got, "host:") {
			t.Fatalf("ssh -L reached the host's loopback listener: %q", got)
		}
	}
	// Alice starts a server on the same port inside her jail, in an exec
	// session that stays open (as an editor's remote plugin does).
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, _ := s.StdoutPipe()
	if err := s.Start("exec echoserver 127.0.0.1:" + port + " jail"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "listening", 10*time.Second)
	fc, err := c.Dial("tcp", "localhost:"+port)
	if err != nil {
		t.Fatalf("ssh -L to the jail's listener: %v", err)
	}
	defer fc.Close()
	if got := ask(t, fc, "hello"); got != "jail:hello" {
		t.Errorf("forwarded answer %q, want jail:hello", got)
	}
	// Non-loopback destinations are refused (network: none).
	if _, err := c.Dial("tcp", "10.1.2.3:80"); err == nil {
		t.Error("forwarding to 10.1.2.3 accepted")
	}
	if !strings.Contains(l.log.String(), "forward open") {
		t.Error("no forward open line in the log")
	}
}

// TestForwardingOff: forwarding.local false refuses ssh -L with a logged
// reason; ssh -R is always refused.
func TestForwardingOff(t *testing.T) {
	l := startLab(t, "    forwarding: { local: false }\n")
	c := l.client(t, "alice")
	if _, err := c.Dial("tcp", "127.0.0.1:22"); err == nil {
		t.Error("ssh -L accepted with forwarding.local: false")
	}
	if _, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		t.Error("ssh -R accepted")
	}
	logs := l.log.String()
	if !strings.Contains(logs, "forwarding.local is off") || !strings.Contains(logs, "remote forwarding (-R)") {
		t.Errorf("refusals not logged with their reasons:\n%s", logs)
	}
}

// TestE2EForwardOpenSSH: OpenSSH's ssh -L against the built binary reaches
// a listener inside alice's jail, the way an editor's remote plugin does:
// one exec channel starts the server, a forward on the same connection
// talks to it.
func TestE2EForwardOpenSSH(t *testing.T) {
	g := startServe(t)
	installEcho(t, g.rootfs["alice"])
	jailPort := freePort(t)
	localPort := freePort(t)
	cmd := exec.Command("ssh", append(append(g.clientOpts("alice", "-p"),
		"-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:localhost:%d", localPort, jailPort),
		"alice@127.0.0.1"), fmt.Sprintf("exec echoserver 127.0.0.1:%d jail", jailPort))...)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	gatewaytest.Expect(t, out, "listening", 10*time.Second)
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", localPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := ask(t, c, "via-openssh"); got != "jail:via-openssh" {
		t.Errorf("ssh -L answer %q, want jail:via-openssh", got)
	}
}

// TestForwardSessionMode: with environment: session, a forward joins the
// connection's one live session environment, and is refused when there
// are two (it could not tell which).
func TestForwardSessionMode(t *testing.T) {
	l := startLab(t, "    environment: session\n")
	installEcho(t, l.rootfs["alice"])
	c := l.client(t, "alice")
	port := strconv.Itoa(freePort(t))
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, _ := s.StdoutPipe()
	if err := s.Start("exec echoserver 127.0.0.1:" + port + " sess"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "listening", 10*time.Second)
	fc, err := c.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatalf("forward into the one session environment: %v", err)
	}
	if got := ask(t, fc, "x"); got != "sess:x" {
		t.Errorf("answer %q", got)
	}
	fc.Close()
	s2, _ := c.NewSession()
	defer s2.Close()
	out2, _ := s2.StdoutPipe()
	s2.Start("echo two; exec sleep 100")
	gatewaytest.Expect(t, out2, "two", 10*time.Second)
	if _, err := c.Dial("tcp", "127.0.0.1:"+port); err == nil {
		t.Error("forward accepted with two session environments on the connection")
	}
}
