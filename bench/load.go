package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// direction is one throughput path.
type direction struct {
	name, label string
}

// The three throughput paths of issue 8.
var directions = []direction{
	{"down", "server→client"},
	{"up", "client→server"},
	{"pty", "PTY server→client"},
}

// countWriter counts what is written to it.
type countWriter struct{ n int64 }

// Write implements io.Writer.
func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// transfer moves the throughput file once in direction dir and returns
// the bytes moved, the wall time and the server CPU used.
func (tb *testbed) transfer(ctx context.Context, s *server, mode cipherMode, dir string) (int64, time.Duration, int64, error) {
	size := int64(tb.o.sizeMiB) << 20
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second+time.Duration(tb.o.sizeMiB)*time.Second/4)
	defer cancel()
	user := tb.userOf(s, tenantWarm)
	var cmd *exec.Cmd
	cw := &countWriter{}
	switch dir {
	case "down":
		cmd = tb.ssh(ctx, s, user, mode, false, "cat "+blobPath)
		cmd.Stdout = cw
	case "up":
		cmd = tb.ssh(ctx, s, user, mode, false, "cat >/dev/null")
		f, err := os.Open(tb.blob)
		if err != nil {
			return 0, 0, 0, err
		}
		defer f.Close()
		cmd.Stdin = f
		cw.n = size
	case "pty":
		// Raw mode, so that the terminal passes the bytes unchanged; stdin
		// stays open (a pipe nobody writes) until the end.
		cmd = tb.ssh(ctx, s, user, mode, true, "stty raw -echo; cat "+blobPath)
		cmd.Stdout = cw
		// An *os.File, not an io.Pipe: exec would copy from the latter in
		// a goroutine that Wait waits for, and nobody closes it before.
		pr, pw, err := os.Pipe()
		if err != nil {
			return 0, 0, 0, err
		}
		defer pw.Close()
		defer pr.Close()
		cmd.Stdin = pr
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	settle()
	c0 := s.cpuNanos()
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	settle()
	cpu := s.cpuNanos() - c0
	if err != nil {
		return cw.n, d, cpu, fmt.Errorf("%s %s %s: %v: %s", s.name, dir, mode, err, strings.TrimSpace(errb.String()))
	}
	if cw.n < size {
		return cw.n, d, cpu, fmt.Errorf("%s %s %s: %d of %d bytes", s.name, dir, mode, cw.n, size)
	}
	return cw.n, d, cpu, nil
}

// median returns the median of vs, NaN for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// measureThroughput moves the file in the three directions, with the
// client's defaults against jailgate's default ciphers and with chacha20
// pinned, alternating the servers.
func measureThroughput(ctx context.Context, tb *testbed, r *report) error {
	type key struct {
		srv  string
		mode cipherMode
		dir  string
	}
	rate := map[key][]float64{}   // MiB/s per run
	cpuGiB := map[key][]float64{} // server CPU ms per GiB per run
	for _, mode := range []cipherMode{defaults, pinned} {
		if err := tb.offerChacha(ctx, mode == pinned); err != nil {
			return err
		}
		for _, dir := range directions {
			for round := 0; round < tb.o.tputRounds; round++ {
				fmt.Fprintf(os.Stderr, "bench: throughput %s %s round %d/%d\n", dir.name, mode, round+1, tb.o.tputRounds)
				servers := []*server{tb.jg, tb.ossh}
				if round%2 == 1 {
					servers = []*server{tb.ossh, tb.jg}
				}
				for _, s := range servers {
					if ctx.Err() != nil {
						return context.Cause(ctx)
					}
					n, d, cpu, err := tb.transfer(ctx, s, mode, dir.name)
					if err != nil {
						r.note("throughput: %v", err)
						continue
					}
					k := key{s.name, mode, dir.name}
					mib := float64(n) / (1 << 20)
					rate[k] = append(rate[k], mib/d.Seconds())
					cpuGiB[k] = append(cpuGiB[k], float64(cpu)/1e6/(mib/1024))
				}
			}
		}
	}
	for _, mode := range []cipherMode{defaults, pinned} {
		for _, dir := range directions {
			var t *target
			switch {
			case mode == defaults:
				t = ge(1.0)
			default:
				t = ge(0.8)
			}
			jg, ref := key{"jailgate", mode, dir.name}, key{"openssh", mode, dir.name}
			r.add(fmt.Sprintf("throughput %s, %s", dir.label, mode), "MiB/s", median(rate[jg]), median(rate[ref]), t)
		}
	}
	for _, mode := range []cipherMode{defaults, pinned} {
		for _, dir := range directions {
			var t *target
			switch {
			case mode == defaults && dir.name == "pty":
				t = le(0.9) // issue 20
			case mode == defaults:
				t = le(1.0)
			}
			jg, ref := key{"jailgate", mode, dir.name}, key{"openssh", mode, dir.name}
			r.add(fmt.Sprintf("server CPU per GiB %s, %s", dir.label, mode), "ms", median(cpuGiB[jg]), median(cpuGiB[ref]), t)
		}
	}
	return nil
}

