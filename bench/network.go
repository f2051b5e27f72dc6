package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The network part (issue 18): a TCP transfer from a network: nat
// tenant to a fake upstream (a network namespace behind a veth, as the
// nat tests build it) against the host's own transfer to the same
// upstream, in the same run, with the same sender (bash's /dev/tcp fed
// by head -c from /dev/zero). The upstream's sink times each connection
// from accept to EOF; CPU is the whole host's (/proc/stat busy time
// around each transfer), since the cost of nat is in the kernel's
// forwarding, conntrack and masquerade, not in any one process.
const (
	tenantNAT    = "jgbnat"       // network: nat, linger 0 (none lives on to keep the table at the stop)
	upstreamAddr = "203.0.113.10" // TEST-NET-3 (the nat tests use TEST-NET-2), in the upstream namespace
	upstreamHost = "203.0.113.1"  // the host's end of the upstream veth
	sinkPort     = 5201
	sinkFlag     = "-network-sink" // argv[1] of the bench binary re-executed as the sink
	// ipForwardPath is the sysctl the gateway turns on (network_forwarding: auto).
	ipForwardPath = "/proc/sys/net/ipv4/ip_forward"
)

// upstream is the fake internet of one network run.
type upstream struct {
	ns, veth string
	sink     *exec.Cmd
	results  *bufio.Scanner // the sink's "BYTES NANOS" line per connection
	sinkCPU  string         // the sink's cpuacct group
	hostCPU  string         // the host sender's cpuacct group
}

// sinkMain is the bench binary as the upstream's sink: it accepts on addr,
// reads each connection to EOF and prints its bytes and duration.
func sinkMain(addr string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sink:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(1)
		}
		t0 := time.Now()
		n, _ := io.Copy(io.Discard, c)
		fmt.Println(n, time.Since(t0).Nanoseconds())
		c.Close()
	}
}

