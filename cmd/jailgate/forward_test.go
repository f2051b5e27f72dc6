//go:build linux

package main

import (
	"bufio"
	"errors"
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

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
)

// echoOnce builds testdata/echoserver, static, once per test binary.
var echoOnce = sync.OnceValues(func() (string, error) { return buildStatic("./testdata/echoserver", "echoserver") })

// installEcho copies the echo server into a tenant's tree before her first
// login (the provisioner then shifts it into her ids with the rest).
func installEcho(t *testing.T, rootfs string) { installStatic(t, rootfs, echoOnce) }

// installStatic copies the static test binary build makes into a tenant's
// /usr/local/bin before her first login.
func installStatic(t *testing.T, rootfs string, build func() (string, error)) {
	t.Helper()
	bin, err := build()
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
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(bin)), b, 0o755); err != nil {
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
// reason; ssh -R is refused by default (forwarding.remote false).
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
	if !strings.Contains(logs, "forwarding.local is off") || !strings.Contains(logs, "forwarding.remote is off") {
		t.Errorf("refusals not logged with their reasons:\n%s", logs)
	}
}

// TestE2EForwardOpenSSH: OpenSSH's ssh -L against the built binary reaches
// a listener inside alice's jail, the way an editor's remote plugin does:
// one exec channel starts the server, a forward on the same connection
// talks to it; a forward to a port only the host's loopback listens on
// reaches nothing.
func TestE2EForwardOpenSSH(t *testing.T) {
	g := startServe(t)
	installEcho(t, g.rootfs["alice"])
	jailPort := freePort(t)
	localPort, hostLocalPort := freePort(t), freePort(t)
	// The host listens on a loopback port that nothing inside her jail does.
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	go answerLines(host, "host")
	hostPort := host.Addr().(*net.TCPAddr).Port
	cmd := exec.Command("ssh", append(append(g.clientOpts("alice", "-p"),
		"-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:localhost:%d", localPort, jailPort),
		"-L", fmt.Sprintf("127.0.0.1:%d:localhost:%d", hostLocalPort, hostPort),
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
	// The same client's forward to the host's listener's port ends inside
	// her jail, where nothing listens: it never reaches the host's.
	hc, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", hostLocalPort))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	hc.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintln(hc, "via-openssh")
	got, err := io.ReadAll(hc) // EOF or a reset: ssh closes it when the channel is refused
	if len(got) != 0 || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ssh -L to localhost:%d answered %q (%v); want it closed (her loopback has no listener there)", hostPort, got, err)
	}
}

// TestForwardSessionMode: with environment: session, a forward joins the
// connection's one live session environment, and is refused, with the
// reason logged, when there is none or there are two (it could not tell
// which).
func TestForwardSessionMode(t *testing.T) {
	l := startLab(t, "    environment: session\n")
	installEcho(t, l.rootfs["alice"])
	c := l.client(t, "alice")
	port := strconv.Itoa(freePort(t))
	// No session yet: no environment to join.
	if _, err := c.Dial("tcp", "127.0.0.1:"+port); err == nil {
		t.Error("forward accepted with no session environment on the connection")
	}
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
	for _, n := range []string{"0", "2"} {
		if want := "environment: session and " + n + " live sessions on the connection"; !strings.Contains(l.log.String(), want) {
			t.Errorf("refusal not logged as %q:\n%s", want, l.log.String())
		}
	}
}

// jailDial is a bash script run in the jail that connects to port (a
// number or a shell expression) inside it, retrying while the forward is
// being set up, sends line and prints the answer after "got:".
func jailDial(port any, line string) string {
	return fmt.Sprintf(`i=0; until (: <>/dev/tcp/127.0.0.1/%[1]v) 2>/dev/null; do i=$((i+1)); [ $i -gt 100 ] && exit 3; sleep 0.1; done
exec 3<>/dev/tcp/127.0.0.1/%[1]v; echo %[2]s >&3; read -r answer <&3; echo "got:$answer"`, port, line)
}

// jailListeningPort is a bash script that waits until a TCP socket listens
// in the jail's network namespace (/proc/net/tcp, state 0A) and sets p to
// its port.
const jailListeningPort = `i=0; p=; until [ -n "$p" ]; do
while read -r _ l _ st _; do [ "$st" = 0A ] && p=$((16#${l#*:})); done </proc/net/tcp
i=$((i+1)); [ $i -gt 100 ] && exit 3; [ -n "$p" ] || sleep 0.1; done
`

// answerLines answers each connection's first line with prefix, a colon
// and that line, until l is closed: the client's side of an ssh -R.
func answerLines(l net.Listener, prefix string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			line, err := bufio.NewReader(c).ReadString('\n')
			if err == nil {
				fmt.Fprintf(c, "%s:%s", prefix, line)
			}
		}()
	}
}

