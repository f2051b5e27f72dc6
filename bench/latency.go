package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strings"
	"time"
)

// scenario is one server and login name measured as a series.
type scenario struct {
	label string
	s     *server
	user  string
	warm  bool // keep the tenant's environment up before timing
}

// scenarios are the latency series: jailgate cold and warm, and OpenSSH.
func (tb *testbed) scenarios() []scenario {
	return []scenario{
		{"cold", tb.jg, tenantCold, false},
		{"warm", tb.jg, tenantWarm, true},
		{"openssh", tb.ossh, tb.o.user, false},
	}
}

// rotate returns scs with round r's server first, so that no scenario
// always runs right after the same other one.
func rotate(scs []scenario, r int) []scenario {
	r %= len(scs)
	return append(append([]scenario{}, scs[r:]...), scs[:r]...)
}

// share returns how many of n samples round r of rounds takes.
func share(n, rounds, r int) int {
	k := n / rounds
	if r < n%rounds {
		k++
	}
	return k
}

// login runs `ssh host true` once and returns how long it took.
func (tb *testbed) login(ctx context.Context, s *server, user string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := tb.ssh(ctx, s, user, pinned, false, "true")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return d, fmt.Errorf("ssh %s@%s true: %v: %s", user, s.name, err, bytes.TrimSpace(errb.Bytes()))
	}
	return d, nil
}

// measureCiphers records what each server negotiates with the client's
// defaults (the defaults throughput rows depend on it).
func measureCiphers(ctx context.Context, tb *testbed, r *report) error {
	re := regexp.MustCompile(`kex: (algorithm|server->client cipher): (\S+)`)
	if err := tb.offerChacha(ctx, false); err != nil {
		return err
	}
	defer tb.offerChacha(ctx, true)
	for _, s := range []*server{tb.jg, tb.ossh} {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		cmd := tb.ssh(c, s, tb.userOf(s, tenantWarm), defaults, false, "true")
		cmd.Args = append(cmd.Args[:1], append([]string{"-v"}, cmd.Args[1:]...)...)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("ssh -v %s: %v", s.name, err)
		}
		var got []string
		for _, m := range re.FindAllStringSubmatch(string(out), -1) {
			got = append(got, m[1]+" "+m[2])
		}
		r.Methods["negotiated_defaults_"+s.name] = strings.Join(got, "; ")
	}
	return nil
}

// measureLatency times `ssh host true` for jailgate cold, jailgate warm and
// OpenSSH, round by round, with the server CPU per login.
func measureLatency(ctx context.Context, tb *testbed, r *report) error {
	scs := tb.scenarios()
	samples := map[string][]time.Duration{}
	cpu := map[string]int64{}
	logins := map[string]int{}
	fails := map[string]int{}
	var joinHist histogram
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", tb.metricsPort)
	for round := 0; round < tb.o.rounds; round++ {
		k := share(tb.o.n, tb.o.rounds, round)
		fmt.Fprintf(os.Stderr, "bench: latency round %d/%d (%d logins each)\n", round+1, tb.o.rounds, k)
		for _, sc := range rotate(scs, round) {
			if sc.warm {
				if _, err := tb.login(ctx, sc.s, sc.user); err != nil { // the environment is up (linger 60s)
					return err
				}
			}
			h0, herr := scrapeHistogram(url, "jailgate_environment_wait_seconds")
			sc.s.poolSettle()
			c0 := sc.s.cpuNanos()
			ok := 0
			for i := 0; i < k && ctx.Err() == nil; i++ {
				d, err := tb.login(ctx, sc.s, sc.user)
				if err != nil {
					fails[sc.label]++
					if fails[sc.label] == 1 {
						r.note("latency %s: %v", sc.label, err)
					}
					continue
				}
				samples[sc.label] = append(samples[sc.label], d)
				ok++
			}
			sc.s.poolSettle() // the pool's refills are the logins' cost
			cpu[sc.label] += sc.s.cpuNanos() - c0
			logins[sc.label] += ok
			if sc.warm && herr == nil {
				if h1, err := scrapeHistogram(url, "jailgate_environment_wait_seconds"); err == nil {
					joinHist = joinHist.add(h1.sub(h0))
				}
			}
		}
	}
	for l, n := range fails {
		r.note("latency %s: %d failed logins", l, n)
	}
	cpuMs := func(l string) float64 {
		if logins[l] == 0 {
			return math.NaN()
		}
		return float64(cpu[l]) / 1e6 / float64(logins[l])
	}
	ref := samples["openssh"]
	cold, warm := percentile(samples["cold"], .5), percentile(samples["warm"], .5)
	r.add("login→exit median, cold env", "ms", cold, percentile(ref, .5), le(0.18))
	r.add("login→exit p95, cold env", "ms", percentile(samples["cold"], .95), percentile(ref, .95), le(0.6))
	r.add("login→exit median, live env", "ms", warm, percentile(ref, .5), le(0.4))
	r.add("login→exit p95, live env", "ms", percentile(samples["warm"], .95), percentile(ref, .95), nil)
	r.add("login→exit median, cold env / live env", "x", cold/warm, math.NaN(), absLE(1.2))
	r.add("server CPU per login, cold env (gateway + environments + pool)", "ms", cpuMs("cold"), cpuMs("openssh"), le(0.45))
	r.add("server CPU per login, live env", "ms", cpuMs("warm"), cpuMs("openssh"), le(0.6))
	starts, err := envStarts(tb.jg.logPath, 0, -1, func(t string) bool { return t == tenantCold })
	if err != nil {
		r.note("environment start: %v", err)
	}
	r.add(fmt.Sprintf("env start on the login's critical path, cold, median (n=%d)", len(starts.d)), "ms",
		percentile(starts.d, .5), math.NaN(), absLE(5))
	r.add("env start on the login's critical path, cold, p95", "ms", percentile(starts.d, .95), math.NaN(), nil)
	starts.note(r, "latency cold")
	r.add(fmt.Sprintf("env wait joining live env, median (histogram, n=%.0f)", joinHist.count()), "ms",
		joinHist.quantile(.5), math.NaN(), nil)
	r.add("env wait joining live env, p95 (histogram)", "ms", joinHist.quantile(.95), math.NaN(), nil)
	return nil
}

