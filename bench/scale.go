package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jailgate/jailgate/statedir"
)

// This file holds the parts of issue 20 at scale: a lab's morning (many
// tenants, one cold login each, all at once) and K simultaneous sessions
// of one environment: session tenant.

// sessBase is the sessions part's reference K: the cost per session at
// -ksess is compared with the cost at sessBase.
const sessBase = 500

// perSession divides a total by the established sessions (NaN for none).
func perSession(v float64, n int) float64 {
	if n <= 0 {
		return math.NaN()
	}
	return v / float64(n)
}

// measureMorning is a lab's morning: -morning different tenants (one
// environment each, tenant mode, the default config) each log in once,
// all at the same time, against as many simultaneous logins of the chroot
// user on OpenSSH. Each tenant logged in once before ("yesterday": her ids
// and layer exist) and her layer has been unmounted since, as overnight.
func measureMorning(ctx context.Context, tb *testbed, r *report) error {
	n := tb.o.morning
	fmt.Fprintf(os.Stderr, "bench: morning: %d tenants log in once each (yesterday)\n", n)
	failed := 0
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if _, err := tb.login(ctx, tb.jg, morningTenant(i)); err != nil {
			if failed++; failed == 1 {
				r.note("morning: yesterday's login: %v", err)
			}
		}
	}
	if failed > 0 {
		r.note("morning: %d of %d of yesterday's logins failed", failed, n)
	}
	if err := tb.waitLayersGone(ctx, 2*time.Minute); err != nil {
		r.note("morning: %v", err)
	}
	from := tb.logSize()
	res := map[string]holdResult{}
	for _, sc := range []scenario{
		{"jailgate", tb.jg, "", false},
		{"openssh", tb.ossh, tb.o.user, false},
	} {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		fmt.Fprintf(os.Stderr, "bench: morning: %d simultaneous cold logins, %s\n", n, sc.label)
		user := sameUser(sc.user)
		if sc.s == tb.jg {
			user = morningTenant
		}
		h, err := tb.hold(ctx, sc.s, n, holdSpec{user: user})
		if err != nil {
			r.note("morning %s: %v", sc.label, err)
		}
		if h.ready < n {
			r.note("morning %s: %d of %d established; the others: %s%s", sc.label, h.ready, n, h.fails, h.complaints)
		}
		res[sc.label] = h
	}
	jg, ref := res["jailgate"], res["openssh"]
	r.add(fmt.Sprintf("morning: %d tenants log in at once, established", n), "sessions",
		float64(jg.ready), float64(ref.ready), absGE(float64(n)))
	r.add(fmt.Sprintf("morning: %d tenants, until the last is ready", n), "s", jg.last.Seconds(), ref.last.Seconds(), le(0.5))
	r.add(fmt.Sprintf("morning: %d tenants, server CPU per login", n), "ms",
		perSession(float64(jg.cpu)/1e6, jg.ready), perSession(float64(ref.cpu)/1e6, ref.ready), nil)
	starts, err := envStarts(tb.jg.logPath, from, -1, func(t string) bool { return strings.HasPrefix(t, morningPrefix) })
	if err != nil {
		r.note("morning: environment start: %v", err)
	}
	r.add("morning: env start on the critical path, median", "ms", percentile(starts.d, .5), math.NaN(), nil)
	r.add("morning: env start on the critical path, p95", "ms", percentile(starts.d, .95), math.NaN(), nil)
	starts.note(r, "morning")
	return nil
}

// waitLayersGone waits until no layer of this state_dir is mounted (the
// gateway unmounts a tenant's layer 30s after her last environment).
func (tb *testbed) waitLayersGone(ctx context.Context, bound time.Duration) error {
	dir := statedir.New(tb.jgStateDir()).LayerMounts() + "/"
	for end := time.Now().Add(bound); ; time.Sleep(time.Second) {
		b, _ := os.ReadFile("/proc/self/mountinfo")
		if !strings.Contains(string(b), dir) {
			return nil
		}
		if time.Now().After(end) || ctx.Err() != nil {
			return fmt.Errorf("layers still mounted under %s after %s", dir, bound)
		}
	}
}

// sessCost is what one sessions-part hold cost, per established session.
type sessCost struct {
	cpu, mem float64 // server CPU ms; memory cgroup KiB
}

// measureSessions holds K sessions of one environment: session tenant
// (an environment each) for K = 500 and -ksess, against as many of the
// chroot user on OpenSSH, with the tenant channel cap raised to K for
// this part only (the default, 128, would refuse the rest).
func measureSessions(ctx context.Context, tb *testbed, r *report) error {
	tb.poolRow(r)
	tb.jgs.raised = true
	if err := tb.reload(); err != nil {
		return err
	}
	defer func() {
		tb.jgs.raised = false
		if err := tb.reload(); err != nil {
			r.note("sessions: reload to the default channel cap: %v", err)
		}
	}()
	ks := []int{sessBase}
	if tb.o.ksess != sessBase {
		ks = append(ks, tb.o.ksess)
	}
	costs := map[int][2]sessCost{} // jailgate, OpenSSH
	for i, k := range ks {
		c, err := tb.sessionsAt(ctx, r, k, i%2 == 1)
		if err != nil {
			return err
		}
		costs[k] = c
	}
	if len(ks) == 2 {
		a, b := costs[ks[1]], costs[sessBase]
		r.add(fmt.Sprintf("sessions: CPU per session, K=%d / K=%d", ks[1], sessBase), "x",
			a[0].cpu/b[0].cpu, a[1].cpu/b[1].cpu, absLE(1.1))
		r.add(fmt.Sprintf("sessions: memory per session, K=%d / K=%d", ks[1], sessBase), "x",
			a[0].mem/b[0].mem, a[1].mem/b[1].mem, absLE(1.1))
	}
	return nil
}

