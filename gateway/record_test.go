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

	var files []string
	for i := 0; i < 100 && len(files) == 0; i++ { // the file is closed as the session ends
		files, _ = filepath.Glob(filepath.Join(state, "recordings", "alice", "*.cast"))
		time.Sleep(20 * time.Millisecond)
	}
	if len(files) != 1 {
		t.Fatalf("recordings: %v", files)
	}
	fi, _ := os.Stat(files[0])
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("recording mode %v, want 0600", fi.Mode().Perm())
	}
	f, _ := os.Open(files[0])
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
