package jail

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
)

// Next to another firewall (Docker's iptables-nft rules, a host's own
// "inet filter" with policy drop): in nftables, every base chain on the
// forward hook sees a forwarded packet, and a drop in any of them is
// final, whatever jailgate's own table accepts. jailgate does not change
// another table (the host's rules stay the operator's), and nothing on its
// side can override such a drop short of bypassing the host's firewall
// altogether; so it finds such chains at start and says which rules the
// operator must add.

// ForwardBlock is another table's base chain on the forward hook that
// drops a nat tenant's forwarded packets: its policy is drop, or it ends
// in an unconditional drop, and no accept for the gateway's veths comes
// first (following jumps).
type ForwardBlock struct {
	Family string // "ip" or "inet"
	Table  string
	Chain  string
	// Docker: the table has Docker's DOCKER-USER chain, the place Docker
	// keeps an operator's rules across its restarts; the fix goes there.
	Docker bool
	// Veth is the gateway's veth prefix, jgXXXXXX: the fix accepts
	// interfaces whose name starts with it.
	Veth string
}

// String names the chain as nft does: "ip filter FORWARD".
func (b ForwardBlock) String() string { return b.Family + " " + b.Table + " " + b.Chain }

// fixChain is where the fix goes: DOCKER-USER in Docker's table, else the
// blocking chain itself.
func (b ForwardBlock) fixChain() string {
	if b.Docker {
		return "DOCKER-USER"
	}
	return b.Chain
}

// NFT is the fix in nft syntax: her packets out, and the replies back.
func (b ForwardBlock) NFT() []string {
	at := "nft insert rule " + b.String()
	if b.Docker {
		at = "nft insert rule " + b.Family + " " + b.Table + " " + b.fixChain()
	}
	return []string{
		fmt.Sprintf("%s iifname %q accept", at, b.Veth+"*"),
		fmt.Sprintf("%s oifname %q ct state related,established accept", at, b.Veth+"*"),
	}
}

// IPTables is the fix in iptables syntax, for iptables-nft's own table
// (ip filter) only; nil for another table.
func (b ForwardBlock) IPTables() []string {
	if b.Family != "ip" || b.Table != "filter" {
		return nil
	}
	at := "iptables -I " + b.fixChain()
	return []string{
		at + " -i " + b.Veth + "+ -j ACCEPT",
		at + " -o " + b.Veth + "+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
	}
}

// Fix is the rules to add, iptables syntax first where it applies.
func (b ForwardBlock) Fix() string {
	if ipt := b.IPTables(); ipt != nil {
		return strings.Join(ipt, "; ") + " (or: " + strings.Join(b.NFT(), "; ") + ")"
	}
	return strings.Join(b.NFT(), "; ")
}

// Warning is the operator's message: which chain drops her traffic and
// what to add.
func (b ForwardBlock) Warning() string {
	return fmt.Sprintf("nftables chain %s drops the forwarded traffic of network: nat tenants "+
		"(another table's drop is final; jailgate does not change the host's rules): add %s", b, b.Fix())
}

// ForwardBlocks lists the base chains of other tables that drop the
// forwarded traffic of the gateway named name (NetworkOptions.Name),
// leaving by uplink (the default route's interface; "" for any).
func ForwardBlocks(name, uplink string) ([]ForwardBlock, error) {
	names := namesFor(name)
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("nftables: list chains: %w", err)
	}
	w := &chainWalker{conn: c, rules: map[string][]*nftables.Rule{}}
	her := names.veth + "0" // any of her veths: rules match them by prefix
	probes := []probe{      // her first packet out, and a reply to her
		{iif: ifname(her), oif: ifname(uplink), state: expr.CtStateBitNEW},
		{iif: ifname(uplink), oif: ifname(her), state: expr.CtStateBitESTABLISHED}}
	var out []ForwardBlock
	for _, ch := range chains {
		fam, ok := familyName(ch.Table.Family)
		if !ok || ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward ||
			ch.Table.Family == nftables.TableFamilyINet && ch.Table.Name == names.table {
			continue
		}
		for _, p := range probes {
			if w.base(ch, p) == verdictDrop {
				out = append(out, ForwardBlock{Family: fam, Table: ch.Table.Name, Chain: ch.Name,
					Docker: w.has(ch.Table, "DOCKER-USER"), Veth: names.veth})
				break
			}
		}
	}
	return out, nil
}

