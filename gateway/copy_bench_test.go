package gateway

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
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
