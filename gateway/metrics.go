package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/rootfs"
)

// Metrics are the gateway's Prometheus metrics. Labels are bounded: result
// and kind take a few fixed values, tenant only names configured tenants;
// no remote address is ever a label.
type Metrics struct {
	Registry *prometheus.Registry

	connections      prometheus.Gauge
	connectionsTotal prometheus.Counter
	auth             *prometheus.CounterVec
	sessions         *prometheus.GaugeVec
	sessionsTotal    *prometheus.CounterVec
	sessionSeconds   prometheus.Histogram
	handshakeSeconds prometheus.Histogram
	envSeconds       prometheus.Histogram
	forwardBytes     *prometheus.CounterVec
	reloads          *prometheus.CounterVec
	ooms             *prometheus.CounterVec
	channels         *prometheus.GaugeVec
	channelBound     prometheus.Gauge
}

// NewMetrics registers the gateway's metrics, and per-tenant resource
// gauges read at scrape time through stats (nil: none) for the tenants
// that tenants returns.
func NewMetrics(tenants func() []string, stats func(tenant string) (jail.Stats, error)) *Metrics {
	m := &Metrics{
		Registry:         prometheus.NewRegistry(),
		connections:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "jailgate_connections", Help: "Open SSH connections."}),
		connectionsTotal: prometheus.NewCounter(prometheus.CounterOpts{Name: "jailgate_connections_total", Help: "SSH connections accepted."}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jailgate_auth_attempts_total",
			Help: "Public key authentication attempts by result."}, []string{"result"}),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jailgate_sessions",
			Help: "Live sessions by kind (shell, exec, sftp)."}, []string{"kind"}),
		sessionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jailgate_sessions_total",
			Help: "Sessions started by kind."}, []string{"kind"}),
		sessionSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "jailgate_session_duration_seconds",
			Help: "Session durations.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 12)}),
		handshakeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "jailgate_handshake_duration_seconds",
			Help: "Time from accept to authenticated.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		envSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "jailgate_environment_wait_seconds",
			Help:    "Time to get a channel's environment (a cold start or joining a live one).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		forwardBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jailgate_forwarded_bytes_total",
			Help: "Bytes through ssh -L forwards, by direction."}, []string{"direction"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jailgate_reloads_total",
			Help: "Configuration reloads by result."}, []string{"result"}),
		ooms: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jailgate_session_oom_kills_total",
			Help: "Session processes killed by their tenant's memory limit."}, []string{"tenant"}),
		channels: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jailgate_channels",
			Help: "Open channels by type (session, direct-tcpip, forwarded-tcpip, agent)."}, []string{"type"}),
		channelBound: prometheus.NewGauge(prometheus.GaugeOpts{Name: "jailgate_channel_buffer_bound_bytes",
			Help: "The most unread channel data the gateway can hold now: open channels times the 2 MiB SSH window " +
				"(x/crypto does not expose what its buffers hold)."}),
	}
	m.Registry.MustRegister(m.connections, m.connectionsTotal, m.auth, m.sessions, m.sessionsTotal,
		m.sessionSeconds, m.handshakeSeconds, m.envSeconds, m.forwardBytes, m.reloads, m.ooms, m.channels, m.channelBound)
	if stats != nil && tenants != nil {
		m.Registry.MustRegister(&tenantCollector{tenants: tenants, stats: stats})
	}
	return m
}

// Reload counts a reload; result is "ok" or "error".
func (m *Metrics) Reload(result string) {
	if m != nil {
		m.reloads.WithLabelValues(result).Inc()
	}
}

// Per-tenant gauges, read from the cgroups at scrape time.
var (
	descMemory  = prometheus.NewDesc("jailgate_tenant_memory_bytes", "Memory in use by the tenant's cgroup.", []string{"tenant"}, nil)
	descMemMax  = prometheus.NewDesc("jailgate_tenant_memory_max_bytes", "The tenant's memory limit (-1: none).", []string{"tenant"}, nil)
	descPids    = prometheus.NewDesc("jailgate_tenant_pids", "Tasks in the tenant's cgroup.", []string{"tenant"}, nil)
	descCPU     = prometheus.NewDesc("jailgate_tenant_cpu_seconds_total", "CPU time used by the tenant's cgroup.", []string{"tenant"}, nil)
	descOOM     = prometheus.NewDesc("jailgate_tenant_oom_kills_total", "OOM kills in the tenant's cgroup.", []string{"tenant"}, nil)
	descEnvLive = prometheus.NewDesc("jailgate_tenant_environments", "The tenant's live environments.", []string{"tenant"}, nil)
)

// tenantCollector reads each configured tenant's cgroup at scrape time.
type tenantCollector struct {
	tenants func() []string
	stats   func(string) (jail.Stats, error)
}

// Describe implements prometheus.Collector.
func (c *tenantCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMemory, descMemMax, descPids, descCPU, descOOM, descEnvLive} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *tenantCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.tenants() {
		st, err := c.stats(t)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(st.MemoryBytes), t)
		ch <- prometheus.MustNewConstMetric(descMemMax, prometheus.GaugeValue, float64(st.MemoryMax), t)
		ch <- prometheus.MustNewConstMetric(descPids, prometheus.GaugeValue, float64(st.Pids), t)
		ch <- prometheus.MustNewConstMetric(descCPU, prometheus.CounterValue, float64(st.CPUNanos)/1e9, t)
		ch <- prometheus.MustNewConstMetric(descOOM, prometheus.CounterValue, float64(st.OOMKills), t)
		ch <- prometheus.MustNewConstMetric(descEnvLive, prometheus.GaugeValue, float64(st.Environments), t)
	}
}

// The instrumentation points; each is a no-op on a nil *Metrics.