// memSnap is a server's memory at one moment.
type memSnap struct {
	main    int64 // PSS of the listener (jailgate serve, sshd -D)
	helpers int64 // PSS of its per-session helpers: jailgate's inits, sshd's session processes
	nHelp   int   // their number
	blank   int64 // PSS of jailgate's pool of blank inits (not in helpers)
	nBlank  int   // their number
	cgroup  int64 // memory.usage_in_bytes of its memory cgroups
}

// snapshot reads s's memory: for jailgate the inits are the serve
// process's children but the pool's blank ones (counted apart); for sshd
// its helpers are every sshd below the listener (the [priv] monitor and
// the user's sshd). Tenant processes (sleep) are counted by neither.
func snapshot(s *server) memSnap {
	t := procTable()
	pid := s.cmd.Process.Pid
	m := memSnap{main: pss(pid), cgroup: s.cgroupMem()}
	var helpers []int
	if s.name == "jailgate" {
		var blank []int
		helpers, blank = splitInits(t, pid)
		m.blank, m.nBlank = sumPSS(blank), len(blank)
	} else {
		for _, p := range descendants(t, pid) {
			if t[p].comm == "sshd" {
				helpers = append(helpers, p)
			}
		}
	}
	m.helpers, m.nHelp = sumPSS(helpers), len(helpers)
	return m
}

// holdSpec says who logs in for a hold and what it measures besides.
type holdSpec struct {
	user  func(i int) string // the login name of client i
	extra string             // log in once more as this user while the sessions are held ("": no)
	// during runs once every session is ready (or the wait gave up),
	// before the memory snapshot; sample every 100ms from the launch
	// until then.
	during, sample func()
}

// sameUser is a holdSpec.user for K sessions of one user.
func sameUser(u string) func(int) string { return func(int) string { return u } }

// holdResult is what holding K sessions showed.
type holdResult struct {
	ready      int           // sessions that printed "ready"
	last       time.Duration // launch to the last ready
	before     memSnap
	after      memSnap
	slab       int64         // kernel slab growth, before to after
	cpu        int64         // server CPU from the launch to back at baseline (ns)
	loginWhile time.Duration // one more ssh true while they were held
	cleanup    time.Duration // from killing the clients to the server back at its baseline
	fails      string        // why the sessions that never got ready ended (the commonest)
	complaints string        // the gateway's commonest warnings and errors meanwhile
}

