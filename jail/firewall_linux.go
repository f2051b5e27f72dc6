package jail

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The table's named sets. Per-tenant entries are keyed by her address, so
// a thousand tenants are a thousand set elements, not a thousand chains.
const (
	setTenants   = "tenants"    // ifname . her address: what may leave each veth (no spoofing)
	setDeny      = "deny"       // the default deny list, the host's addresses and the pool
	setAllowPort = "allow_port" // her address . destination . port range (egress.allow, her DNS)
	setAllowAny  = "allow_any"  // her address . destination (egress.allow without ports)
	setDenyPort  = "deny_port"  // egress.deny with ports
	setDenyAny   = "deny_any"   // egress.deny without ports
	setAcctOut   = "acct_out"   // her address, with a counter: bytes from her (comment: her name)
	setAcctIn    = "acct_in"    // ... bytes to her
	setAcctDrop  = "acct_drop"  // ... packets of hers dropped by policy
)

// firewall is the gateway's one nftables table (family inet, named
// netNames.table) and its sets. jailgate never touches the host's other
// tables or rules; it adds its own at serve start and removes it at a
// clean stop.
type firewall struct {
	prefix string     // the gateway's veth prefix (iifname PREFIX*)
	mu     sync.Mutex // one batch at a time on conn
	conn   *nftables.Conn
	table  *nftables.Table
	sets   map[string]*nftables.Set
	conns  *nftables.Chain // tenant_conns: a rule per tenant with limits.connections
	group  uint16          // the NFLOG group drops are logged to; 0: none
}

// openFirewall replaces a stale table of the same name (a dead gateway's
// of the same state_dir) with a fresh one: the chains, the sets, the
// default deny list (with the host's addresses and the pool) and
// masquerade for the pool; drops logged to NFLOG group (0: not logged).
// The kept veths' elements in the stale table are carried into the new
// one, in the same batch (network_keep_linux.go).
func openFirewall(names netNames, pool netip.Prefix, hostAddrs []netip.Addr, group uint16, keep []string) (*firewall, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	fw := &firewall{prefix: names.veth, conn: conn, sets: map[string]*nftables.Set{}, group: group}
	fw.table = &nftables.Table{Family: nftables.TableFamilyINet, Name: names.table}
	var carry *carried
	if old, err := conn.ListTableOfFamily(names.table, nftables.TableFamilyINet); err == nil && old != nil {
		if carry, err = fw.carry(keep); err != nil {
			return nil, err
		}
		conn.DelTable(fw.table) // a dead (or upgraded) gateway's
	}
	conn.AddTable(fw.table)
	if err := fw.addSets(pool, hostAddrs); err != nil {
		return nil, err
	}
	fw.addChains(pool)
	if err := fw.restore(carry); err != nil {
		return nil, err
	}
	if err := conn.Flush(); err != nil {
		return nil, fmt.Errorf("nftables: create table inet %s (is nf_tables with inet nat available? CONFIG_NF_TABLES_INET, nft_masq, nft_ct): %w", names.table, err)
	}
	return fw, nil
}

// close removes the table, with every rule and set element in it.
func (fw *firewall) close() error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.conn.DelTable(fw.table)
	if err := fw.conn.Flush(); err != nil {
		return fmt.Errorf("nftables: delete table inet %s: %w", fw.table.Name, err)
	}
	return nil
}

