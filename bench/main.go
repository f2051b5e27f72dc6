// Command bench measures jailgate side by side with OpenSSH's sshd
// (Match User + ChrootDirectory into a copy of the same rootfs) on this
// machine, over loopback, with the same client (OpenSSH ssh), key type
// (ed25519) and, for the comparable runs, the same KEX and cipher
// (curve25519-sha256, chacha20-poly1305@openssh.com). It prints one table
// (metric, jailgate, OpenSSH, ratio, target) and writes the same as JSON to
// bench/results/<YYYY-MM-DD>.json. See issue 8 for the targets.
//
// Run it as root from the repository root, after make build:
//
//	go run ./bench                       # the defaults of issue 8
//	go run ./bench -n 12 -k 20 -size 32  # a quick check
//
// Everything it starts (sshd, jailgate serve, ssh clients) and everything
// it creates (a work dir, two cgroups per controller, the test user if it
// did not exist) is removed at the end, also on failure or Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command-line settings of one run.
type options struct {
	n          int    // sequential logins per server and scenario
	rounds     int    // interleaved rounds the logins are split into
	prompts    int    // first-prompt samples per server
	sizeMiB    int    // throughput transfer size
	netMiB     int    // network (nat) transfer size
	tputRounds int    // throughput repetitions per server, direction and mode
	ks         []int  // concurrency levels
	ksess      int    // the sessions part's K (beside 500)
	morning    int    // tenants of the morning part
	sources    int    // loopback source addresses the hold clients spread over
	jailgate   string // the jailgate binary
	workBase   string // parent of the run's work dir
	outDir     string // where results/<date>.json goes
	only       map[string]bool
	timeout    time.Duration // the whole run
	user       string        // sshd test user
	keep       bool          // keep the work dir (debugging)
	notes      []string      // the operator's notes for the report (-note)
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == sinkFlag {
		sinkMain(os.Args[2]) // the network part's upstream (network.go)
		return
	}
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: must run as root (namespaces, cgroups, a private sshd with ChrootDirectory)")
		os.Exit(2)
	}
	if err := raiseNofile(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	code := 0
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		code = 1
	}
	stop()
	cancel()
	os.Exit(code)
}

// raiseNofile raises this process's open-file limit (soft and hard, as
// root) to what 1000 ssh clients and a gateway holding their sessions
// need, so that no host tuning is needed: sshd, jailgate serve and the
// clients inherit it (Go gives children the original soft limit back
// unless the program set it itself, as here).
func raiseNofile() error {
	const want = 1 << 18
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return err
	}
	limit := uint64(want)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			limit = min(limit, n)
		}
	}
	hard := r.Max
	r.Max = max(r.Max, limit)
	r.Cur = r.Max
	err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	if errors.Is(err, syscall.EPERM) { // no CAP_SYS_RESOURCE (a container): the hard limit it has
		r.Max, r.Cur = hard, hard
		err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
	if err != nil {
		return fmt.Errorf("raise the open-file limit to %d: %w", r.Max, err)
	}
	return nil
}

