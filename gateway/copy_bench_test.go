package gateway

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// BenchmarkCopyLoop is the pure hot loop of a session: io.Copy through the
// wrappers attach puts around the channel (activity: idle time and byte
// counts), optionally with the session recorder, from an in-memory source
// handing out chunk bytes per read (4 KiB is about what a PTY master
// returns, 32 KiB is io.Copy's buffer, what a pipe fills) to a sink. No
// SSH and no process: one op is one chunk. The chain is attach's own
// (sessionStreams).
func BenchmarkCopyLoop(b *testing.B) {
	for _, dir := range []string{"out", "in"} {
		for _, record := range []bool{false, true} {
			for _, chunk := range []int{4 << 10, 32 << 10} {
				b.Run(fmt.Sprintf("dir=%s/record=%t/chunk=%d", dir, record, chunk), func(b *testing.B) {
					benchCopy(b, dir == "out", record, chunk)
				})
			}
		}
	}
}

func benchCopy(b *testing.B, out, record bool, chunk int) {
	var rec *recorder
	if record {
		var err error
		path := filepath.Join(b.TempDir(), "s.cast")
		rec, err = newRecorder(path, 80, 24, "xterm", true, 0, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		defer rec.close()
	}
	// Terminal-like text: the recorder JSON-escapes what it stores, so
	// zeros would cost it more than real output does.
	data := bytes.Repeat([]byte("drwxr-xr-x  2 root root 4096 Jan  1 00:00 bin\n"), chunk/46+1)[:chunk]
	src := &chunkReader{data: data, left: b.N}
	act := &activity{}
	act.touch()
	var ch sink
	// attach's own wrapping: out copies the process's output into the
	// channel, in the channel (here src) into the process's input.
	toClient, fromClient := sessionStreams(act, &ch, src, rec)
	w, r := toClient, io.Reader(src)
	if !out {
		w, r = &ch, fromClient
	}
	b.SetBytes(int64(chunk))
	b.ReportAllocs()
	b.ResetTimer()
	n, err := io.Copy(w, r)
	b.StopTimer()
	if err != nil || n != int64(b.N)*int64(chunk) {
		b.Fatalf("copied %d bytes, %v; want %d", n, err, b.N*chunk)
	}
}

// chunkReader hands out data left times, one chunk per Read, as a pipe or
// PTY master with that much ready would.
type chunkReader struct {
	data []byte
	left int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	r.left--
	return copy(p, r.data), nil
}

// sink discards what it is given. Unlike io.Discard it has no ReadFrom, as
// the SSH channel has none, so io.Copy goes through its own buffer.
type sink struct{ n int64 }

func (s *sink) Write(p []byte) (int, error) { s.n += int64(len(p)); return len(p), nil }

// BenchmarkPTYCopy is attach's output loop on a real terminal and a real
// SSH channel: a writer fills a raw PTY's slave (as cat does, 128 KiB per
// write) while io.Copy moves the master's output through sessionStreams
// into a session channel of an x/crypto connection over loopback TCP,
// whose client end discards it. One op is one MiB. read=one is one
// read(2) per Read (the line discipline hands out at most 4 KiB; what
// jail.TTYStreams did before), read=gather is jail.TTYStreams (a Read
// takes all the terminal holds, up to io.Copy's 32 KiB). packets/MiB
// counts the channel's Writes, each one SSH packet: its MAC and, with
// aes128-ctr, three socket writes (x/crypto's 4 KiB bufio), with
// aes128-gcm one. cpu-ms/GiB is this process's CPU: both ends of the PTY
// and of the connection, so the difference between two rows is the
// server side's.
func BenchmarkPTYCopy(b *testing.B) {
	for _, cipher := range []string{"aes128-ctr", "aes128-gcm@openssh.com"} {
		for _, record := range []bool{false, true} {
			for _, read := range []string{"one", "gather"} {
				name := fmt.Sprintf("cipher=%s/record=%t/read=%s", strings.TrimSuffix(cipher, "@openssh.com"), record, read)
				b.Run(name, func(b *testing.B) { benchPTYCopy(b, cipher, record, read == "gather") })
			}
		}
	}
}

func benchPTYCopy(b *testing.B, cipher string, record, gather bool) {
	master, slave := jailtest.RawPTY(b)
	var out io.Reader = oneRead{master}
	if gather {
		_, out = jail.TTYStreams(master)
	}
	var rec *recorder
	if record {
		var err error
		rec, err = newRecorder(filepath.Join(b.TempDir(), "s.cast"), 80, 24, "xterm", false, 0, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		defer rec.close()
	}
	act := &activity{}
	act.touch()
	ch := &countWriter{w: sshChannel(b, cipher)}
	toClient, _ := sessionStreams(act, ch, nil, rec)
	const op = 1 << 20
	total := int64(b.N) * op
	go func() {
		data := bytes.Repeat([]byte("drwxr-xr-x  2 root root 4096 Jan  1 00:00 bin\n"), (128<<10)/46+1)[:128<<10]
		for left := total; left > 0; {
			n, err := slave.Write(data[:min(left, int64(len(data)))])
			if err != nil {
				return
			}
			left -= int64(n)
		}
	}()
	b.SetBytes(op)
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	n, err := io.CopyN(toClient, out, total)
	b.StopTimer()
	if err != nil || n != total {
		b.Fatalf("copied %d bytes, %v; want %d", n, err, total)
	}
	mib := float64(total) / (1 << 20)
	b.ReportMetric(float64(ch.writes)/mib, "packets/MiB")
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/(mib/1024), "cpu-ms/GiB")
}

// sshChannel connects an x/crypto client and server over loopback TCP
// with cipher (and hmac-sha2-256-etm, for a cipher that is no AEAD),
// opens a session channel and returns the server's end; the client's end
// discards what it reads, adjusting the window as a client does.
func sshChannel(b *testing.B, cipher string) gossh.Channel {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(key)
	if err != nil {
		b.Fatal(err)
	}
	algs := gossh.Config{Ciphers: []string{cipher}, MACs: []string{gossh.HMACSHA256ETM}}
	scfg := &gossh.ServerConfig{Config: algs, NoClientAuth: true}
	scfg.AddHostKey(signer)
	chans := make(chan gossh.Channel, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		_, news, reqs, err := gossh.NewServerConn(nc, scfg)
		if err != nil {
			return
		}
		go gossh.DiscardRequests(reqs)
		for nch := range news {
			if ch, reqs, err := nch.Accept(); err == nil {
				go gossh.DiscardRequests(reqs)
				chans <- ch
			}
		}
	}()
	c, err := gossh.Dial("tcp", ln.Addr().String(), &gossh.ClientConfig{Config: algs, User: "bench",
		HostKeyCallback: gossh.InsecureIgnoreHostKey()}) //nolint:gosec // G106: the benchmark's own server
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		b.Fatal(err)
	}
	go gossh.DiscardRequests(reqs)
	go io.Copy(io.Discard, ch)
	return <-chans
}

// oneRead is a PTY master read with one read(2) per Read: what
// jail.TTYStreams did before it gathered.
type oneRead struct{ f *os.File }

func (r oneRead) Read(p []byte) (int, error) { return r.f.Read(p) }

// countWriter counts the Writes it passes on to w.
type countWriter struct {
	w      io.Writer
	writes int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.w.Write(p)
}

// cpuTime is the CPU this process used so far, user and system.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