// addSets declares the named sets and fills the default deny list.
func (fw *firewall) addSets(pool netip.Prefix, hostAddrs []netip.Addr) error {
	ip, port, ifname := nftables.TypeIPAddr, nftables.TypeInetService, nftables.TypeIFName
	decl := []struct {
		name     string
		types    []nftables.SetDatatype
		interval bool
		counter  bool // a counter on each element
	}{
		{setTenants, []nftables.SetDatatype{ifname, ip}, false, false},
		{setDeny, []nftables.SetDatatype{ip}, true, false},
		{setAllowPort, []nftables.SetDatatype{ip, ip, port}, true, false},
		{setAllowAny, []nftables.SetDatatype{ip, ip}, true, false},
		{setDenyPort, []nftables.SetDatatype{ip, ip, port}, true, false},
		{setDenyAny, []nftables.SetDatatype{ip, ip}, true, false},
		{setAcctOut, []nftables.SetDatatype{ip}, false, true},
		{setAcctIn, []nftables.SetDatatype{ip}, false, true},
		{setAcctDrop, []nftables.SetDatatype{ip}, false, true},
	}
	for _, d := range decl {
		s := &nftables.Set{Table: fw.table, Name: d.name, KeyType: d.types[0], Interval: d.interval, Counter: d.counter}
		if len(d.types) > 1 {
			t, err := nftables.ConcatSetType(d.types...)
			if err != nil {
				return err
			}
			s.KeyType, s.Concatenation = t, true
		}
		var elems []nftables.SetElement
		if d.name == setDeny {
			deny := slices.Clone(DefaultDeny)
			for _, a := range hostAddrs {
				deny = append(deny, netip.PrefixFrom(a, 32))
			}
			elems = intervalElements(append(deny, pool))
		}
		if err := fw.conn.AddSet(s, elems); err != nil {
			return fmt.Errorf("nftables: add set %s: %w", d.name, err)
		}
		fw.sets[d.name] = s
	}
	return nil
}