// parseFlags reads the command line into options.
func parseFlags() (*options, error) {
	o := &options{}
	var ks, only string
	var k1000 bool
	flag.IntVar(&o.n, "n", 50, "sequential `logins` per server and scenario (split over the rounds)")
	flag.IntVar(&o.rounds, "rounds", 5, "interleaved `rounds` (at least 3)")
	flag.IntVar(&o.prompts, "prompts", 20, "first-prompt `samples` per server")
	flag.IntVar(&o.sizeMiB, "size", 256, "throughput transfer size in `MiB`")
	flag.IntVar(&o.netMiB, "net-size", 1024, "network (nat) transfer size in `MiB`")
	flag.IntVar(&o.tputRounds, "tput-rounds", 3, "throughput repetitions per server, direction and cipher mode")
	flag.StringVar(&ks, "k", "50,200", "concurrency `levels`, comma-separated")
	flag.BoolVar(&k1000, "k1000", false, "also hold 1000 simultaneous sessions")
	flag.IntVar(&o.ksess, "ksess", 1000, "the sessions part's `K`: simultaneous sessions of one environment: session tenant, held beside 500")
	flag.IntVar(&o.sources, "sources", 1, "loopback source `addresses` (127.0.0.2…) the clients of the concurrency, morning and sessions parts spread over; 1: all from 127.0.0.1, as a lab behind one NAT")
	flag.IntVar(&o.morning, "morning", 200, "the morning part's `tenants`, each logging in once at the same time")
	flag.StringVar(&o.jailgate, "jailgate", "bin/jailgate", "the jailgate `binary` (make build)")
	flag.StringVar(&o.workBase, "workdir", "/var/lib/jailgate-bench",
		"parent `dir` of the run's work dir; every ancestor must be root-owned and not group/world-writable (sshd's ChrootDirectory rule, which /var/tmp fails)")
	flag.StringVar(&o.outDir, "out", "bench/results", "results `dir`")
	flag.StringVar(&only, "only", "", "run only these `parts`: "+strings.Join(parts, ",")+" (default all)")
	flag.DurationVar(&o.timeout, "timeout", 90*time.Minute, "bound on the whole run (the morning and sessions parts take ~20 min of it on 2 cores)")
	flag.StringVar(&o.user, "user", "jgbench", "sshd test `user` (created if missing, removed at the end if created)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work dir at the end (debugging)")
	flag.Func("note", "a `text` to record in the report's notes (repeatable), e.g. what differs about this run", func(s string) error {
		o.notes = append(o.notes, s)
		return nil
	})
	flag.Parse()
	if o.rounds < 3 {
		return nil, fmt.Errorf("-rounds %d: at least 3", o.rounds)
	}
	if o.n < o.rounds {
		return nil, fmt.Errorf("-n %d: at least one login per round (-rounds %d)", o.n, o.rounds)
	}
	if o.ksess < 1 || o.ksess > 2000 || o.morning < 1 || o.morning > 1000 || o.sources < 1 || o.sources > 250 {
		return nil, fmt.Errorf("-ksess %d: want 1..2000; -morning %d: want 1..1000; -sources %d: want 1..250", o.ksess, o.morning, o.sources)
	}
	if o.sizeMiB < 1 || o.netMiB < 1 || o.prompts < 1 || o.tputRounds < 1 {
		return nil, fmt.Errorf("-size, -net-size, -prompts and -tput-rounds must be positive")
	}
	for _, f := range strings.Split(ks, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		k, err := strconv.Atoi(f)
		if err != nil || k < 1 || k > 2000 {
			return nil, fmt.Errorf("-k %q: want numbers in 1..2000", f)
		}
		o.ks = append(o.ks, k)
	}
	if k1000 {
		o.ks = append(o.ks, 1000)
	}
	if only != "" {
		o.only = map[string]bool{}
		for _, p := range strings.Split(only, ",") {
			if p = strings.TrimSpace(p); !slices.Contains(parts, p) {
				return nil, fmt.Errorf("-only %q: unknown part (want %s)", p, strings.Join(parts, ","))
			}
			o.only[p] = true
		}
	}
	abs, err := filepath.Abs(o.jailgate)
	if err != nil {
		return nil, err
	}
	o.jailgate = abs
	return o, nil
}

// parts are the -only names, in the order they run.
var parts = []string{"throughput", "latency", "prompt", "concurrency", "morning", "sessions", "network"}

// want reports whether part is to be run.
func (o *options) want(part string) bool { return o.only == nil || o.only[part] }

// run sets up both servers, measures, tears everything down and reports.
func run(ctx context.Context, o *options) (err error) {
	rep := newReport(o)
	for _, n := range o.notes {
		rep.note("%s", n)
	}
	tb, err := setup(ctx, o)
	defer func() {
		if tb != nil {
			for _, e := range tb.teardown() {
				fmt.Fprintln(os.Stderr, "bench: cleanup:", e)
			}
		}
	}()
	if err != nil {
		return err
	}
	rep.describe(tb)
	steps := []struct {
		part string
		f    func(context.Context, *testbed, *report) error
	}{
		{"throughput", measureCiphers},
		{"latency", measureLatency},
		{"prompt", measurePrompt},
		{"throughput", measureThroughput},
		{"concurrency", measureConcurrency},
		{"morning", measureMorning},
		{"sessions", measureSessions},
		{"network", measureNetwork},
	}
	for _, s := range steps {
		if !o.want(s.part) {
			continue
		}
		if ctx.Err() != nil {
			rep.note("stopped early: %v", context.Cause(ctx))
			break
		}
		if e := s.f(ctx, tb, rep); e != nil {
			rep.note("%s: %v", s.part, e)
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", s.part, e)
		}
	}
	rep.print(os.Stdout)
	path, werr := rep.write(o.outDir)
	if werr != nil {
		return werr
	}
	fmt.Println("written to", path)
	return nil
}