// settle waits for the tail of the previous work (a session's teardown,
// an environment's cgroup removal) to be charged before a counter is read.
func settle() { time.Sleep(250 * time.Millisecond) }

// envStartLog is what the gateway log's "environment start" lines said.
type envStartLog struct {
	d      []time.Duration // their duration: the time the login waited for its environment
	pooled int             // lines with pooled=true
	tagged int             // lines with a pooled attribute at all
}

// note records the share of pooled starts, when the gateway logs it.
func (l envStartLog) note(r *report, what string) {
	if l.tagged == 0 {
		r.note("%s: %d environment starts, no pooled attribute in the log (a gateway without a pool)", what, len(l.d))
		return
	}
	r.note("%s: %d of %d environment starts pooled (%.0f%%)", what, l.pooled, l.tagged, 100*float64(l.pooled)/float64(l.tagged))
}

// envStarts reads the "environment start" lines of the tenants match
// accepts from jailgate's JSON log, from byte offset from up to to (-1:
// the end). A pooled attribute (true/false, or its string) is counted
// where present; lines without it are read all the same.
func envStarts(path string, from, to int64, match func(tenant string) bool) (envStartLog, error) {
	var out envStartLog
	f, err := os.Open(path)
	if err != nil {
		return out, err
	}
	defer f.Close()
	var rd io.Reader = f
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return out, err
	}
	if to >= 0 {
		rd = io.LimitReader(f, to-from)
	}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		var l struct {
			Msg      string          `json:"msg"`
			Tenant   string          `json:"tenant"`
			Duration float64         `json:"duration"`
			Pooled   json.RawMessage `json:"pooled"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != "environment start" || !match(l.Tenant) {
			continue
		}
		out.d = append(out.d, time.Duration(l.Duration))
		if p := strings.Trim(string(l.Pooled), `"`); p != "" {
			out.tagged++
			if p == "true" {
				out.pooled++
			}
		}
	}
	if len(out.d) == 0 {
		return out, errors.New("no 'environment start' lines in the gateway log")
	}
	return out, sc.Err()
}

// logSize is the gateway log's size now: an offset for envStarts.
func (tb *testbed) logSize() int64 {
	fi, err := os.Stat(tb.jg.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// promptRe matches the end of bash's prompt: "# " for root, "$ " otherwise.
var promptRe = regexp.MustCompile(`[#$] $`)

// firstPrompt runs `ssh -tt host`, reads until the shell prompt appears,
// then types exit and waits for the end.
func (tb *testbed) firstPrompt(ctx context.Context, s *server, user string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := tb.ssh(ctx, s, user, pinned, true)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer cmd.Wait()
	var seen []byte
	buf := make([]byte, 4096)
	for {
		n, err := stdout.Read(buf)
		seen = append(seen, buf[:n]...)
		if promptRe.Match(seen) {
			break
		}
		if err != nil {
			stdin.Close()
			return 0, fmt.Errorf("ssh -tt %s@%s: no prompt (%v) in %q", user, s.name, err, tail(seen, 200))
		}
	}
	d := time.Since(t0)
	io.WriteString(stdin, "exit\n")
	go io.Copy(io.Discard, stdout)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		stdin.Close()
		cancel()
		return d, fmt.Errorf("ssh -tt %s@%s: still running 10s after exit", user, s.name)
	}
	return d, nil
}

// measurePrompt times the first prompt of `ssh -tt`, jailgate cold and
// warm against OpenSSH, round by round.
func measurePrompt(ctx context.Context, tb *testbed, r *report) error {
	scs := tb.scenarios()
	samples := map[string][]time.Duration{}
	for round := 0; round < tb.o.rounds; round++ {
		k := share(tb.o.prompts, tb.o.rounds, round)
		fmt.Fprintf(os.Stderr, "bench: prompt round %d/%d (%d each)\n", round+1, tb.o.rounds, k)
		for _, sc := range rotate(scs, round) {
			if sc.warm {
				if _, err := tb.login(ctx, sc.s, sc.user); err != nil {
					return err
				}
			}
			for i := 0; i < k && ctx.Err() == nil; i++ {
				d, err := tb.firstPrompt(ctx, sc.s, sc.user)
				if err != nil {
					r.note("prompt %s: %v", sc.label, err)
					continue
				}
				samples[sc.label] = append(samples[sc.label], d)
			}
		}
	}
	ref := samples["openssh"]
	r.add("first prompt median, cold env", "ms", percentile(samples["cold"], .5), percentile(ref, .5), le(0.6))
	r.add("first prompt p95, cold env", "ms", percentile(samples["cold"], .95), percentile(ref, .95), nil)
	r.add("first prompt median, live env", "ms", percentile(samples["warm"], .5), percentile(ref, .5), le(0.6))
	return nil
}