// startUpstream builds the upstream namespace, its veth and its sink.
func startUpstream() (*upstream, error) {
	var rnd [3]byte
	rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	u := &upstream{ns: "jgbench-up-" + id, veth: "jgbup" + id}
	peer := "jgbupp" + id
	for _, args := range [][]string{
		{"netns", "add", u.ns},
		{"link", "add", u.veth, "type", "veth", "peer", "name", peer, "netns", u.ns},
		{"addr", "add", upstreamHost + "/24", "dev", u.veth},
		{"link", "set", u.veth, "up"},
		{"-n", u.ns, "addr", "add", upstreamAddr + "/24", "dev", peer},
		{"-n", u.ns, "link", "set", peer, "up"},
		{"-n", u.ns, "link", "set", "lo", "up"},
	} {
		if err := runCmd("ip", args...); err != nil {
			return u, err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return u, err
	}
	u.sink = exec.Command("ip", "netns", "exec", u.ns, exe, sinkFlag, fmt.Sprintf("0.0.0.0:%d", sinkPort))
	out, err := u.sink.StdoutPipe()
	if err != nil {
		return u, err
	}
	u.sink.Stderr = os.Stderr
	if u.sinkCPU, _, err = newGroup("netsink"); err != nil {
		return u, err
	}
	if u.hostCPU, _, err = newGroup("nethost"); err != nil {
		return u, err
	}
	if err := u.sink.Start(); err != nil {
		return u, err
	}
	if err := os.WriteFile(filepath.Join(u.sinkCPU, "cgroup.procs"), []byte(strconv.Itoa(u.sink.Process.Pid)), 0o644); err != nil {
		return u, err
	}
	u.results = bufio.NewScanner(out)
	if !u.results.Scan() || u.results.Text() != "ready" {
		return u, errors.New("the upstream's sink did not start")
	}
	return u, nil
}

// stop removes the upstream (the sink goes with a kill).
func (u *upstream) stop() {
	if u.sink != nil && u.sink.Process != nil {
		u.sink.Process.Kill()
		u.sink.Wait()
	}
	exec.Command("ip", "link", "del", u.veth).Run()
	exec.Command("ip", "netns", "del", u.ns).Run()
	for _, g := range []string{"netsink", "nethost"} {
		for _, ctrl := range []string{"cpuacct", "memory"} {
			os.Remove(filepath.Join(cgroupRoot, ctrl, groupName(g)))
		}
	}
}

// sendCmd is the sender, run by bash on the host or in her environment.
func sendCmd(bytes int64) string {
	return fmt.Sprintf("exec 3>/dev/tcp/%s/%d && head -c %d /dev/zero >&3", upstreamAddr, sinkPort, bytes)
}

// netTransfer runs one transfer, from the host (tenant false) or from
// the nat tenant's environment, and returns the sink's MiB/s and the CPU
// ms per GiB of the sender and the sink.
func (tb *testbed) netTransfer(ctx context.Context, u *upstream, tenant bool) (float64, float64, error) {
	size := int64(tb.o.netMiB) << 20
	ctx, cancel := context.WithTimeout(ctx, time.Minute+time.Duration(tb.o.netMiB)*time.Second/8)
	defer cancel()
	// The host's sender moves itself into its group before it sends.
	cmd := exec.CommandContext(ctx, "bash", "-c", "echo $$ >"+filepath.Join(u.hostCPU, "cgroup.procs")+" && "+sendCmd(size))
	who, sender := "host", u.hostCPU
	if tenant {
		cmd = tb.ssh(ctx, tb.jg, tenantNAT, defaults, false, "bash -c '"+sendCmd(size)+"'")
		who, sender = "tenant", filepath.Join(cgroupRoot, "cpuacct", tb.jgCgroup(), tenantNAT)
	}
	usage := func() int64 {
		return readInt(filepath.Join(sender, "cpuacct.usage")) + readInt(filepath.Join(u.sinkCPU, "cpuacct.usage"))
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	settle()
	c0 := usage()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("%s: %v: %s", who, err, strings.TrimSpace(errb.String()))
	}
	if !u.results.Scan() {
		return 0, 0, fmt.Errorf("%s: the sink said nothing", who)
	}
	settle()
	cpu := usage() - c0
	var n, ns int64
	if _, err := fmt.Sscan(u.results.Text(), &n, &ns); err != nil || n != size {
		return 0, 0, fmt.Errorf("%s: the sink got %q, want %d bytes", who, u.results.Text(), size)
	}
	mib := float64(n) / (1 << 20)
	rate, perGiB := mib/(float64(ns)/1e9), float64(cpu)/1e6/(mib/1024)
	fmt.Fprintf(os.Stderr, "bench: network %s: %.0f MiB/s, %.0f ms CPU per GiB\n", who, rate, perGiB)
	return rate, perGiB, nil
}

// measureNetwork alternates host and tenant transfers, tputRounds each,
// and adds the throughput (target: the tenant at ≥ 90% of the host) and
// CPU per GiB rows.
func measureNetwork(ctx context.Context, tb *testbed, r *report) error {
	u, err := startUpstream()
	defer u.stop()
	if err != nil {
		return err
	}
	if out, err := tb.ssh(ctx, tb.jg, tenantNAT, defaults, false, "true").CombinedOutput(); err != nil {
		return fmt.Errorf("first login of %s: %v: %s", tenantNAT, err, out)
	}
	rate := map[bool][]float64{}
	cpu := map[bool][]float64{}
	for round := range tb.o.tputRounds {
		for _, tenant := range []bool{round%2 == 0, round%2 == 1} {
			fmt.Fprintf(os.Stderr, "bench: network tenant=%v round %d/%d\n", tenant, round+1, tb.o.tputRounds)
			mibs, ms, err := tb.netTransfer(ctx, u, tenant)
			if err != nil {
				r.note("network: %v", err)
				continue
			}
			rate[tenant] = append(rate[tenant], mibs)
			cpu[tenant] = append(cpu[tenant], ms)
		}
	}
	label := fmt.Sprintf("%d MiB", tb.o.netMiB)
	r.add("nat TCP "+label+" tenant→upstream (OpenSSH column: the host)", "MiB/s", median(rate[true]), median(rate[false]), ge(0.9))
	r.add("nat host CPU per GiB tenant→upstream (OpenSSH column: the host)", "ms", median(cpu[true]), median(cpu[false]), le(1.5))
	return nil
}