// TestRemoteForwardFromTheJail: ssh -R with port 0 listens on the jail's
// own loopback (not the host's): a program in her environment connecting
// to the allocated port reaches the client.
func TestRemoteForwardFromTheJail(t *testing.T) {
	l := startLab(t, "    forwarding: { remote: true }\n")
	c := l.client(t, "alice")
	fl, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("ssh -R: %v", err)
	}
	defer fl.Close()
	go answerLines(fl, "client")
	port := fl.Addr().(*net.TCPAddr).Port
	if hc, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		hc.Close()
		t.Logf("note: something on the host's loopback listens on %d too", port)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(jailDial(port, "from-jail"))
	if err != nil || strings.TrimSpace(string(out)) != "got:client:from-jail" {
		t.Errorf("jail -> ssh -R -> client: %q, %v; want got:client:from-jail", out, err)
	}
	// Bob's environment is another network namespace: the port is not there.
	bob := l.client(t, "bob")
	if out, _ := runOut(t, bob, fmt.Sprintf("(: <>/dev/tcp/127.0.0.1/%d) 2>/dev/null && echo open || echo closed", port)); out != "closed\n" {
		t.Errorf("alice's forwarded port seen from bob's environment: %q", out)
	}
	if !strings.Contains(l.log.String(), "remote forward listening") {
		t.Errorf("no log line for the listener:\n%s", l.log.String())
	}
}

// runOut runs cmd in a new session on c and returns its output.
func runOut(t *testing.T, c interface {
	NewSession() (*gossh.Session, error)
}, cmd string) (string, error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	return string(out), err
}

// enableForwarding turns on forwarding.remote and agent for alice in a
// running `jailgate serve` and reloads it (SIGHUP), as an operator would.
func enableForwarding(t *testing.T, g *e2eGateway) {
	t.Helper()
	path := filepath.Join(g.dir, "jailgate.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(b), "  alice:\n", "  alice:\n    forwarding: { remote: true, agent: true }\n", 1)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	g.cmd.Process.Signal(unix.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(g.log.String(), "msg=reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload within 10s; log:\n%s", g.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestE2ERemoteForwardOpenSSH: OpenSSH's ssh -R against the built binary:
// a program inside alice's jail connects to the forwarded port on her
// loopback and reaches a listener on the client's side.
func TestE2ERemoteForwardOpenSSH(t *testing.T) {
	g := startServe(t)
	enableForwarding(t, g)
	client, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	go answerLines(client, "client")
	jailPort := freePort(t)
	out, errOut, code := g.ssh(t, "alice", "", "-o", "ExitOnForwardFailure=yes",
		"-R", fmt.Sprintf("%d:127.0.0.1:%d", jailPort, client.Addr().(*net.TCPAddr).Port), jailDial(jailPort, "via-openssh"))
	if code != 0 || strings.TrimSpace(out) != "got:client:via-openssh" {
		t.Errorf("ssh -R: stdout %q stderr %q code %d; want got:client:via-openssh", out, errOut, code)
	}
	// Port 0: the reply carries the port allocated, and the forwarded-tcpip
	// channels name it, which OpenSSH checks against its forwards.
	out, errOut, code = g.ssh(t, "alice", "", "-o", "ExitOnForwardFailure=yes",
		"-R", fmt.Sprintf("0:127.0.0.1:%d", client.Addr().(*net.TCPAddr).Port), jailListeningPort+jailDial("$p", "port-0"))
	if code != 0 || strings.TrimSpace(out) != "got:client:port-0" {
		t.Errorf("ssh -R 0:…: stdout %q stderr %q code %d; want got:client:port-0", out, errOut, code)
	}
}
