//go:build linux

package main

import (
	"fmt"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
)

// TestE2EMetrics: with metrics_listen, /healthz and /readyz answer, and
// /metrics (parsed with the Prometheus text parser) carries a live exec
// session and alice's cgroup memory while it runs.
func TestE2EMetrics(t *testing.T) {
	port := freePort(t)
	g := startServeWith(t, fmt.Sprintf("metrics_listen: 127.0.0.1:%d\n", port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s", p, resp.Status)
		}
	}
	cmd := exec.Command("ssh", append(append(g.clientOpts("alice", "-p"), "alice@127.0.0.1"), "echo ready; exec sleep 1000")...)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	gatewaytest.Expect(t, out, "ready", 10*time.Second)

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	get := func(name, label, value string) float64 {
		for _, m := range fams[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if m.Gauge != nil {
						return m.GetGauge().GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
		return -1
	}
	if v := get("jailgate_tenant_memory_bytes", "tenant", "alice"); v <= 0 {
		t.Errorf("alice's memory gauge = %v while her session runs, want > 0", v)
	}
	if v := get("jailgate_sessions", "kind", "exec"); v != 1 {
		t.Errorf("live exec sessions = %v, want 1", v)
	}
	if v := get("jailgate_tenant_environments", "tenant", "alice"); v != 1 {
		t.Errorf("alice's environments = %v, want 1", v)
	}
	pooled, cold := get("jailgate_environment_starts_total", "path", "pooled"), get("jailgate_environment_starts_total", "path", "cold")
	if pooled+cold != 1 || pooled < 0 || cold < 0 {
		t.Errorf("environment starts: pooled %v + cold %v, want one start in all", pooled, cold)
	}
	if fams["jailgate_prestart_ready"] == nil {
		t.Error("no jailgate_prestart_ready gauge")
	}
}