// intervalElements are the elements of a plain interval set holding
// prefixes, merged where they overlap (the kernel refuses overlaps).
func intervalElements(prefixes []netip.Prefix) []nftables.SetElement {
	type span struct{ lo, hi uint64 } // hi is one past the end
	var spans []span
	for _, p := range prefixes {
		lo := uint64(u32(p.Masked().Addr()))
		spans = append(spans, span{lo, lo + 1<<(32-p.Bits())})
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	var merged []span
	for _, s := range spans {
		if n := len(merged); n > 0 && s.lo <= merged[n-1].hi {
			merged[n-1].hi = max(merged[n-1].hi, s.hi)
			continue
		}
		merged = append(merged, s)
	}
	var elems []nftables.SetElement
	for _, s := range merged {
		elems = append(elems, nftables.SetElement{Key: be32(uint32(s.lo))})
		if s.hi < 1<<32 { // up to the top: no end element (as nft does)
			elems = append(elems, nftables.SetElement{Key: be32(uint32(s.hi)), IntervalEnd: true})
		}
	}
	return elems
}

// u32 is an IPv4 address as a number.
func u32(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }

// be32 is v in network byte order.
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// addChains adds the base chains and their rules:
//
// (jg* stands for the gateway's veth prefix, jgXXXXXX*)
//
//	forward (filter):  iifname "jg*" ip saddr @acct_out   (counts, no verdict)
//	                   oifname "jg*" ip daddr @acct_in
//	                   iifname "jg*" jump tenant_out
//	                   oifname "jg*" ct state established,related accept
//	                   oifname "jg*" drop            (nothing dials a tenant)
//	tenant_out:        ct state established,related accept
//	                   ipv6 drop; iifname . ip saddr != @tenants drop
//	                   jump tenant_conns
//	                   allow (ports for tcp and udp, then any) accept
//	                   deny (ports, then any) drop; ip daddr @deny drop
//	dropped:           ip saddr @acct_drop; limit rate 20/second
//	                   log group G snaplen 64; drop   (every "drop" of
//	                   hers above and below is a goto dropped, counted)
//	tenant_conns:      ip saddr HER ct count over N drop  (one per tenant
//	                   with limits.connections; new connections only)
//	input (filter):    iifname "jg*" ct state established,related accept
//	                   iifname "jg*" drop            (no host service)
//	postrouting (nat): ip saddr POOL oifname != "jg*" masquerade
func (fw *firewall) addChains(pool netip.Prefix) {
	accept := expr.Verdict{Kind: expr.VerdictAccept}
	policy := nftables.ChainPolicyAccept
	forward := fw.conn.AddChain(&nftables.Chain{Name: "forward", Table: fw.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	out := fw.conn.AddChain(&nftables.Chain{Name: "tenant_out", Table: fw.table})
	fw.conns = fw.conn.AddChain(&nftables.Chain{Name: "tenant_conns", Table: fw.table})
	dropped := fw.conn.AddChain(&nftables.Chain{Name: "dropped", Table: fw.table})
	fw.rule(dropped, nfproto(unix.NFPROTO_IPV4), ipField(12, 1), fw.lookup(setAcctDrop, 1, false))
	if fw.group != 0 {
		fw.rule(dropped, fw.logDrop())
	}
	fw.rule(dropped, verdict(expr.Verdict{Kind: expr.VerdictDrop}))
	drop := expr.Verdict{Kind: expr.VerdictGoto, Chain: dropped.Name} // hers, counted
	input := fw.conn.AddChain(&nftables.Chain{Name: "input", Table: fw.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	post := fw.conn.AddChain(&nftables.Chain{Name: "postrouting", Table: fw.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &policy})

	fw.rule(forward, fw.ifPrefix(expr.MetaKeyIIFNAME, expr.CmpOpEq), nfproto(unix.NFPROTO_IPV4), ipField(12, 1),
		fw.lookup(setAcctOut, 1, false))
	fw.rule(forward, fw.ifPrefix(expr.MetaKeyOIFNAME, expr.CmpOpEq), nfproto(unix.NFPROTO_IPV4), ipField(16, 1),
		fw.lookup(setAcctIn, 1, false))
	fw.rule(forward, fw.ifPrefix(expr.MetaKeyIIFNAME, expr.CmpOpEq), verdict(expr.Verdict{Kind: expr.VerdictJump, Chain: out.Name}))
	fw.rule(forward, fw.ifPrefix(expr.MetaKeyOIFNAME, expr.CmpOpEq), ctEstablished(), verdict(accept))
	fw.rule(forward, fw.ifPrefix(expr.MetaKeyOIFNAME, expr.CmpOpEq), verdict(expr.Verdict{Kind: expr.VerdictDrop}))

	fw.rule(out, ctEstablished(), verdict(accept))
	fw.rule(out, nfproto(unix.NFPROTO_IPV6), verdict(drop))
	fw.rule(out, metaTo(expr.MetaKeyIIFNAME, 1), ipField(12, 12), fw.lookup(setTenants, 1, true), verdict(drop))
	fw.rule(out, verdict(expr.Verdict{Kind: expr.VerdictJump, Chain: fw.conns.Name}))
	for _, sets := range [][2]string{{setAllowPort, setAllowAny}, {setDenyPort, setDenyAny}} {
		v := accept
		if sets[0] == setDenyPort {
			v = drop
		}
		for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
			fw.rule(out, nfproto(unix.NFPROTO_IPV4), l4proto(proto), ipField(12, 1), ipField(16, 9),
				portField(10), fw.lookup(sets[0], 1, false), verdict(v))
		}
		fw.rule(out, nfproto(unix.NFPROTO_IPV4), ipField(12, 1), ipField(16, 9), fw.lookup(sets[1], 1, false), verdict(v))
	}
	fw.rule(out, nfproto(unix.NFPROTO_IPV4), ipField(16, 1), fw.lookup(setDeny, 1, false), verdict(drop))

	fw.rule(input, fw.ifPrefix(expr.MetaKeyIIFNAME, expr.CmpOpEq), ctEstablished(), verdict(accept))
	fw.rule(input, fw.ifPrefix(expr.MetaKeyIIFNAME, expr.CmpOpEq), verdict(drop))

	mask := net4Mask(pool.Bits())
	fw.rule(post, nfproto(unix.NFPROTO_IPV4), ipField(12, 1),
		[]expr.Any{&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: pool.Addr().AsSlice()}},
		fw.ifPrefix(expr.MetaKeyOIFNAME, expr.CmpOpNeq), []expr.Any{&expr.Masq{}})
}

// logDrop hands a dropped packet's headers to the gateway's NFLOG group
// (network_drops_linux.go), dropLogRate a second at most over all tenants.
func (fw *firewall) logDrop() []expr.Any {
	return []expr.Any{
		&expr.Limit{Type: expr.LimitTypePkts, Rate: dropLogRate, Unit: expr.LimitTimeSecond, Burst: dropLogRate},
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_SNAPLEN | 1<<unix.NFTA_LOG_QTHRESHOLD,
			Group: fw.group, Snaplen: dropSnaplen, QThreshold: 1},
	}
}

// rule appends a rule made of parts to chain.
func (fw *firewall) rule(chain *nftables.Chain, parts ...[]expr.Any) {
	var exprs []expr.Any
	for _, p := range parts {
		exprs = append(exprs, p...)
	}
	fw.conn.AddRule(&nftables.Rule{Table: fw.table, Chain: chain, Exprs: exprs})
}

func verdict(v expr.Verdict) []expr.Any { return []expr.Any{&v} }

// ifPrefix matches an interface name starting with the gateway's veth
// prefix (nft's "jgXXXXXX*": a compare of the prefix's bytes only).
func (fw *firewall) ifPrefix(key expr.MetaKey, op expr.CmpOp) []expr.Any {
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: []byte(fw.prefix)}}
}

