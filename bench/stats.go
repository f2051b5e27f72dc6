package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// percentile returns the nearest-rank q-quantile (0 < q ≤ 1) of ds in
// milliseconds, or NaN for no samples.
func percentile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return math.NaN()
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	i = max(0, min(i, len(s)-1))
	return float64(s[i]) / float64(time.Millisecond)
}

// readInt reads a file holding one integer; a missing file reads 0 (a
// jailgate tenant cgroup appears at her first environment).
func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// cpuNanos is the server's CPU time so far: cpuacct.usage of each of its
// cgroups. v1 cpuacct charges every ancestor as time is used, so a group
// counts its children and what they ran, and keeps counting what a
// removed child group used.
func (s *server) cpuNanos() int64 {
	var n int64
	for _, d := range s.cpuDirs {
		n += readInt(filepath.Join(d, "cpuacct.usage"))
	}
	return n
}

// cgroupMem is the server's memory cgroups' memory.usage_in_bytes: its
// processes' anonymous memory, page cache they brought in, and kernel
// memory (sockets, page tables, task structs) charged to them.
func (s *server) cgroupMem() int64 {
	var n int64
	for _, d := range s.memDirs {
		n += readInt(filepath.Join(d, "memory.usage_in_bytes"))
	}
	return n
}

// proc is one process in /proc.
type proc struct {
	pid, ppid int
	comm      string
}

// procTable reads every process's pid, parent and comm.
func procTable() map[int]proc {
	t := map[int]proc{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parens.
		i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(string(b[j+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		t[pid] = proc{pid: pid, ppid: ppid, comm: string(b[i+1 : j])}
	}
	return t
}

// children returns the pids whose parent is pid.
func children(t map[int]proc, pid int) []int {
	var out []int
	for _, p := range t {
		if p.ppid == pid {
			out = append(out, p.pid)
		}
	}
	return out
}

// descendants returns every process below pid.
func descendants(t map[int]proc, pid int) []int {
	var out []int
	for _, c := range children(t, pid) {
		out = append(out, c)
		out = append(out, descendants(t, c)...)
	}
	return out
}

// pss returns a process's proportional set size in bytes
// (/proc/PID/smaps_rollup): its private pages plus its share of pages it
// shares, so that summing PSS over processes counts shared libraries and
// the shared gateway binary once.
func pss(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// sumPSS adds the PSS of pids.
func sumPSS(pids []int) int64 {
	var n int64
	for _, p := range pids {
		n += pss(p)
	}
	return n
}

// histogram is a Prometheus histogram's cumulative buckets.
type histogram struct {
	le  []float64 // upper bounds, ascending, +Inf last
	cum []float64 // cumulative counts
}

// scrapeHistogram reads histogram name from a Prometheus text endpoint.
func scrapeHistogram(url, name string) (histogram, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return histogram{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return histogram{}, err
	}
	var h histogram
	prefix := name + `_bucket{le="`
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		le, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		bound, err1 := strconv.ParseFloat(le, 64)
		if le == "+Inf" {
			bound, err1 = math.Inf(1), nil
		}
		n, err2 := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		h.le = append(h.le, bound)
		h.cum = append(h.cum, n)
	}
	if len(h.le) == 0 {
		return h, fmt.Errorf("%s: no %s buckets", url, name)
	}
	return h, nil
}

// sub returns the buckets h gained since before.
func (h histogram) sub(before histogram) histogram {
	d := histogram{le: h.le, cum: slices.Clone(h.cum)}
	if len(before.cum) == len(h.cum) {
		for i := range d.cum {
			d.cum[i] -= before.cum[i]
		}
	}
	return d
}

// add returns the sum of two histograms with the same buckets.
func (h histogram) add(o histogram) histogram {
	if len(h.le) == 0 {
		return o
	}
	d := histogram{le: h.le, cum: slices.Clone(h.cum)}
	for i := range d.cum {
		if i < len(o.cum) {
			d.cum[i] += o.cum[i]
		}
	}
	return d
}

// quantile estimates the q-quantile in milliseconds by linear
// interpolation inside the bucket, as Prometheus' histogram_quantile does.
func (h histogram) quantile(q float64) float64 {
	if len(h.cum) == 0 || h.cum[len(h.cum)-1] == 0 {
		return math.NaN()
	}
	rank := q * h.cum[len(h.cum)-1]
	lo, prev := 0.0, 0.0
	for i, c := range h.cum {
		if c >= rank {
			hi := h.le[i]
			if math.IsInf(hi, 1) {
				return lo * 1000
			}
			if c == prev {
				return hi * 1000
			}
			return (lo + (hi-lo)*(rank-prev)/(c-prev)) * 1000
		}
		lo, prev = h.le[i], c
	}
	return lo * 1000
}

// count is the number of observations.
func (h histogram) count() float64 {
	if len(h.cum) == 0 {
		return 0
	}
	return h.cum[len(h.cum)-1]
}

// blankComm is the comm of a pre-started blank init of the gateway's pool
// (a child of serve not yet any tenant's); an assigned init has another.
const blankComm = "jailgate-blank"

// splitInits returns serve's children: tenants' inits, and the pool's
// blank ones.
func splitInits(t map[int]proc, serve int) (inits, blank []int) {
	for _, c := range children(t, serve) {
		if t[c].comm == blankComm {
			blank = append(blank, c)
		} else {
			inits = append(inits, c)
		}
	}
	return inits, blank
}

// poolSettle waits, after settle, until the gateway's pool stops changing
// (the same number of blank inits three reads in a row, 100 ms apart; at
// most 5 s), so that the refills a block of logins caused are charged to
// that block. Without a pool it returns after the settle.
func (s *server) poolSettle() {
	settle()
	if s.name != "jailgate" {
		return
	}
	last, same := -1, 0
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && same < 3; time.Sleep(100 * time.Millisecond) {
		_, blank := splitInits(procTable(), s.cmd.Process.Pid)
		if len(blank) == last {
			same++
		} else {
			last, same = len(blank), 1
		}
	}
}

// threadsFDs reads a process's thread count (/proc/PID/status Threads)
// and open file descriptors (/proc/PID/fd).
func threadsFDs(pid int) (threads, fds int) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "Threads:"); ok {
			threads, _ = strconv.Atoi(strings.TrimSpace(rest))
		}
	}
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return threads, len(ents)
}

