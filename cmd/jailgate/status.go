package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/provision"
	"github.com/jailgate/jailgate/statedir"
)

// cmdStatus prints each tenant's resource use, read from her cgroup under
// the state_dir's prefix (the one serve uses), and her network counters
// (network: nat) from the gateway's nftables table ("-" where they cannot
// be read: no nftables, or not root).
func cmdStatus(args []string, stdout io.Writer) error {
	path, _, err := configFlag("status", args)
	if err != nil {
		return err
	}
	c, err := loadConfig(path)
	if err != nil {
		return err
	}
	net, netErr := jail.TenantNetStats(statedir.New(c.StateDir).Hash())
	w := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TENANT\tENVS\tMEMORY\tPIDS\tCPU\tOOM KILLS\tDISK\tINODES\tNET IN\tNET OUT\tDROPPED")
	for _, n := range c.Names() {
		st, err := jail.TenantStats(n, statedir.New(c.StateDir).Cgroup())
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\t%d\t%s / %s\t%d / %s\t%s\t%d\t%s\n", n, st.Environments,
			config.FormatSize(st.MemoryBytes), limitText(st.MemoryMax, true),
			st.Pids, limitText(st.PidsMax, false),
			time.Duration(st.CPUNanos).Round(time.Millisecond), st.OOMKills, diskText(c, c.Users[n])+"\t"+netText(net[n], netErr))
	}
	return w.Flush()
}

// netText renders her network counters as three columns.
func netText(st jail.NetStats, err error) string {
	if err != nil {
		return "-\t-\t-"
	}
	return fmt.Sprintf("%s\t%s\t%d", config.FormatSize(int64(st.BytesIn)), config.FormatSize(int64(st.BytesOut)), st.Dropped)
}

// limitText renders a cgroup maximum; -1 is unlimited.
func limitText(v int64, size bool) string {
	switch {
	case v < 0:
		return "max"
	case size:
		return config.FormatSize(v)
	}
	return fmt.Sprint(v)
}

// diskText is u's disk use against her quota, blocks then inodes (a
// limit the backend does not enforce is "max"), or "-\t-" where no quota
// bounds her tree.
func diskText(c *config.Config, u *config.User) string {
	us, ok, err := provision.DiskUsage(c.StateDir, u)
	if err != nil || !ok {
		return "-\t-"
	}
	inodes := "max"
	if us.InodesLimit > 0 {
		inodes = fmt.Sprint(us.InodesLimit)
	}
	return fmt.Sprintf("%s / %s (%s)\t%d / %s", config.FormatSize(us.Bytes), quotaText(us.BytesLimit), us.Backend, us.Inodes, inodes)
}