// warnForwardBlocks logs a warning for each chain that drops the nat
// tenants' traffic (OpenNetwork).
func warnForwardBlocks(name, uplink string, log *slog.Logger) {
	blocks, err := ForwardBlocks(name, uplink)
	if err != nil {
		log.Warn("network: cannot read the host's other nftables tables", "err", err)
	}
	for _, b := range blocks {
		log.Warn("network: another table drops the forwarded traffic of network: nat tenants "+
			"(its drop is final; jailgate does not change the host's rules): add the rules of fix",
			"chain", b.String(), "fix", b.Fix())
	}
}

// familyName is the nft name of a family whose forward hook sees routed
// IPv4 (ok false for the others).
func familyName(f nftables.TableFamily) (string, bool) {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip", true
	case nftables.TableFamilyINet:
		return "inet", true
	}
	return "", false
}

// ifname is an interface name as meta iifname loads it: 16 bytes, NUL
// padded.
func ifname(s string) []byte {
	b := make([]byte, 16)
	copy(b, s)
	return b
}

// probe is a packet of hers as the walker sees it: only the interfaces
// and the conntrack state are known.
type probe struct {
	iif, oif []byte
	state    uint32 // one expr.CtStateBit*
}

// The outcomes of a chain for a probe: accepted, dropped, or it falls
// through (a return, or the end of a regular chain).
const (
	verdictFall = iota
	verdictAccept
	verdictDrop
)

// maxJumps bounds the walk down jump chains (the kernel allows 16).
const maxJumps = 16

// chainWalker follows a probe through a table's chains, reading each
// chain's rules once.
type chainWalker struct {
	conn  *nftables.Conn
	rules map[string][]*nftables.Rule // by family/table/chain
}

// base is the outcome of base chain ch: its policy if her packet falls
// through.
func (w *chainWalker) base(ch *nftables.Chain, p probe) int {
	v := w.chain(ch.Table, ch.Name, p, 0)
	if v == verdictFall {
		if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
			return verdictDrop
		}
		return verdictAccept
	}
	return v
}

// chain walks the rules of chain name in t. A rule counts only if the
// probe is known to match it; a rule on anything else (an address, a
// port, a mark) is passed over: only blanket drops are reported, and
// only an accept sure to take her packet clears them.
func (w *chainWalker) chain(t *nftables.Table, name string, p probe, depth int) int {
	if depth > maxJumps {
		return verdictAccept // too deep to tell: say nothing
	}
	for _, r := range w.get(t, name) {
		matched, v := p.match(r.Exprs)
		if !matched || v == nil {
			continue
		}
		switch v.Kind {
		case expr.VerdictAccept:
			return verdictAccept
		case expr.VerdictDrop:
			return verdictDrop
		case expr.VerdictReturn:
			return verdictFall
		case expr.VerdictJump, expr.VerdictGoto:
			if sub := w.chain(t, v.Chain, p, depth+1); sub != verdictFall || v.Kind == expr.VerdictGoto {
				return sub
			}
		}
	}
	return verdictFall
}

// get is the rules of chain name in t (none if they cannot be read).
func (w *chainWalker) get(t *nftables.Table, name string) []*nftables.Rule {
	key := fmt.Sprintf("%d/%s/%s", t.Family, t.Name, name)
	rules, ok := w.rules[key]
	if !ok {
		rules, _ = w.conn.GetRules(t, &nftables.Chain{Name: name, Table: t})
		w.rules[key] = rules
	}
	return rules
}

// has reports whether t holds a chain named name.
func (w *chainWalker) has(t *nftables.Table, name string) bool {
	_, err := w.conn.ListChain(t, name)
	return err == nil
}

