package jail

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A tenant's packets that policy drops pass the table's "dropped" chain,
// which logs them, at most dropLogRate a second over all tenants, to an
// NFLOG group (nfnetlink_log) this gateway reads: the drop's source
// address names the environment, its header the destination. Each
// environment reports its first drop to each destination, up to
// dropEventsPerEnv destinations (NetworkOptions.OnDrop); the acct_drop
// counters count every drop.
const (
	dropLogRate      = 20  // packets a second the kernel hands the reader, over all tenants
	dropSnaplen      = 64  // bytes of each dropped packet copied: the IPv4 and transport headers
	dropEventsPerEnv = 16  // distinct destinations reported per environment
	dropGroupTries   = 256 // groups probed from the name's own before giving up
)

// nfnetlink_log's protocol (linux/netfilter/nfnetlink_log.h).
const (
	nfnlSubsysULOG   = 4 // NFNL_SUBSYS_ULOG
	nfulnlMsgPacket  = 0 // NFULNL_MSG_PACKET
	nfulnlMsgConfig  = 1 // NFULNL_MSG_CONFIG
	nfulaPayload     = 9 // NFULA_PAYLOAD
	nfulaCfgCmd      = 1 // NFULA_CFG_CMD
	nfulaCfgMode     = 2 // NFULA_CFG_MODE
	nfulaCfgQThresh  = 5 // NFULA_CFG_QTHRESH
	nfulnlCfgBind    = 1 // NFULNL_CFG_CMD_BIND
	nfulnlCopyPacket = 2 // NFULNL_COPY_PACKET
)

// dropLog is this gateway's bound NFLOG group and its reader.
type dropLog struct {
	conn  *netlink.Conn
	group uint16
}

// openDropLog binds an NFLOG group for the gateway named name: the one
// its name hashes to, or the next free one (a group has one reader on the
// host: a second gateway, or a live old one during an upgrade, holds its
// own).
func openDropLog(name string) (*dropLog, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("nflog: %w", err)
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	first := uint16(h.Sum32()%0x8000) + 0x4000 // clear of the low groups people configure by hand
	var errs []error
	for i := range uint16(dropGroupTries) {
		g := first + i
		if err := bindGroup(conn, g); err != nil {
			errs = append(errs, err)
			continue
		}
		conn.SetReadBuffer(1 << 20)
		return &dropLog{conn: conn, group: g}, nil
	}
	conn.Close()
	return nil, fmt.Errorf("nflog: no free group from %d (is nfnetlink_log available?): %w", first, errors.Join(errs[:1]...))
}

// bindGroup binds conn to NFLOG group g, copying dropSnaplen bytes of
// each packet and handing over every packet at once.
func bindGroup(conn *netlink.Conn, g uint16) error {
	bind := netlink.Attribute{Type: nfulaCfgCmd, Data: []byte{nfulnlCfgBind}}
	mode := netlink.Attribute{Type: nfulaCfgMode, Data: append(binary.BigEndian.AppendUint32(nil, dropSnaplen), nfulnlCopyPacket, 0)}
	qthresh := netlink.Attribute{Type: nfulaCfgQThresh, Data: binary.BigEndian.AppendUint32(nil, 1)}
	for _, attrs := range [][]netlink.Attribute{{bind}, {mode, qthresh}} {
		data, err := netlink.MarshalAttributes(attrs)
		if err != nil {
			return err
		}
		msg := netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysULOG<<8 | nfulnlMsgConfig),
				Flags: netlink.Request | netlink.Acknowledge},
			Data: append([]byte{unix.AF_UNSPEC, 0, byte(g >> 8), byte(g)}, data...), // nfgenmsg: family, version, group
		}
		if _, err := conn.Execute(msg); err != nil {
			return fmt.Errorf("group %d: %w", g, err)
		}
	}
	return nil
}

// run reads the group until close, handing each dropped packet's source,
// destination and protocol to report.
func (d *dropLog) run(report func(src netip.Addr, dst netip.AddrPort, proto string)) {
	for {
		msgs, err := d.conn.Receive()
		if err != nil {
			if errors.Is(err, unix.ENOBUFS) { // the reader fell behind: those are lost, go on
				continue
			}
			return // closed
		}
		for _, m := range msgs {
			if m.Header.Type != netlink.HeaderType(nfnlSubsysULOG<<8|nfulnlMsgPacket) || len(m.Data) < 4 {
				continue
			}
			ad, err := netlink.NewAttributeDecoder(m.Data[4:])
			if err != nil {
				continue
			}
			for ad.Next() {
				if ad.Type() == nfulaPayload {
					if src, dst, proto, ok := parseDrop(ad.Bytes()); ok {
						report(src, dst, proto)
					}
				}
			}
		}
	}
}

// close unbinds the group (closing the socket does) and ends run.
func (d *dropLog) close() { d.conn.Close() }

// parseDrop reads an IPv4 packet's source, destination, protocol and
// destination port (0 for protocols without ports).
func parseDrop(p []byte) (src netip.Addr, dst netip.AddrPort, proto string, ok bool) {
	if len(p) < 20 || p[0]>>4 != 4 {
		return src, dst, "", false
	}
	ihl := int(p[0]&0x0f) * 4
	src = netip.AddrFrom4([4]byte(p[12:16]))
	to := netip.AddrFrom4([4]byte(p[16:20]))
	var port uint16
	switch p[9] {
	case unix.IPPROTO_TCP:
		proto = "tcp"
	case unix.IPPROTO_UDP:
		proto = "udp"
	case unix.IPPROTO_ICMP:
		proto = "icmp"
	default:
		proto = fmt.Sprintf("ip-proto-%d", p[9])
	}
	if (proto == "tcp" || proto == "udp") && len(p) >= ihl+4 {
		port = binary.BigEndian.Uint16(p[ihl+2:])
	}
	return src, netip.AddrPortFrom(to, port), proto, true
}

// dropKey is one destination an environment was reported dropped at.
type dropKey struct {
	dst   netip.AddrPort
	proto string
}

// reportDrop hands the drop from src to OnDrop if it is her environment's
// first to dst (and she has had fewer than dropEventsPerEnv).
func (n *Network) reportDrop(src netip.Addr, dst netip.AddrPort, proto string) {
	n.mu.Lock()
	l := n.live[src]
	first := false
	if l != nil && len(l.drops) < dropEventsPerEnv {
		k := dropKey{dst, proto}
		if _, seen := l.drops[k]; !seen {
			if l.drops == nil {
				l.drops = map[dropKey]struct{}{}
			}
			l.drops[k] = struct{}{}
			first = true
		}
	}
	n.mu.Unlock()
	if first && n.onDrop != nil {
		n.onDrop(l.who, l.env, dst, proto)
	}
}