// sessionsAt holds k sessions on each server (OpenSSH first if osFirst)
// and adds the rows of that K; it returns the cost per session of each.
func (tb *testbed) sessionsAt(ctx context.Context, r *report, k int, osFirst bool) ([2]sessCost, error) {
	var from, to int64
	var threads, fds int
	var maxThreads int
	jgSpec := holdSpec{user: sameUser(tenantSessK), during: func() {
		to = tb.logSize()
		threads, fds = threadsFDs(tb.jg.cmd.Process.Pid)
	}, sample: func() {
		t, _ := threadsFDs(tb.jg.cmd.Process.Pid)
		maxThreads = max(maxThreads, t)
	}}
	scs := []scenario{{"jailgate", tb.jg, tenantSessK, false}, {"openssh", tb.ossh, tb.o.user, false}}
	if osFirst {
		scs[0], scs[1] = scs[1], scs[0]
	}
	res := map[string]holdResult{}
	for _, sc := range scs {
		if ctx.Err() != nil {
			return [2]sessCost{}, context.Cause(ctx)
		}
		fmt.Fprintf(os.Stderr, "bench: sessions K=%d %s\n", k, sc.label)
		spec := holdSpec{user: sameUser(sc.user)}
		if sc.s == tb.jg {
			spec, from = jgSpec, tb.logSize()
		}
		h, err := tb.hold(ctx, sc.s, k, spec)
		if err != nil {
			r.note("sessions K=%d %s: %v", k, sc.label, err)
		}
		if h.ready < k {
			r.note("sessions K=%d %s: %d of %d established; the others: %s%s", k, sc.label, h.ready, k, h.fails, h.complaints)
		}
		r.note("sessions K=%d %s: server back to baseline %.1fs after the clients were killed", k, sc.label, h.cleanup.Seconds())
		res[sc.label] = h
	}
	jg, ref := res["jailgate"], res["openssh"]
	cost := func(h holdResult) sessCost {
		return sessCost{cpu: perSession(float64(h.cpu)/1e6, h.ready),
			mem: perSession(float64(h.after.cgroup-h.before.cgroup)/1024, h.ready)}
	}
	c := [2]sessCost{cost(jg), cost(ref)}
	p := fmt.Sprintf("sessions K=%d (env per session)", k)
	r.add(p+": established", "sessions", float64(jg.ready), float64(ref.ready), absGE(float64(k)))
	r.add(p+": until the last is ready", "s", jg.last.Seconds(), ref.last.Seconds(), le(0.6))
	r.add(p+": server CPU per session", "ms", c[0].cpu, c[1].cpu, le(0.6))
	r.add(p+": memory per session (cgroups)", "KiB", c[0].mem, c[1].mem, le(0.8))
	r.add(p+": kernel slab per session", "KiB", perSession(float64(jg.slab)/1024, jg.ready),
		perSession(float64(ref.slab)/1024, ref.ready), nil)
	starts, err := envStarts(tb.jg.logPath, from, to, func(t string) bool { return t == tenantSessK })
	if err != nil {
		r.note("sessions K=%d: environment start: %v", k, err)
	}
	r.add(p+": env start under that load, median", "ms", percentile(starts.d, .5), math.NaN(), nil)
	r.add(p+": env start under that load, p95", "ms", percentile(starts.d, .95), math.NaN(), absLE(200))
	starts.note(r, fmt.Sprintf("sessions K=%d", k))
	r.add(p+": gateway threads, most while they start", "threads", float64(maxThreads), math.NaN(), absLE(64))
	r.add(p+": gateway threads, all held", "threads", float64(threads), math.NaN(), nil)
	r.add(p+": gateway open fds", "fds", float64(fds), math.NaN(), nil)
	return c, nil
}

// sampleEvery calls f every d until the returned stop is called (which
// waits for a call in progress; a second stop does nothing).
func sampleEvery(d time.Duration, f func()) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			f()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-exited }) }
}

// waitReady counts the ready sessions until all k are, or bound passed,
// and returns them with the time of the last.
func waitReady(ctx context.Context, readyAt <-chan time.Duration, k int, bound time.Duration) (ready int, last time.Duration) {
	deadline := time.After(bound)
	for ready < k {
		select {
		case d := <-readyAt:
			ready++
			last = d
		case <-deadline:
			return ready, last
		case <-ctx.Done():
			return ready, last
		}
	}
	return ready, last
}

// poolRow adds, once per report, the pool's blank inits as their own row
// (the gateway's overhead while idle; no target).
func (tb *testbed) poolRow(r *report) {
	if tb.poolShown {
		return
	}
	tb.jg.poolSettle()
	m := snapshot(tb.jg)
	tb.poolShown = true
	r.add(fmt.Sprintf("pool overhead: %d blank inits, PSS total", m.nBlank), "KiB", float64(m.blank)/1024, math.NaN(), nil)
}
