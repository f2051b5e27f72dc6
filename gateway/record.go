package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jailgate/jailgate/statedir"
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
	input  bool  // record what she types too (record_input)
	max    int64 // record_max_bytes: stop, with a marker event, past it (0: no cap)
	size   int64 // bytes written so far
	failed bool  // a write failed, the cap was reached, or close ran: record nothing more
	log    *slog.Logger
	path   string
	buf    []byte // event's line, reused
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
	dir := statedir.New(stateDir).TenantRecordings(tenant)
	return filepath.Join(dir, t.UTC().Format("20060102T150405Z")+"-"+session+".cast")
}

// newRecorder creates the recording file (0600, its directories 0700).
// Past max bytes (record_max_bytes; 0: no cap) it stops with a marker.
func newRecorder(path string, cols, rows uint16, term string, input bool, max int64, log *slog.Logger) (*recorder, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	r := &recorder{f: f, w: bufio.NewWriterSize(f, 64<<10), start: time.Now(), input: input, max: max, log: log, path: path}
	h, _ := json.Marshal(castHeader{Version: 2, Width: int(cols), Height: int(rows), Timestamp: r.start.Unix(),
		Env: map[string]string{"TERM": term}})
	r.line(h)
	return r, nil
}

// line writes one line unless the recording failed. A line that would
// take the file past max is not written: a marker event says the
// recording stops there (asciicast v2 "m"), and nothing more is recorded;
// the file ends at most one marker line past max.
func (r *recorder) line(b []byte) {
	if r.failed {
		return
	}
	if r.max > 0 && r.size+int64(len(b))+1 > r.max {
		r.failed = true
		r.log.Warn("recording stopped at record_max_bytes; the session goes on", "path", r.path, "max_bytes", r.max)
		b = fmt.Appendf(b[:0], `[%s,"m","jailgate: recording stopped: record_max_bytes (%d) reached"]`,
			strconv.FormatFloat(float64(time.Since(r.start).Microseconds())/1e6, 'f', -1, 64), r.max)
	}
	n, err := r.w.Write(append(b, '\n'))
	r.size += int64(n)
	if err != nil {
		r.failed = true
		r.log.Error("recording stopped; the session goes on", "path", r.path, "err", err)
	}
}

// event records one event at the current time. It encodes the line into
// a buffer the recorder keeps: json.Marshal of []any cost 7 allocations
// and ~16 us per 4 KiB of terminal output (BenchmarkCopyLoop).
func (r *recorder) event(kind string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := append(r.buf[:0], '[')
	b = strconv.AppendFloat(b, float64(time.Since(r.start).Microseconds())/1e6, 'f', -1, 64)
	b = append(b, ',', '"')
	b = append(b, kind...)
	b = append(b, '"', ',')
	b = appendJSONString(b, data)
	b = append(b, ']')
	r.line(b)
	r.buf = b[:0]
}

// appendJSONString appends data as a JSON string: bytes that are not
// UTF-8 become U+FFFD, as encoding/json does with a Go string.
func appendJSONString(b, data []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(data); {
		c := data[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		rn, size := utf8.DecodeRune(data[i:])
		switch {
		case rn == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case rn == '\u2028' || rn == '\u2029': // valid JSON, but not in JavaScript strings
			b = append(b, '\\', 'u', '2', '0', '2', hex[rn&0xf])
		default:
			b = append(b, data[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// output is an io.Writer of the terminal's output; it never fails.
type recOutput struct{ r *recorder }

func (o recOutput) Write(b []byte) (int, error) { o.r.event("o", b); return len(b), nil }

// recInput is an io.Writer of what the tenant types; it never fails.
type recInput struct{ r *recorder }

func (i recInput) Write(b []byte) (int, error) { i.r.event("i", b); return len(b), nil }

// resize records a window change.
func (r *recorder) resize(cols, rows uint16) { r.event("r", fmt.Appendf(nil, "%dx%d", cols, rows)) }

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
