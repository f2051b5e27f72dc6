package gateway_test

import (
	"fmt"
	"io"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// benchChunk is what one op of a throughput benchmark moves.
const benchChunk = 1 << 20

// benchCiphers are the ciphers the throughput benchmarks pin, by short
// name: what OpenSSH clients get by default (AES-GCM, see server.ciphers)
// and what they get when chacha20 is allowed (x/crypto has no assembly
// for it, issue 8).
var benchCiphers = []struct{ name, id string }{
	{"aes128-gcm", "aes128-gcm@openssh.com"},
	{"chacha20", "chacha20-poly1305@openssh.com"},
}

// BenchmarkSessionThroughput moves session bytes through the real path:
// x/crypto client, gliderlabs/x/crypto server, the session handler's copy
// loop (activity counters, idle tracking) and a host process of the
// jailtest fake, over a pipe or a PTY. out is server→client
// (head -c from /dev/zero), in is client→server (into head -c >/dev/null).
//
// Client and server share this process and its CPUs, so the figure is
// bounded by both ends' crypto (each byte is sealed once and opened once
// here); the PTY adds the kernel's line discipline. It is not the OpenSSH
// comparison (bench/ does that), but it is stable enough to compare
// changes to the gateway's side of the path with benchstat.
func BenchmarkSessionThroughput(b *testing.B) {
	for _, dir := range []string{"out", "in"} {
		for _, mode := range []string{"pipe", "pty"} {
			for _, c := range benchCiphers {
				b.Run(fmt.Sprintf("dir=%s/stdio=%s/cipher=%s", dir, mode, c.name), func(b *testing.B) {
					benchThroughput(b, dir == "out", mode == "pty", c.id)
				})
			}
		}
	}
}

func benchThroughput(b *testing.B, out, pty bool, cipher string) {
	c := benchClient(b, cipher)
	s, err := c.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if pty {
		if err := s.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
			b.Fatal(err)
		}
	}
	stdin, err := s.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := s.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	total := int64(b.N) * benchChunk
	// Raw and without echo, so a PTY passes the bytes as they are and
	// sends none back; ready says the terminal is set.
	cmd := fmt.Sprintf("stty raw -echo 2>/dev/null; echo ready; exec head -c %d", total)
	if out {
		cmd += " /dev/zero"
	} else {
		cmd += " >/dev/null"
	}
	if err := s.Start(cmd); err != nil {
		b.Fatal(err)
	}
	gatewaytest.Expect(b, stdout, "ready\n", 10*time.Second)
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	b.ResetTimer()
	if out {
		for range b.N {
			if _, err := io.CopyN(io.Discard, stdout, benchChunk); err != nil {
				b.Fatal(err)
			}
		}
		// The PTY's output is drained for a while after the process
		// exits; that tail is not throughput, so the clock stops first.
		b.StopTimer()
	} else {
		go io.Copy(io.Discard, stdout)
		buf := make([]byte, benchChunk)
		for range b.N {
			if _, err := stdin.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	// head exits once it has read everything: the bytes arrived.
	err = s.Wait()
	b.StopTimer()
	if err != nil {
		b.Fatalf("session: %v", err)
	}
}

// BenchmarkSessionExec opens a session, runs true and waits for its exit
// status: the per-session cost of the handler (layers, environment
// lookup, spawn, exit) on an open connection. The fake jail forks a host
// /bin/sh, which dominates; compare it with itself.
func BenchmarkSessionExec(b *testing.B) {
	c := benchClient(b, "")
	b.ReportAllocs()
	for b.Loop() {
		s, err := c.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Run("true"); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// benchClient starts a gateway with one tenant on the host fake and logs
// in to it, pinning cipher unless it is empty.
func benchClient(b *testing.B, cipher string) *gossh.Client {
	b.Helper()
	signer, pub := gatewaytest.NewKey(b)
	cfg := gatewaytest.Config(gatewaytest.User("alice", pub))
	h := gatewaytest.Start(b, cfg, &jailtest.HostManager{})
	cc := &gossh.ClientConfig{
		User:            "alice",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), //nolint:gosec // G106: a benchmark server with a throwaway host key
		Timeout:         10 * time.Second,
	}
	if cipher != "" {
		cc.Ciphers = []string{cipher}
	}
	c, err := gossh.Dial("tcp", h.Addr, cc)
	if err != nil {
		b.Fatalf("login: %v", err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}
