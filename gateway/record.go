package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// recorder writes a terminal session as an asciicast v2 file (the
// asciinema format: a JSON header line, then [seconds, "o"|"i"|"r", data]
// lines). It is the gateway's, under state_dir on the host, out of the
// tenant's reach. Writes are buffered; a write error (a full disk) stops
// the recording with one log line and never the session.
type recorder struct {
	mu     sync.Mutex
	f      *os.File
	w      *bufio.Writer
	start  time.Time
	input  bool // record what she types too (record_input)
	failed bool // a write failed, or close ran: record nothing more
	log    *slog.Logger
	path   string
}

// castHeader is the first line of an asciicast v2 file.
type castHeader struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp"`
	Env       map[string]string `json:"env,omitempty"`
	Title     string            `json:"title,omitempty"`
}

// RecordingPath is where a session's recording goes:
// state_dir/recordings/<tenant>/<UTC time>-<session>.cast.
func RecordingPath(stateDir, tenant, session string, t time.Time) string {
	return filepath.Join(stateDir, "recordings", tenant, t.UTC().Format("20060102T150405Z")+"-"+session+".cast")
}

// newRecorder creates the recording file (0600, its directories 0700).
func newRecorder(path string, cols, rows uint16, term string, input bool, log *slog.Logger) (*recorder, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	r := &recorder{f: f, w: bufio.NewWriterSize(f, 64<<10), start: time.Now(), input: input, log: log, path: path}
	h, _ := json.Marshal(castHeader{Version: 2, Width: int(cols), Height: int(rows), Timestamp: r.start.Unix(),
		Env: map[string]string{"TERM": term}})
	r.line(h)
	return r, nil
}

// line writes one line unless the recording failed.
func (r *recorder) line(b []byte) {
	if r.failed {
		return
	}
	if _, err := r.w.Write(append(b, '\n')); err != nil {
		r.failed = true
		r.log.Error("recording stopped; the session goes on", "path", r.path, "err", err)
	}
}

// event records one event at the current time.
func (r *recorder) event(kind, data string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, _ := json.Marshal([]any{float64(time.Since(r.start).Microseconds()) / 1e6, kind, data})
	r.line(b)
}

// output is an io.Writer of the terminal's output; it never fails.
type recOutput struct{ r *recorder }

func (o recOutput) Write(b []byte) (int, error) { o.r.event("o", string(b)); return len(b), nil }

// recInput is an io.Writer of what the tenant types; it never fails.
type recInput struct{ r *recorder }

func (i recInput) Write(b []byte) (int, error) { i.r.event("i", string(b)); return len(b), nil }

// resize records a window change.
func (r *recorder) resize(cols, rows uint16) { r.event("r", fmt.Sprintf("%dx%d", cols, rows)) }

// close flushes and fsyncs the recording.
func (r *recorder) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.w.Flush(); err != nil && !r.failed {
		r.log.Error("recording stopped; the session goes on", "path", r.path, "err", err)
	}
	r.f.Sync()
	r.f.Close()
	r.failed = true // output still draining after the end is not recorded
}