func (m *Metrics) connOpened() {
	if m != nil {
		m.connections.Inc()
		m.connectionsTotal.Inc()
	}
}

func (m *Metrics) connClosed() {
	if m != nil {
		m.connections.Dec()
	}
}

func (m *Metrics) authResult(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.auth.WithLabelValues("success").Inc()
	} else {
		m.auth.WithLabelValues("failure").Inc()
	}
}

func (m *Metrics) handshake(d time.Duration) {
	if m != nil {
		m.handshakeSeconds.Observe(d.Seconds())
	}
}

func (m *Metrics) envWait(d time.Duration) {
	if m != nil {
		m.envSeconds.Observe(d.Seconds())
	}
}

// sessionStarted counts a session of kind; the returned func ends it.
func (m *Metrics) sessionStarted(kind string) func() {
	if m == nil {
		return func() {}
	}
	begin := time.Now()
	m.sessions.WithLabelValues(kind).Inc()
	m.sessionsTotal.WithLabelValues(kind).Inc()
	return func() {
		m.sessions.WithLabelValues(kind).Dec()
		m.sessionSeconds.Observe(time.Since(begin).Seconds())
	}
}

func (m *Metrics) forwarded(in, out int64) {
	if m != nil {
		m.forwardBytes.WithLabelValues("in").Add(float64(in))
		m.forwardBytes.WithLabelValues("out").Add(float64(out))
	}
}

func (m *Metrics) oomKilled(tenant string) {
	if m != nil {
		m.ooms.WithLabelValues(tenant).Inc()
	}
}

func (m *Metrics) channelOpened(kind string) {
	if m != nil {
		m.channels.WithLabelValues(kind).Inc()
		m.channelBound.Add(channelWindow)
	}
}

func (m *Metrics) channelClosed(kind string) {
	if m != nil {
		m.channels.WithLabelValues(kind).Dec()
		m.channelBound.Sub(channelWindow)
	}
}

// Per-tenant network counters (network: nat), read from the gateway's
// nftables table at scrape time.
var (
	descNetBytes = prometheus.NewDesc("jailgate_tenant_network_bytes",
		"Bytes through the tenant's live nat environments, by direction (in: to her).", []string{"tenant", "direction"}, nil)
	descNetDropped = prometheus.NewDesc("jailgate_tenant_network_dropped_packets",
		"The tenant's packets dropped by policy (egress, the default deny list, the host, limits.connections).",
		[]string{"tenant"}, nil)
)

// WatchNetwork adds the per-tenant network counters, read at scrape time
// through stats (jail.TenantNetStats of the gateway's network name).
func (m *Metrics) WatchNetwork(stats func() (map[string]jail.NetStats, error)) {
	if m != nil {
		m.Registry.MustRegister(netCollector(stats))
	}
}

// netCollector reports the counters of every tenant stats returns.
type netCollector func() (map[string]jail.NetStats, error)

// Describe implements prometheus.Collector.
func (c netCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descNetBytes; ch <- descNetDropped }

// Collect implements prometheus.Collector.
func (c netCollector) Collect(ch chan<- prometheus.Metric) {
	stats, err := c()
	if err != nil {
		return
	}
	for t, st := range stats {
		ch <- prometheus.MustNewConstMetric(descNetBytes, prometheus.CounterValue, float64(st.BytesIn), t, "in")
		ch <- prometheus.MustNewConstMetric(descNetBytes, prometheus.CounterValue, float64(st.BytesOut), t, "out")
		ch <- prometheus.MustNewConstMetric(descNetDropped, prometheus.CounterValue, float64(st.Dropped), t)
	}
}

// Per-tenant disk quota gauges (limits.disk, limits.inodes), read at
// scrape time from each tenant's quota backend.
var (
	descDiskBytes = prometheus.NewDesc("jailgate_tenant_disk_bytes",
		"Bytes the tenant's tree holds against her disk quota.", []string{"tenant"}, nil)
	descDiskMax = prometheus.NewDesc("jailgate_tenant_disk_max_bytes",
		"The tenant's disk quota in bytes (0: none).", []string{"tenant"}, nil)
	descDiskInodes = prometheus.NewDesc("jailgate_tenant_disk_inodes",
		"Files the tenant's tree holds against her inode quota (0 where the backend does not count them: btrfs).", []string{"tenant"}, nil)
	descDiskInodesMax = prometheus.NewDesc("jailgate_tenant_disk_inodes_max",
		"The tenant's inode quota (0: none).", []string{"tenant"}, nil)
)

// WatchDisk adds the per-tenant disk gauges, read at scrape time through
// usage: what each tenant under a disk quota holds, by tenant.
func (m *Metrics) WatchDisk(usage func() map[string]rootfs.Usage) {
	if m != nil {
		m.Registry.MustRegister(diskCollector(usage))
	}
}

// diskCollector reports the disk use of every tenant it returns.
type diskCollector func() map[string]rootfs.Usage

// Describe implements prometheus.Collector.
func (c diskCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDiskBytes, descDiskMax, descDiskInodes, descDiskInodesMax} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c diskCollector) Collect(ch chan<- prometheus.Metric) {
	for t, u := range c() {
		ch <- prometheus.MustNewConstMetric(descDiskBytes, prometheus.GaugeValue, float64(u.Bytes), t)
		ch <- prometheus.MustNewConstMetric(descDiskMax, prometheus.GaugeValue, float64(u.BytesLimit), t)
		ch <- prometheus.MustNewConstMetric(descDiskInodes, prometheus.GaugeValue, float64(u.Inodes), t)
		ch <- prometheus.MustNewConstMetric(descDiskInodesMax, prometheus.GaugeValue, float64(u.InodesLimit), t)
	}
}
