package jail

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// limitRate caps her traffic at bits per second in each direction
// (limits.net_rate) with a token bucket filter (tc-tbf(8)), set through
// netlink on the egress of both ends of her veth: the host end (to her)
// and eth0 in her namespace (from her), set from outside before her init
// runs. TBF queues what exceeds the rate, which TCP paces to; an ingress
// policer would drop instead, and needs act_police, which hosts lack.
// eth0's qdisc is in her namespace: a tenant given CAP_NET_ADMIN (caps:)
// could remove it. Both go with the veth.
func limitRate(veth string, pid int, bits int64) error {
	return bothEnds(veth, pid, func(h netlink.Handle, link netlink.Link) error { return addTBF(h, link, bits) })
}

// bothEnds runs f on the host end of her veth and on eth0 in the network
// namespace of pid, each with a netlink handle of its namespace.
func bothEnds(veth string, pid int, f func(netlink.Handle, netlink.Link) error) error {
	host, err := netlink.LinkByName(veth)
	if err != nil {
		return fmt.Errorf("net_rate: %s: %w", veth, err)
	}
	if err := f(netlink.Handle{}, host); err != nil {
		return err
	}
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return fmt.Errorf("net_rate: her network namespace: %w", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("net_rate: netlink in her namespace: %w", err)
	}
	defer h.Close()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("net_rate: eth0: %w", err)
	}
	return f(*h, eth0)
}

// addTBF puts a token bucket filter of bits per second at the root of
// link's egress, through h.
func addTBF(h netlink.Handle, link netlink.Link, bits int64) error {
	rate := uint64(bits / 8) // bytes per second
	// The burst: 10 ms at the rate, at least a 64 KiB GSO packet (a veth
	// hands TBF whole offloaded segments, which it must not split).
	burst := uint32(max(rate/100, 64<<10))
	tbf := &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		Rate:       rate,
		Limit:      burst + uint32(rate/20), // up to 50 ms queued
		Buffer:     netlink.Xmittime(rate, burst),
	}
	if err := h.QdiscReplace(tbf); err != nil { // replace: an adopted environment's rate may change
		return fmt.Errorf("net_rate: tbf on %s: %w", link.Attrs().Name, err)
	}
	return nil
}

// setRate makes her veth's rate bits per second each way, or unlimited
// with 0: an adopted environment gets the rate the configuration says now.
func setRate(veth string, pid int, bits int64) error {
	if bits > 0 {
		return limitRate(veth, pid, bits)
	}
	return bothEnds(veth, pid, func(h netlink.Handle, link netlink.Link) error {
		// None there (never limited) is what is asked: not an error.
		h.QdiscDel(&netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link.Attrs().Index,
			Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}})
		return nil
	})
}
