package gateway_test

import (
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
)

// silentListener accepts connections on the host's loopback (the fake's
// "inside") and holds them open without reading or closing, like a program
// inside that never hangs up; it returns the port.
func silentListener(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		held []net.Conn
	)
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRevokeEndsForwards is issue 16 item 3: a reload that removes alice's
// key ends everything her key opened, not only her sessions: an ssh -N
// connection's -L channel (to a program inside that never hangs up) and
// its -R listener, and a session on another connection. Her environment is
// then released.
func TestRevokeEndsForwards(t *testing.T) {
	port := silentListener(t)
	h, m, c, signer := fwdLabKey(t, func(u *config.User) { u.Forwarding.Local, u.Forwarding.Remote = true, true })
	fc, err := c.Dial("tcp", net.JoinHostPort("localhost", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("ssh -L: %v", err)
	}
	defer fc.Close()
	l, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("ssh -R: %v", err)
	}
	raddr := l.Addr().String()

	c2, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := c2.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := sess.StdoutPipe()
	if err := sess.Start("echo up; cat"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "up\n", wait)

	_, otherPub := gatewaytest.NewKey(t)
	reloadAlice(t, h, func(_ *config.Config, alice *config.User) { alice.Keys[0].Key = otherPub })

	ended := make(chan error, 1)
	go func() { ended <- sess.Wait() }()
	select {
	case <-ended:
	case <-time.After(wait):
		t.Error("her session outlived the revocation")
	}
	fc.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadAll(fc); err != nil && strings.Contains(err.Error(), "timeout") {
		t.Error("her ssh -L channel outlived the revocation")
	}
	if !m.WaitFor(wait, func() bool { return m.Live() == 0 }) {
		t.Errorf("%d environments still held after the revocation", m.Live())
	}
	if rc, err := net.Dial("tcp", raddr); err == nil {
		rc.Close()
		t.Error("her ssh -R listener still accepts after the revocation")
	}
	if !strings.Contains(h.Logs(), "connection revoked") {
		t.Errorf("no connection revoked line:\n%s", h.Logs())
	}
}
