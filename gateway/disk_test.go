package gateway_test

import (
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
	"github.com/jailgate/jailgate/rootfs"
)

// diskFull is the line she reads at a login in a terminal within 100 KiB
// of her 64 MiB (past it: a write that failed left her a little under).
const diskFull = "jailgate: your disk is full: 65436KiB used of your 64MiB quota (limits.disk); " +
	"writes fail until you free some. What takes it: du -sh ~/* | sort -h\r\n"

// TestDiskFullNotice (issue 19): past her quota, her next login in a
// terminal prints one line (what she holds, her quota, the du hint), and
// every such login does while she stays past it; an exec session prints
// nothing; under her quota nothing is said. The gateway logs limit.disk
// once per crossing: not again while she stays past it, again after she
// went under and crossed anew. A full inode quota says so in files.
func TestDiskFullNotice(t *testing.T) {
	var (
		mu sync.Mutex
		us = rootfs.Usage{Backend: rootfs.QuotaBtrfs, Bytes: 10 << 20, BytesLimit: 64 << 20}
	)
	set := func(u rootfs.Usage) { mu.Lock(); us = u; mu.Unlock() }
	signer, pub := gatewaytest.NewKey(t)
	u := gatewaytest.User("alice", pub)
	u.Disk = config.Disk{Bytes: 64 << 20, Inodes: 3000}
	h := gatewaytest.Start(t, gatewaytest.Config(u), &jailtest.HostManager{}, func(o *gateway.Options) {
		o.DiskUsage = func(got *config.User) (rootfs.Usage, bool) {
			mu.Lock()
			defer mu.Unlock()
			return us, got.Name == "alice"
		}
	})
	login := func() string {
		_, out, in := ptyShell(t, h, signer)
		in.Write([]byte("echo end-$((6*7))\n"))
		return gatewaytest.Expect(t, out, "end-42", 5*time.Second)
	}
	crossings := func() int { return strings.Count(h.Logs(), "msg=limit.disk") }
	if got := login(); strings.Contains(got, "disk is full") || crossings() != 0 {
		t.Errorf("under her quota: %q, %d limit.disk lines; want neither", got, crossings())
	}
	set(rootfs.Usage{Backend: rootfs.QuotaBtrfs, Bytes: 64<<20 - 100<<10, BytesLimit: 64 << 20})
	for i := range 2 {
		if got := login(); !strings.Contains(got, diskFull) {
			t.Errorf("login %d past her quota: %q, want the line %q", i+1, got, diskFull)
		}
	}
	if n := crossings(); n != 1 || !strings.Contains(h.Logs(), "tenant=alice used=67006464 limit=67108864") {
		t.Errorf("two logins past her quota: %d limit.disk lines, want 1 with tenant, used and limit", n)
	}
	c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := c.NewSession()
	if out, _ := s.CombinedOutput("echo plain"); string(out) != "plain\n" {
		t.Errorf("exec past her quota: %q, want only its output", out)
	}
	set(rootfs.Usage{Backend: rootfs.QuotaBtrfs, Bytes: 1 << 20, BytesLimit: 64 << 20})
	login()
	set(rootfs.Usage{Backend: rootfs.QuotaImage, Bytes: 1 << 20, BytesLimit: 64 << 20, Inodes: 3000, InodesLimit: 3000})
	want := "jailgate: your disk is full: 3000 files of your 3000 quota (limits.inodes)"
	if got := login(); !strings.Contains(got, want) || !strings.Contains(got, "du -sh ~/* | sort -h") {
		t.Errorf("inodes full: %q, want %q and the hint", got, want)
	}
	if n := crossings(); n != 2 {
		t.Errorf("under, then past again: %d limit.disk lines, want 2", n)
	}
}

// TestMetricsDisk: /metrics has each tenant's disk use and quota, bytes
// and inodes, as WatchDisk's usage gives them.
func TestMetricsDisk(t *testing.T) {
	m := gateway.NewMetrics(nil, nil)
	m.WatchDisk(func() map[string]rootfs.Usage {
		return map[string]rootfs.Usage{"alice": {Backend: rootfs.QuotaImage, Bytes: 5 << 20, BytesLimit: 64 << 20, Inodes: 120, InodesLimit: 3000}}
	})
	ts := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	defer ts.Close()
	fams := scrape(t, ts.URL)
	alice := map[string]string{"tenant": "alice"}
	for name, want := range map[string]float64{
		"jailgate_tenant_disk_bytes": 5 << 20, "jailgate_tenant_disk_max_bytes": 64 << 20,
		"jailgate_tenant_disk_inodes": 120, "jailgate_tenant_disk_inodes_max": 3000,
	} {
		if got := value(fams, name, alice); got != want {
			t.Errorf("%s{tenant=alice} = %v, want %v", name, got, want)
		}
	}
}
