package gateway_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	gossh "golang.org/x/crypto/ssh"
)

// TestRecording: a recorded PTY session yields an asciicast v2 file with
// its header, its output, its input (record_input) and a resize event.
func TestRecording(t *testing.T) {
	state := t.TempDir()
	h, signer := limitLab(t, func(c *config.Config, u *config.User) {
		c.StateDir = state
		u.Record, u.RecordInput = true, true
	})
	c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := c.NewSession()
	defer s.Close()
	if err := s.RequestPty("xterm-256color", 24, 80, gossh.TerminalModes{gossh.ECHO: 0}); err != nil {
		t.Fatal(err)
	}
	in, _ := s.StdinPipe()
	out, _ := s.StdoutPipe()
	if err := s.Start("echo hello-rec; read x; echo got-$x"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "hello-rec", 5*time.Second)
	if err := s.WindowChange(30, 100); err != nil {
		t.Fatal(err)
	}
	in.Write([]byte("typed\n"))
	gatewaytest.Expect(t, out, "got-typed", 5*time.Second)
	s.Wait()

	file := aliceRecording(t, state)
	fi, _ := os.Stat(file)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("recording mode %v, want 0600", fi.Mode().Perm())
	}
	f, _ := os.Open(file)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	var hdr map[string]any
	if err := json.Unmarshal(sc.Bytes(), &hdr); err != nil || hdr["version"] != 2.0 || hdr["width"] != 80.0 || hdr["height"] != 24.0 {
		t.Fatalf("header %s (%v)", sc.Text(), err)
	}
	kinds := map[string]string{}
	last := -1.0
	for sc.Scan() {
		var ev []any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 {
			t.Fatalf("event %q: %v", sc.Text(), err)
		}
		if ts := ev[0].(float64); ts < last {
			t.Errorf("events out of order at %q", sc.Text())
		} else {
			last = ts
		}
		kinds[ev[1].(string)] += ev[2].(string)
	}
	if !strings.Contains(kinds["o"], "hello-rec") || !strings.Contains(kinds["o"], "got-typed") {
		t.Errorf("output events: %q", kinds["o"])
	}
	if !strings.Contains(kinds["i"], "typed") {
		t.Errorf("input events: %q", kinds["i"])
	}
	if kinds["r"] != "100x30" {
		t.Errorf("resize events: %q, want 100x30", kinds["r"])
	}
}

// TestRecordingCap: recordings had no size cap, so 20 MB of output made a
// 75 MB cast (issue 16, item 6). Now a recording past record_max_bytes
// stops with a marker event as its last line, while the session itself
// gets all of its output.
func TestRecordingCap(t *testing.T) {
	const max = 64 << 10
	state := t.TempDir()
	h, signer := limitLab(t, func(c *config.Config, u *config.User) {
		c.StateDir = state
		u.Record, u.RecordMaxBytes = true, max
	})
	c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := c.NewSession()
	defer s.Close()
	if err := s.RequestPty("xterm", 24, 80, nil); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	s.Stdout = &out
	const lines = 20000 // about 1 MB, 16 times the cap
	if err := s.Run("seq 1 20000; echo the-end"); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n < lines || !strings.Contains(out.String(), "the-end") {
		t.Errorf("the session got %d lines of its output, want all %d and the-end", n, lines+1)
	}
	file := aliceRecording(t, state)
	var b []byte
	for i := 0; i < 100 && !strings.Contains(string(b), `"m"`); i++ { // flushed as the session ends
		time.Sleep(20 * time.Millisecond)
		b, _ = os.ReadFile(file)
	}
	body := strings.TrimSuffix(string(b), "\n")
	last := body[strings.LastIndexByte(body, '\n')+1:]
	if len(body)-len(last) > max {
		t.Errorf("recording is %d bytes before its marker, want at most record_max_bytes = %d", len(body)-len(last), max)
	}
	var ev []any
	if err := json.Unmarshal([]byte(last), &ev); err != nil || len(ev) != 3 || ev[1] != "m" ||
		!strings.Contains(ev[2].(string), "recording stopped: record_max_bytes") {
		t.Errorf("last line of the recording: %q (%v), want the marker event", last, err)
	}
}

// aliceRecording waits for alice's one recording to appear in state and
// returns its path.
func aliceRecording(t *testing.T, state string) string {
	t.Helper()
	var files []string
	for i := 0; i < 100 && len(files) == 0; i++ { // the file is closed as the session ends
		files, _ = filepath.Glob(filepath.Join(state, "recordings", "alice", "*.cast"))
		time.Sleep(20 * time.Millisecond)
	}
	if len(files) != 1 {
		t.Fatalf("recordings: %v", files)
	}
	return files[0]
}