// match evaluates a rule's expressions for p: matched is true only if
// every condition is known to hold; v is its verdict (a reject counts as
// a drop), nil for a rule without one (a counter, a log).
func (p probe) match(exprs []expr.Any) (matched bool, v *expr.Verdict) {
	regs := map[uint32][]byte{}
	known := true
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Counter:
		case *expr.Verdict:
			v = e
		case *expr.Reject:
			v = &expr.Verdict{Kind: expr.VerdictDrop}
		case *expr.Meta:
			regs[e.Register] = p.meta(e.Key)
		case *expr.Ct:
			regs[e.Register] = nil
			if e.Key == expr.CtKeySTATE {
				regs[e.Register] = binary.NativeEndian.AppendUint32(nil, p.state)
			}
		case *expr.Bitwise:
			regs[e.DestRegister] = bitwise(regs[e.SourceRegister], e)
		case *expr.Cmp:
			holds, ok := compare(regs[e.Register], e)
			if ok && !holds {
				return false, nil
			}
			known = known && ok
		case *expr.Match:
			holds, ok := p.xtMatch(e)
			if ok && !holds {
				return false, nil
			}
			known = known && ok
		default: // a payload, a lookup...: cannot tell
			known = false
		}
	}
	return known, v
}

// meta is what a meta expression loads for p: the interface names only
// (nil: unknown).
func (p probe) meta(k expr.MetaKey) []byte {
	switch k {
	case expr.MetaKeyIIFNAME:
		return p.iif
	case expr.MetaKeyOIFNAME:
		return p.oif
	}
	return nil
}

// bitwise is (reg & mask) ^ xor, nil if reg is unknown.
func bitwise(reg []byte, e *expr.Bitwise) []byte {
	if len(reg) < int(e.Len) || len(e.Mask) < int(e.Len) || len(e.Xor) < int(e.Len) {
		return nil
	}
	out := make([]byte, e.Len)
	for i := range out {
		out[i] = reg[i]&e.Mask[i] ^ e.Xor[i]
	}
	return out
}

// compare evaluates an eq or neq compare of the register's first
// len(Data) bytes (a "jg*" prefix compares only the prefix); ok is false
// if the register or the operator is unknown.
func compare(reg []byte, e *expr.Cmp) (holds, ok bool) {
	if reg == nil || len(reg) < len(e.Data) {
		return false, false
	}
	eq := bytes.Equal(reg[:len(e.Data)], e.Data)
	switch e.Op {
	case expr.CmpOpEq:
		return eq, true
	case expr.CmpOpNeq:
		return !eq, true
	}
	return false, false
}

// xtMatch evaluates iptables-nft's compat matches that it can read: a
// comment, and conntrack on the state alone (-m conntrack --ctstate).
func (p probe) xtMatch(e *expr.Match) (holds, ok bool) {
	var base *xt.ConntrackMtinfoBase
	var mask uint16
	switch i := e.Info.(type) {
	case *xt.Comment:
		return true, true
	case *xt.ConntrackMtinfo1:
		base, mask = &i.ConntrackMtinfoBase, uint16(i.StateMask)
	case *xt.ConntrackMtinfo2:
		base, mask = &i.ConntrackMtinfoBase, i.StateMask
	case *xt.ConntrackMtinfo3:
		base, mask = &i.ConntrackMtinfoBase, i.StateMask
	default:
		return false, false
	}
	if xt.ConntrackFlags(base.MatchFlags)&^(xt.ConntrackState|xt.ConntrackStateAlias) != 0 {
		return false, false
	}
	holds = uint32(mask)&p.state != 0 // xt_conntrack's state bits are ct state's
	if xt.ConntrackFlags(base.InvertFlags)&xt.ConntrackState != 0 {
		holds = !holds
	}
	return holds, true
}

// VethPrefix is the prefix of the host-side veths of the gateway named
// name (NetworkOptions.Name): what a firewall rule names as "jgXXXXXX*"
// (nft) or "jgXXXXXX+" (iptables).
func VethPrefix(name string) string { return namesFor(name).veth }
