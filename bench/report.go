package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jailgate/jailgate/internal/atomicfile"
)

// target is one of issue 8's bounds on a row: on the ratio
// jailgate/OpenSSH, or (abs) on jailgate's own value.
type target struct {
	op  string // "<=" or ">="
	val float64
	abs bool
}

// String prints the target as the table shows it.
func (t *target) String() string {
	if t == nil {
		return ""
	}
	sym := map[string]string{"<=": "≤", ">=": "≥"}[t.op]
	if t.abs {
		return fmt.Sprintf("%s %g", sym, t.val)
	}
	return fmt.Sprintf("%s %gx", sym, t.val)
}

// le and ge build ratio targets; absLE and absGE absolute ones.
func le(v float64) *target    { return &target{op: "<=", val: v} }
func ge(v float64) *target    { return &target{op: ">=", val: v} }
func absLE(v float64) *target { return &target{op: "<=", val: v, abs: true} }
func absGE(v float64) *target { return &target{op: ">=", val: v, abs: true} }

// row is one line of the table.
type row struct {
	Metric   string   `json:"metric"`
	Unit     string   `json:"unit"`
	Jailgate *float64 `json:"jailgate"`
	OpenSSH  *float64 `json:"openssh"`
	Ratio    *float64 `json:"ratio,omitempty"`
	Target   string   `json:"target,omitempty"`
	Met      *bool    `json:"met,omitempty"`
}

// report collects the rows, the setup and the notes of one run.
type report struct {
	Date    string            `json:"date"`
	Started time.Time         `json:"started"`
	Host    map[string]string `json:"host"`
	Params  map[string]any    `json:"params"`
	Methods map[string]string `json:"methods"`
	Rows    []row             `json:"rows"`
	Notes   []string          `json:"notes"`
	o       *options
}

// newReport starts a report for options o.
func newReport(o *options) *report {
	now := time.Now()
	host, _ := os.Hostname()
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return &report{
		Date: now.Format("2006-01-02"), Started: now, o: o,
		Host: map[string]string{"hostname": host, "kernel": strings.TrimSpace(string(kernel)),
			"cpus": fmt.Sprint(runtime.NumCPU()), "go": runtime.Version()},
		Params: map[string]any{"logins": o.n, "rounds": o.rounds, "prompts": o.prompts, "size_mib": o.sizeMiB,
			"tput_rounds": o.tputRounds, "k": o.ks, "ksess": o.ksess, "morning": o.morning, "sources": o.sources},
		Methods: map[string]string{
			"client": "OpenSSH ssh -F none, ed25519 user key, both servers with an ed25519 host key; " +
				"'chacha20' rows and every latency/prompt/concurrency row pin -o KexAlgorithms=curve25519-sha256 " +
				"-o Ciphers=chacha20-poly1305@openssh.com; 'defaults' rows pin nothing",
			"openssh": "private /usr/sbin/sshd -D on 127.0.0.1 with Debian 12's sshd_config defaults (UsePAM yes, " +
				"MaxStartups 10:30:100), Match User + ChrootDirectory into a root-owned from-host rootfs with /dev/{null,zero,urandom,tty}",
			"jailgate": "jailgate serve on 127.0.0.1 with the default config (the default pool, if any), no limits; tenants " + tenantCold +
				" (linger 0: cold), " + tenantWarm + " (linger 60s: warm), " + tenantSess + " (environment: session)",
			"interleaving": "each round runs every scenario's share of the samples, servers in alternating order",
			"cpu": "cgroup v1 cpuacct.usage deltas around each block, divided by the logins (or GiB, or sessions) in it: sshd is " +
				"in its own cpuacct group from its start (its children inherit it); jailgate's is its own group (serve, and an init " +
				"until it is moved) plus its whole state_dir prefix jailgate-<hash>: every tenant's <prefix>/<tenant>/<env> and the " +
				"pool's <prefix>/pool-<n>/<env> (v1 cpuacct counts children and removed child groups; the two groups are disjoint, " +
				"so nothing counts twice). A block ends when the pool's count of blank inits is steady, so its refills are charged " +
				"to the logins they serve. Both include the tenant's command (bash -c true, cat) and exclude the client; neither " +
				"counts kernel threads' work (e.g. a network namespace's asynchronous cleanup)",
			"memory": "PSS (/proc/PID/smaps_rollup) with K sessions held minus before: jailgate gateway-only = the serve " +
				"process's PSS growth / K; per environment = the PSS of its inits (children of serve but the pool's blank inits, " +
				"comm " + blankComm + ", shown apart as 'pool overhead') / their number; " +
				"OpenSSH per session = PSS of every sshd process but the listener / K. Tenant processes (sleep) are " +
				"excluded on both sides. 'cgroup' rows are memory.usage_in_bytes growth / K of the same groups as cpu " +
				"(they include sleep, page cache and kernel memory); kernel slab per session is /proc/meminfo Slab growth / K",
			"morning": fmt.Sprint(o.morning) + " different tenants (" + morningPrefix + "000…, tenant mode, the default config, " +
				"one layer each over one image " + morningImage + " built by rootfs from-host --minimal --image) each run " +
				"`echo ready; exec sleep 600` once, all launched at the same time, against as many simultaneous sessions of " +
				"the one chroot user on OpenSSH (sshd's cost per login does not depend on which user; its MaxStartups " +
				"default refuses some). Each tenant logged in once before (her ids and layer exist) and her layer was " +
				"unmounted since, as overnight. CPU: launch to both servers back at baseline, per established session",
			"sessions": "K simultaneous `echo ready; exec sleep 600` sessions of one environment: session tenant (" + tenantSessK +
				", an environment each) for K=" + fmt.Sprint(sessBase) + " and K=" + fmt.Sprint(o.ksess) +
				" (-ksess), against K of the chroot user on OpenSSH. For this part only, server.max_tenant_channels is raised " +
				"to K+16 (reload) and " + tenantSessK + " has limits.pids " + fmt.Sprint(sessPids) + " (the defaults, 128 and " +
				"1024, would refuse the rest); nothing else is raised. CPU: launch to back at baseline / established; memory: " +
				"the cgroups' growth / established; env start: the log's lines between the launch and all ready; gateway " +
				"threads: /proc/<serve>/status Threads, the most of samples every 100 ms from the launch to all held, and with all " +
				"held; fds: /proc/<serve>/fd with all held. Hold clients wait for the banner as long as the hold waits " +
				"(ConnectTimeout = 30s + 100ms a session: a client without ConnectTimeout waits for a server that queues " +
				"connections, as jailgate's admission does). Hold clients (concurrency, morning, sessions) all connect from " +
				"127.0.0.1 (a lab behind one NAT: per-source startup caps apply) unless -sources N spreads them over " +
				"127.0.0.2… The bench raises its own " +
				"RLIMIT_NOFILE (soft and hard) for the clients and servers it starts; no host tuning",
			"network": "nat rows: " + tenantNAT + " (network: nat, linger 0: an environment per transfer, started before the sink times it) sends " + fmt.Sprint(o.netMiB) +
				" MiB with bash's /dev/tcp and head -c from /dev/zero to a sink in a network namespace behind a veth " +
				"(the fake upstream " + upstreamAddr + "); the OpenSSH column is the host itself sending the same to the " +
				"same sink, alternating. Rate: the sink's bytes / (accept to EOF). CPU: cpuacct.usage of the sender's group " +
				"(the harness's for the host, her tenant group for the tenant, with her ssh command's processes) plus the sink's, " +
				"per GiB: the kernel forwards her packets in the sender's context",
			"env_start": "cold: the gateway log's 'environment start' duration (the time the login waited for its " +
				"environment: the critical path, pooled or not; the share with pooled=true is a note) for " + tenantCold +
				"; joining: jailgate_environment_wait_seconds histogram growth over the warm blocks, interpolated within " +
				"its buckets (1, 2, 4, … ms)",
		},
	}
}