// hold opens K sessions at once running `echo ready; exec sleep 600`,
// waits for them (bounded), measures memory (and one more login if the
// spec says), then kills the clients and waits for the server to let go
// of them (bounded). The CPU counted is all of it, launch to baseline.
func (tb *testbed) hold(ctx context.Context, s *server, k int, spec holdSpec) (res holdResult, err error) {
	logFrom := tb.logSize()
	if s == tb.jg {
		defer func() { res.complaints = "; the gateway said: " + logComplaints(s.logPath, logFrom) }()
	}
	s.poolSettle()
	res.before = snapshot(s)
	slab0 := slabBytes()
	c0 := s.cpuNanos()
	cctx, kill := context.WithCancel(ctx)
	defer kill()
	bound := 30*time.Second + time.Duration(k)*100*time.Millisecond
	stopSampling := func() {}
	if spec.sample != nil {
		stopSampling = sampleEvery(100*time.Millisecond, spec.sample)
	}
	defer stopSampling()
	cl, err := tb.launch(cctx, s, k, spec.user, bound)
	if err != nil {
		return res, err
	}
	res.ready, res.last = waitReady(ctx, cl.readyAt, k, bound)
	time.Sleep(time.Second) // let the server finish what it does after "ready"
	stopSampling()
	if spec.during != nil {
		spec.during()
	}
	res.after = snapshot(s)
	res.slab = slabBytes() - slab0
	if spec.extra != "" {
		if d, err := tb.login(ctx, s, spec.extra); err == nil {
			res.loginWhile = d
		}
	}
	t1 := time.Now()
	kill()
	waited := make(chan struct{})
	go func() { cl.wg.Wait(); close(waited) }()
	select {
	case <-waited:
		res.fails = cl.fails.String()
	case <-time.After(30 * time.Second):
		return res, fmt.Errorf("%d clients still running 30s after SIGKILL", k)
	}
	// Back at baseline: no more helpers than before.
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if snapshot(s).nHelp <= res.before.nHelp {
			res.cleanup = time.Since(t1)
			s.poolSettle()
			res.cpu = s.cpuNanos() - c0
			return res, nil
		}
	}
	return res, fmt.Errorf("%s still has extra session processes 60s after the clients ended", s.name)
}

// clients are the ssh clients of one hold.
type clients struct {
	readyAt chan time.Duration // launch to "ready", per client that printed it
	wg      sync.WaitGroup     // their reader goroutines, done when they ended
	fails   *failures          // why those that never printed "ready" ended
}

// launch starts k clients on s at once (client i as user(i)), each
// running `echo ready; exec sleep 600` until ctx ends.
func (tb *testbed) launch(ctx context.Context, s *server, k int, user func(int) string, bound time.Duration) (*clients, error) {
	cl := &clients{readyAt: make(chan time.Duration, k), fails: &failures{n: map[string]int{}}}
	t0 := time.Now()
	for i := 0; i < k; i++ {
		cmd := tb.ssh(ctx, s, user(i), pinned, false, "echo ready; exec sleep 600")
		// Say why a session ends early (a server closing the connection is
		// only told at INFO), and wait for the banner as long as the hold
		// waits, as a client without ConnectTimeout does, for a server
		// that queues connections (the first -o wins).
		cmd.Args = slices.Insert(cmd.Args, 1, "-o", "LogLevel=INFO", "-o", fmt.Sprintf("ConnectTimeout=%d", int(bound.Seconds())))
		if n := tb.o.sources; n > 1 {
			cmd.Args = slices.Insert(cmd.Args, 1, "-b", fmt.Sprintf("127.0.0.%d", 2+i%n))
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return cl, err
		}
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			return cl, fmt.Errorf("start client %d: %w", i, err)
		}
		cl.wg.Add(1)
		go func() {
			defer cl.wg.Done()
			br := bufio.NewReader(out)
			line, _ := br.ReadString('\n')
			ok := strings.TrimSpace(line) == "ready"
			if ok {
				cl.readyAt <- time.Since(t0)
			}
			io.Copy(io.Discard, br)
			if err := cmd.Wait(); !ok {
				cl.fails.add(fmt.Sprintf("%v: %s", err, tail(bytes.TrimSpace(errb.Bytes()), 200)))
			}
		}()
	}
	return cl, nil
}

