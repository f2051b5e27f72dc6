package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/jailgate/jailgate/gateway"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// scrape fetches url and parses the Prometheus text exposition.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value sums a family's samples whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var sum float64
	for _, m := range fams[name].GetMetric() {
		ok := true
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

func TestMetricsMove(t *testing.T) {
	m := gateway.NewMetrics(nil, nil)
	ts := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	defer ts.Close()
	signer, pub := gatewaytest.NewKey(t)
	h := gatewaytest.Start(t, gatewaytest.Config(gatewaytest.User("alice", pub)), &jailtest.HostManager{},
		func(o *gateway.Options) { o.Metrics = m })
	before := scrape(t, ts.URL)
	c, err := gatewaytest.Dial(t, h.Addr, "alice", signer)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := c.NewSession()
	if _, err := s.Output("true"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	stranger, _ := gatewaytest.NewKey(t)
	if c2, err := gatewaytest.Dial(t, h.Addr, "alice", stranger); err == nil {
		c2.Close()
	}
	after := scrape(t, ts.URL)
	checks := []struct {
		name   string
		labels map[string]string
		delta  float64
	}{
		{"jailgate_connections_total", nil, 2},
		{"jailgate_auth_attempts_total", map[string]string{"result": "success"}, 1},
		{"jailgate_auth_attempts_total", map[string]string{"result": "failure"}, 1},
		{"jailgate_sessions_total", map[string]string{"kind": "exec"}, 1},
		{"jailgate_session_duration_seconds", nil, 1},
		{"jailgate_handshake_duration_seconds", nil, 1},
	}
	for _, ck := range checks {
		if d := value(after, ck.name, ck.labels) - value(before, ck.name, ck.labels); d < ck.delta {
			t.Errorf("%s%v moved by %v, want at least %v", ck.name, ck.labels, d, ck.delta)
		}
	}
}

// TestMetricsNetwork: the per-tenant network counters are in /metrics as
// WatchNetwork's stats give them.
func TestMetricsNetwork(t *testing.T) {
	m := gateway.NewMetrics(nil, nil)
	m.WatchNetwork(func() (map[string]jail.NetStats, error) {
		return map[string]jail.NetStats{"alice": {BytesIn: 1 << 20, BytesOut: 300, Dropped: 2}}, nil
	})
	ts := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	defer ts.Close()
	fams := scrape(t, ts.URL)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"jailgate_tenant_network_bytes", map[string]string{"tenant": "alice", "direction": "in"}, 1 << 20},
		{"jailgate_tenant_network_bytes", map[string]string{"tenant": "alice", "direction": "out"}, 300},
		{"jailgate_tenant_network_dropped_packets", map[string]string{"tenant": "alice"}, 2},
	} {
		if got := value(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