// slabBytes is the kernel's slab memory (/proc/meminfo Slab).
func slabBytes() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "Slab:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// failures counts the clients' errors by message.
type failures struct {
	mu sync.Mutex
	n  map[string]int
}

// add counts one more client that ended with msg.
func (f *failures) add(msg string) {
	f.mu.Lock()
	f.n[msg]++
	f.mu.Unlock()
}

// String lists the three commonest messages with their counts.
func (f *failures) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	msgs := slices.SortedFunc(maps.Keys(f.n), func(a, b string) int { return f.n[b] - f.n[a] })
	var out []string
	for _, m := range msgs[:min(3, len(msgs))] {
		out = append(out, fmt.Sprintf("%d× %q", f.n[m], m))
	}
	return strings.Join(out, "; ")
}

// admissionMsg matches the gateway's INFO lines about a connection held
// back or closed before its login (admission's queue and evictions).
var admissionMsg = regexp.MustCompile(`(?i)evict|refus|reject|waiting|grace|timeout|fail`)

// logComplaints lists the commonest warnings, errors and admission lines
// of the gateway's JSON log from byte offset from on, by message and
// reason.
func logComplaints(path string, from int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return err.Error()
	}
	fails := &failures{n: map[string]int{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		var l struct {
			Level, Msg, Reason, Err string
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Level == "DEBUG" || l.Level == "INFO" && !admissionMsg.MatchString(l.Msg) {
			continue
		}
		m := l.Level + " " + l.Msg
		if why := l.Reason + l.Err; why != "" {
			m += ": " + string(tail([]byte(why), 120))
		}
		fails.add(m)
	}
	if len(fails.n) == 0 {
		return "nothing"
	}
	return fails.String()
}