// measureConcurrency holds K sessions for each K: jailgate with one live
// tenant environment shared by all (tenant mode), jailgate with one
// environment per session (what K one-session tenants cost), and OpenSSH.
func measureConcurrency(ctx context.Context, tb *testbed, r *report) error {
	kib := func(b int64, k int) float64 {
		if k <= 0 {
			return math.NaN()
		}
		return float64(b) / 1024 / float64(k)
	}
	tb.poolRow(r)
	for _, k := range tb.o.ks {
		res := map[string]holdResult{}
		for _, sc := range []scenario{
			{"live", tb.jg, tenantWarm, true},
			{"session", tb.jg, tenantSess, false},
			{"openssh", tb.ossh, tb.o.user, false},
		} {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			fmt.Fprintf(os.Stderr, "bench: concurrency K=%d %s\n", k, sc.label)
			if sc.warm {
				if _, err := tb.login(ctx, sc.s, sc.user); err != nil {
					return err
				}
			}
			h, err := tb.hold(ctx, sc.s, k, holdSpec{user: sameUser(sc.user), extra: sc.user})
			if err != nil {
				r.note("concurrency K=%d %s: %v", k, sc.label, err)
			}
			if h.ready < k {
				r.note("concurrency K=%d %s: %d of %d sessions established; the others: %s%s",
					k, sc.label, h.ready, k, h.fails, h.complaints)
			}
			r.note("concurrency K=%d %s: server back to baseline %.1fs after the clients were killed", k, sc.label, h.cleanup.Seconds())
			res[sc.label] = h
		}
		live, sess, ossh := res["live"], res["session"], res["openssh"]
		var allReady *target
		var readyTime *target
		if k == 200 {
			allReady, readyTime = absGE(float64(k)), le(0.9)
		}
		r.add(fmt.Sprintf("K=%d established, live tenant env", k), "sessions", float64(live.ready), float64(ossh.ready), allReady)
		r.add(fmt.Sprintf("K=%d established, env per session", k), "sessions", float64(sess.ready), float64(ossh.ready), allReady)
		r.add(fmt.Sprintf("K=%d until last ready, live tenant env", k), "s", live.last.Seconds(), ossh.last.Seconds(), readyTime)
		r.add(fmt.Sprintf("K=%d until last ready, env per session", k), "s", sess.last.Seconds(), ossh.last.Seconds(), readyTime)
		r.add(fmt.Sprintf("K=%d one more login while held, env per session", k), "ms",
			float64(sess.loginWhile)/1e6, float64(ossh.loginWhile)/1e6, nil)
		// Memory, per established session.
		osPer := kib(ossh.after.helpers-ossh.before.helpers, ossh.ready)
		gwShare := kib(sess.after.main-sess.before.main, sess.ready)
		newInits := sess.after.nHelp - sess.before.nHelp
		perEnv := kib(sess.after.helpers-sess.before.helpers, newInits)
		r.add(fmt.Sprintf("K=%d mem: gateway-only per session (env per session)", k), "KiB", gwShare, math.NaN(), nil)
		r.add(fmt.Sprintf("K=%d mem: per environment (init PSS, n=%d)", k, newInits), "KiB", perEnv, math.NaN(), nil)
		r.add(fmt.Sprintf("K=%d mem: one-session tenant (gateway share + init) vs sshd per session", k), "KiB",
			gwShare+perEnv, osPer, le(0.6))
		further := kib(live.after.main-live.before.main+live.after.helpers-live.before.helpers, live.ready)
		r.add(fmt.Sprintf("K=%d mem: further session of a live tenant vs sshd per session", k), "KiB", further, osPer, le(0.15))
		r.add(fmt.Sprintf("K=%d mem cgroup per session, env per session", k), "KiB",
			kib(sess.after.cgroup-sess.before.cgroup, sess.ready), kib(ossh.after.cgroup-ossh.before.cgroup, ossh.ready), nil)
		r.add(fmt.Sprintf("K=%d mem cgroup per session, live tenant env", k), "KiB",
			kib(live.after.cgroup-live.before.cgroup, live.ready), kib(ossh.after.cgroup-ossh.before.cgroup, ossh.ready), nil)
	}
	return nil
}