// metaTo loads an interface name (16 bytes) into reg.
func metaTo(key expr.MetaKey, reg uint32) []expr.Any {
	return []expr.Any{&expr.Meta{Key: key, Register: reg}}
}

func ctEstablished() []expr.Any {
	bits := binary.NativeEndian.AppendUint32(nil, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
	return []expr.Any{&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: bits, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)}}
}

func nfproto(p byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
}

// ipField loads 4 bytes of the IPv4 header at off (12 saddr, 16 daddr)
// into reg: 1 (the 128-bit register that is 32-bit registers 8-11), or
// the 32-bit register 8+n for the n-th 4-byte field of a concatenation.
func ipField(off, reg uint32) []expr.Any {
	return []expr.Any{&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4}}
}

// portField loads the transport header's destination port into reg.
func portField(reg uint32) []expr.Any {
	return []expr.Any{&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}}
}

// lookup matches the key loaded from reg (on) in the named set, or with
// invert its absence.
func (fw *firewall) lookup(set string, reg uint32, invert bool) []expr.Any {
	s := fw.sets[set]
	return []expr.Any{&expr.Lookup{SourceRegister: reg, SetName: s.Name, SetID: s.ID, Invert: invert}}
}

func net4Mask(bits int) []byte { return be32(^uint32(0) << (32 - bits)) }

// addTenant adds one environment's elements: her veth and address, her
// egress policy and her resolvers (port 53, which a private resolver
// needs past the default deny list), her counters (commented with her
// name) and her rule in tenant_conns if spec sets limits.connections.
// The returned func removes them.
func (fw *firewall) addTenant(veth string, addr netip.Addr, spec *EnvSpec, dns []netip.Addr) (func() error, error) {
	return fw.putTenant(veth, addr, spec, dns, nil)
}

// putTenant is addTenant, first deleting old (her elements as they are,
// and her rule in tenant_conns) in the same batch.
func (fw *firewall) putTenant(veth string, addr netip.Addr, spec *EnvSpec, dns []netip.Addr,
	old map[string][]nftables.SetElement) (func() error, error) {
	elems, conns := tenantElements(veth, addr, spec, dns), spec.Limits.Connections
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if old != nil {
		for set, e := range old {
			if err := fw.conn.SetDeleteElements(fw.sets[set], e); err != nil {
				return nil, err
			}
		}
		if err := fw.unlimitConns(addr); err != nil {
			return nil, err
		}
	}
	for set, e := range elems {
		if err := fw.conn.SetAddElements(fw.sets[set], e); err != nil {
			return nil, err
		}
	}
	if conns > 0 {
		fw.limitConns(addr, conns)
	}
	if err := fw.conn.Flush(); err != nil {
		return nil, fmt.Errorf("nftables: add %s's egress policy (do two egress entries overlap?): %w", addr, err)
	}
	return func() error {
		fw.mu.Lock()
		defer fw.mu.Unlock()
		for set, e := range elems {
			if err := fw.conn.SetDeleteElements(fw.sets[set], e); err != nil {
				return err
			}
		}
		if conns > 0 {
			if err := fw.unlimitConns(addr); err != nil {
				return err
			}
		}
		return fw.conn.Flush()
	}, nil
}