// describe records what the setup found.
func (r *report) describe(tb *testbed) {
	r.Host["openssh"] = tb.sshdVersion
	r.Host["jailgate"] = tb.jgVersion
}

// note adds a line to the notes.
func (r *report) note(format string, a ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, a...))
}

// num turns NaN into a JSON null.
func num(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	v = math.Round(v*1000) / 1000
	return &v
}

// add appends a row; ref (OpenSSH's value) is NaN for jailgate-only rows.
func (r *report) add(metric, unit string, jg, ref float64, t *target) {
	rw := row{Metric: metric, Unit: unit, Jailgate: num(jg), OpenSSH: num(ref), Target: t.String()}
	ratio := math.NaN()
	if !math.IsNaN(jg) && !math.IsNaN(ref) && ref != 0 {
		ratio = jg / ref
		rw.Ratio = num(ratio)
	}
	if t != nil {
		v := ratio
		if t.abs {
			v = jg
		}
		if !math.IsNaN(v) {
			met := v <= t.val
			if t.op == ">=" {
				met = v >= t.val
			}
			rw.Met = &met
		}
	}
	r.Rows = append(r.Rows, rw)
}

// print writes the table and the notes.
func (r *report) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tunit\tjailgate\tOpenSSH\tratio\ttarget\t\t")
	f := func(p *float64) string {
		if p == nil {
			return "-"
		}
		a := math.Abs(*p)
		switch {
		case a >= 100:
			return fmt.Sprintf("%.0f", *p)
		case a >= 10:
			return fmt.Sprintf("%.1f", *p)
		}
		return fmt.Sprintf("%.2f", *p)
	}
	for _, rw := range r.Rows {
		ratio := "-"
		if rw.Ratio != nil {
			ratio = fmt.Sprintf("%.2fx", *rw.Ratio)
		}
		met := ""
		if rw.Met != nil {
			met = map[bool]string{true: "ok", false: "MISS"}[*rw.Met]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", rw.Metric, rw.Unit, f(rw.Jailgate), f(rw.OpenSSH), ratio, rw.Target, met)
	}
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

// write stores the report as JSON in dir/<date>.json (replacing a file of
// the same day) and returns its path.
func (r *report) write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	// A second run on the same day gets <date>-2.json and so on: runs are
	// compared, never overwritten.
	path := filepath.Join(dir, r.Date+".json")
	for n := 2; ; n++ {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			break
		}
		path = filepath.Join(dir, fmt.Sprintf("%s-%d.json", r.Date, n))
	}
	return path, atomicfile.WriteFile(path, append(b, '\n'), 0o644)
}
