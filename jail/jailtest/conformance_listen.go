package jailtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/jailgate/jailgate/jail"
)

// listenCases are the conformance cases of Env.Listen.
var listenCases = []struct {
	name string
	run  func(t *testing.T, ctx context.Context, env jail.Env)
}{
	{"listen tcp where Dial reaches", func(t *testing.T, ctx context.Context, env jail.Env) {
		l, err := env.Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		defer l.Close()
		port := l.Addr().(*net.TCPAddr).Port
		if port == 0 {
			t.Fatalf("listener address %v: no port allocated", l.Addr())
		}
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := l.Accept()
			if err != nil {
				t.Errorf("accept: %v", err)
			}
			accepted <- c
		}()
		c, err := env.Dial(ctx, "tcp", l.Addr().String())
		if err != nil {
			t.Fatalf("dial the listener from the same environment: %v", err)
		}
		defer c.Close()
		io.WriteString(c, "ping")
		a := <-accepted
		if a == nil {
			return
		}
		defer a.Close()
		buf := make([]byte, 4)
		if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "ping" {
			t.Errorf("read %q, %v; want ping", buf, err)
		}
		l.Close()
		if _, err := l.Accept(); err == nil {
			t.Error("accept after close succeeded")
		}
	}},
	{"listen unix in a private directory", func(t *testing.T, ctx context.Context, env jail.Env) {
		var rnd [8]byte
		rand.Read(rnd[:])
		dir := "/tmp/jailgate-conformance-" + hex.EncodeToString(rnd[:])
		path := dir + "/s.sock"
		l, err := env.Listen(ctx, "unix", path)
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		defer l.Close()
		r := runProc(t, ctx, env, shSpec(`test -S `+path+` && echo socket; ls -ld `+dir, nil), nil)
		if !strings.HasPrefix(r.stdout, "socket\ndrwx------ ") {
			t.Errorf("inside: %q, want the socket in a drwx------ directory", r.stdout)
		}
		if _, err := env.Listen(ctx, "unix", path); err == nil {
			t.Error("a second listen in the same (existing) directory succeeded")
		}
		l.Close()
		if r := runProc(t, ctx, env, shSpec(`test -e `+dir+` || echo gone`, nil), nil); r.stdout != "gone\n" {
			t.Errorf("after Close: %q, want the directory gone", r.stdout)
		}
	}},
}