// tenantElements are her elements of each set (addTenant).
func tenantElements(veth string, addr netip.Addr, spec *EnvSpec, dns []netip.Addr) map[string][]nftables.SetElement {
	eg := spec.Egress
	allow := slices.Clone(eg.Allow)
	for _, d := range dns {
		allow = append(allow, EgressRule{Prefix: netip.PrefixFrom(d, 32), PortLo: 53, PortHi: 53})
	}
	name := make([]byte, 16)
	copy(name, veth)
	elems := map[string][]nftables.SetElement{
		setTenants: {{Key: append(name, addr.AsSlice()...)}},
	}
	for _, set := range []string{setAcctOut, setAcctIn, setAcctDrop} {
		elems[set] = []nftables.SetElement{{Key: addr.AsSlice(), Comment: spec.Tenant}}
	}
	for _, list := range []struct {
		rules     []EgressRule
		port, any string
	}{{allow, setAllowPort, setAllowAny}, {eg.Deny, setDenyPort, setDenyAny}} {
		for _, r := range minimal(list.rules) {
			set := list.port
			if r.AnyPort() {
				set = list.any
			}
			elems[set] = append(elems[set], ruleElement(addr, r))
		}
	}
	return elems
}

// limitConns adds her rule to tenant_conns, tagged with her address:
// ip saddr ADDR ct count over n drop. Only a packet that opens a
// connection gets there (tenant_out accepts the established first); the
// kernel's connlimit counts her conntrack entries, and forgets those
// closed (TIME_WAIT, CLOSE) or gone.
func (fw *firewall) limitConns(addr netip.Addr, n int64) {
	fw.conn.AddRule(&nftables.Rule{Table: fw.table, Chain: fw.conns, UserData: addr.AsSlice(),
		Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr.AsSlice()},
			&expr.Connlimit{Count: uint32(min(n, 1<<32-1)), Flags: expr.NFT_CONNLIMIT_F_INV},
			&expr.Verdict{Kind: expr.VerdictGoto, Chain: "dropped"},
		}})
}

// unlimitConns queues the deletion of her rule in tenant_conns (found by
// its tag: the kernel gives a rule's handle only when listed).
func (fw *firewall) unlimitConns(addr netip.Addr) error {
	rules, err := fw.conn.GetRules(fw.table, fw.conns)
	if err != nil {
		return fmt.Errorf("nftables: list tenant_conns: %w", err)
	}
	for _, r := range rules {
		if slices.Equal(r.UserData, addr.AsSlice()) {
			if err := fw.conn.DelRule(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// ruleElement is r for the tenant at addr: addr . destination range, and
// the port range if r has one (each field padded to 4 bytes).
func ruleElement(addr netip.Addr, r EgressRule) nftables.SetElement {
	lo := u32(r.Prefix.Masked().Addr())
	hi := lo | ^uint32(0)>>r.Prefix.Bits() // a shift by 32 is 0: a /32's range is itself
	key := append(addr.AsSlice(), be32(lo)...)
	end := append(addr.AsSlice(), be32(hi)...)
	if !r.AnyPort() {
		key = append(key, byte(r.PortLo>>8), byte(r.PortLo), 0, 0)
		end = append(end, byte(r.PortHi>>8), byte(r.PortHi), 0, 0)
	}
	return nftables.SetElement{Key: key, KeyEnd: end}
}
